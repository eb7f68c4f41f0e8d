"""Typed, frozen run configuration with the paper's defaults (appendix "Implementation details",
Table 3), loadable from TOML with ``section.field=value`` overrides.

Why frozen dataclasses: a run is fully described by one ``Config``; it is saved beside every
checkpoint (JSON), so a resumed or re-evaluated run cannot silently drift from what trained it.
"""
from __future__ import annotations

import json
import math
import re
import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args, get_type_hints


@dataclass(frozen=True)
class Limit:
    """The values a numeric config field accepts: ``lo`` ≤ (or <, ``lo_open``) value ≤ (or <, ``hi_open``)
    ``hi``, finite; ``also`` lists single values allowed outside the range (a documented sentinel such as
    sigma_data = -1); ``note`` says what the field means, for the error message."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    also: tuple[float, ...] = ()
    note: str = ""

    def describe(self) -> str:
        lo, hi = _number(self.lo), _number(self.hi)
        if self.lo is not None and self.hi is not None:
            text = f"in {'(' if self.lo_open else '['}{lo}, {hi}{')' if self.hi_open else ']'}"
        elif self.lo is not None:
            text = f"{'>' if self.lo_open else '>='} {lo}"
        else:
            text = f"{'<' if self.hi_open else '<='} {hi}"
        text += "".join(f" or {_number(v)}" for v in self.also)
        return text + (f" ({self.note})" if self.note else "")

    def admits(self, value: float) -> bool:
        if value in self.also:
            return True
        if not math.isfinite(value):
            return False
        if self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo):
            return False
        return self.hi is None or (value < self.hi if self.hi_open else value <= self.hi)


def _number(value: float | None) -> str:
    """A bound as people write it: whole numbers in full (a seed's 4294967295), others in %g."""
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _count(lo: int, note: str = "") -> Limit:
    return Limit(lo=lo, note=note)


def _positive(note: str = "") -> Limit:
    return Limit(lo=0, lo_open=True, note=note)


def _non_negative(note: str = "") -> Limit:
    return Limit(lo=0, note=note)


def _unit_open(note: str = "") -> Limit:
    return Limit(lo=0, hi=1, lo_open=True, hi_open=True, note=note)


# torchdiffeq's odeint methods (torchdiffeq._impl.odeint.SOLVERS), spelled out so that reading a config
# does not import torch
ODE_METHODS = ("dopri8", "dopri5", "bosh3", "fehlberg2", "adaptive_heun", "euler", "midpoint", "heun2", "heun3",
               "rk4", "explicit_adams", "implicit_adams", "fixed_adams", "scipy_solver")
CALIBRATION_ROUNDS = 8  # rounds of the step-friction calibration (training/calibration.py)
_DEVICE = re.compile(r"auto|(cpu|cuda|mps|xpu)(:\d+)?")


def _check_section(cfg: Any) -> None:
    """Validate every field of the section dataclass ``cfg`` against its declared type: Literal fields
    among their choices, numeric fields within ``cfg.LIMITS``. Raises a one-line ValueError naming
    ``section.field``, the value and what is allowed."""
    hints = get_type_hints(type(cfg))
    for f in fields(cfg):
        value, where = getattr(cfg, f.name), f"{cfg.SECTION}.{f.name}"
        hint = hints[f.name]
        if getattr(hint, "__origin__", None) is Literal:
            if value not in get_args(hint):
                raise ValueError(f"{where} must be one of {get_args(hint)}, got {value!r}")
            continue
        limit = cfg.LIMITS.get(f.name)
        if limit is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where} expects {hint.__name__}, got {value!r}")
        if not limit.admits(value):
            finite = "" if math.isfinite(value) or value in limit.also else "a finite number "
            raise ValueError(f"{where} must be {finite}{limit.describe()}, got {value!r}")


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


@dataclass(frozen=True)
class ModelConfig:
    """EGT score network. Paper: 6 EGLs, 8 heads, embedding 128, FFN 2048, dropout 0.1, cutoff 1.6 Å,
    2 roots / 2 degrees of the spherical Fourier-Bessel basis.

    ``anchor``: add the gated pull towards the constant-velocity extrapolation x(t) + v(t) to the
    score (see score_net.py); False gives the paper's plain network, which never sees x(t).
    ``sigma_data``: Å, the spread of x(t+1) about x(t) + v(t) in the training data; > 0 switches to
    EDM preconditioning about the anchor and the matching loss weight (beyond the paper; see
    score_net.py); -1 measures it from the training data when training starts (the measured value
    is what the saved config holds); 0 keeps the gated form.
    ``bond_prior`` (needs ``anchor``): the anchor becomes the Verlet step of a valence force field
    (harmonic bonds and angles, periodic torsions of the start frame's topology, per atom environment)
    fitted to the training data, so that off the data the default is a restoring bond instead of
    ballistic flight (beyond the paper; valence/prior.py). ``prior_torsions``: with the torsions
    (they hold the molecule near the conformers the data visited; off: groups rotate freely).
    ``prior_force_matching``: fit the prior's bond and angle force constants to the reference forces
    by least squares instead of Boltzmann inversion of each coordinate, the rest values staying at
    the data's mean geometry (data without forces: Boltzmann inversion). ``prior_anharmonic`` (needs
    ``prior_force_matching``): Morse bonds, each type's steepness fitted to the forces with its constant.
    ``prior_torsion_matching`` (with ``prior_force_matching`` and ``prior_torsions``): the torsions'
    amplitudes join the fit, their wells' shapes kept (off: k_B T / m each, Boltzmann-inverted).
    ``prior_substeps`` (needs ``bond_prior``): 0 steps the prior once per frame by position Verlet on
    the window; k >= 1 makes the model phase-space: every window carries each atom's velocity at x(t)
    (the engine's, else estimated from the positions: data.Trajectory.velocity_estimates), the anchor
    is k velocity-Verlet substeps of the prior from (x(t), v(t)) with its springs Verlet-matched to
    Δt / k, and each generated frame's velocity is carried forward (valence/verlet.py). Frames longer
    than the ~3 fs a one-step Verlet prior allows need it.

    Raises ValueError (naming ``model.<field>``) for a value outside its range, ``hidden`` not a
    multiple of ``heads``, ``sigma_data`` / ``bond_prior`` without ``anchor``, or ``prior_substeps``
    without ``bond_prior``.
    """

    SECTION: ClassVar[str] = "model"
    LIMITS: ClassVar[dict[str, Limit]] = {
        "num_layers": _count(1, "EGL layers"), "heads": _count(1, "attention heads"),
        "hidden": _count(1, "embedding width, a multiple of heads"), "ffn": _count(1, "feed-forward width"),
        "dropout": Limit(lo=0, hi=1, hi_open=True, note="a probability"), "cutoff": _positive("Å"),
        "num_radial": _count(1, "Fourier-Bessel roots"), "num_spherical": _count(1, "Fourier-Bessel degrees"),
        "max_z": Limit(lo=1, hi=118, note="an atomic number"), "num_fourier": _count(1, "noise-level features"),
        "sigma_data": Limit(lo=0, also=(-1,), note="Å; 0: gated form, -1: measured from the data"),
        "prior_substeps": Limit(lo=0, note="velocity-Verlet substeps of the prior per frame; 0: position Verlet"),
    }

    num_layers: int = 6
    heads: int = 8
    hidden: int = 128
    ffn: int = 2048
    dropout: float = 0.1
    cutoff: float = 1.6  # Å
    num_radial: int = 2
    num_spherical: int = 2
    max_z: int = 118  # largest atomic number the embedding accepts
    num_fourier: int = 16  # Gaussian Fourier features of log std (noise-level embedding)
    anchor: bool = True
    sigma_data: float = 0.0  # Å; > 0: EDM preconditioning about x(t) + v(t)
    bond_prior: bool = False  # anchor = Verlet step of a valence force field fitted to the data (valence/prior.py)
    prior_torsions: bool = True  # the bond prior's periodic torsions
    prior_force_matching: bool = False  # bond and angle force constants fitted to the data's forces (valence/force_matching.py)
    # with prior_force_matching: Morse bonds, each bond type's anharmonicity fitted to the forces too (valence/anharmonic.py)
    prior_anharmonic: bool = False
    # with prior_force_matching: the torsions' amplitudes fitted to the forces too (valence/force_matching.py)
    prior_torsion_matching: bool = False
    prior_substeps: int = 0  # > 0: phase space, the prior's frame in that many velocity-Verlet substeps (valence/verlet.py)
    backend: Literal["fused", "reference"] = "fused"

    def __post_init__(self) -> None:
        _check_section(self)
        _require(self.hidden % self.heads == 0,
                 f"model.hidden ({self.hidden}) must be a multiple of model.heads ({self.heads})")
        _require(self.anchor or self.sigma_data == 0, f"model.sigma_data = {self.sigma_data} (EDM preconditioning "
                 "about the anchor) needs model.anchor = true")
        _require(self.anchor or not self.bond_prior,
                 "model.bond_prior (a prior on the anchor) needs model.anchor = true")
        _require(self.bond_prior or self.prior_substeps == 0,
                 "model.prior_substeps (the valence prior's substeps) needs model.bond_prior = true")
        _require(self.prior_force_matching or not self.prior_anharmonic,
                 "model.prior_anharmonic (Morse bonds fitted to the forces) needs model.prior_force_matching = true")


@dataclass(frozen=True)
class SDEConfig:
    """Forward SDE dx = σ^s dw, s in [0, 1] (Eq. 5).

    ``kind="conditional"``: per-atom σ from the previous acceleration (Eq. 6, Table 3 parameters
    σ_s, ā, η_σ; the paper does not report the values it chose, these are mid-range of Table 3).
    ``kind="ve"``: Song et al.'s plain VE SDE, std(s) = σ_min (σ_max/σ_min)^s, same for every atom.
    ``eps``: smallest diffusion time drawn in training; ``time_sampling``: how s is drawn on
    [eps, 1] (log-uniform by default, see SDE.time_from_uniform; "uniform" is Eq. 8 literally).

    Raises ValueError (naming ``sde.<field>``) for a value outside its range or clamp / VE bounds
    out of order.
    """

    SECTION: ClassVar[str] = "sde"
    LIMITS: ClassVar[dict[str, Limit]] = {
        "sigma_s": _positive(), "a_bar": _non_negative("Å²/frame⁴"), "eta_sigma": _non_negative(),
        "sigma_clamp_min": _positive(), "sigma_clamp_max": _positive(), "ve_sigma_min": _positive("Å"),
        "ve_sigma_max": _positive("Å"), "eps": _unit_open("a diffusion time"),
    }

    kind: Literal["conditional", "ve"] = "conditional"
    sigma_s: float = 1e-2
    a_bar: float = 1.0  # Å²/frame⁴, threshold on |a|²
    eta_sigma: float = 1.0
    sigma_clamp_min: float = 1e-6  # σ of Eq. 6 is clamped into [min, max]
    sigma_clamp_max: float = 1.0  # σ > 1 would make the noise grow like σ^s: capped at Brownian motion
    ve_sigma_min: float = 1e-3  # Å
    ve_sigma_max: float = 0.5  # Å
    eps: float = 1e-5
    time_sampling: Literal["log_uniform", "uniform"] = "log_uniform"

    def __post_init__(self) -> None:
        _check_section(self)
        _require(self.sigma_clamp_min <= self.sigma_clamp_max, f"sde.sigma_clamp_min ({self.sigma_clamp_min}) must "
                 f"be <= sde.sigma_clamp_max ({self.sigma_clamp_max})")
        _require(self.ve_sigma_min < self.ve_sigma_max, f"sde.ve_sigma_min ({self.ve_sigma_min}) must be < "
                 f"sde.ve_sigma_max ({self.ve_sigma_max})")


@dataclass(frozen=True)
class SamplerConfig:
    """Reverse-process sampler. Paper: probability-flow ODE, atol = rtol = 1e-5, prior x(t).

    ``kind``: "ode" (adaptive ``method``, the paper's), "pc" (predictor-corrector, Algorithm 1),
    "heun" (fixed ``steps`` of the probability-flow ODE in the noise std, 2·steps - 1 score
    evaluations per frame; see samplers.HeunSampler).
    ``prior="previous"`` starts at x(t) (the paper); ``"velocity"`` at x(t) + v(t).
    ``eps``: the diffusion time the sampler stops at (Table 3 searches 0.1 ... 0.99).
    ``method``: one of torchdiffeq's (ODE_METHODS). ``atol`` / ``rtol`` >= 0, not both 0.

    Raises ValueError (naming ``sampler.<field>``) for a value outside its range.
    """

    SECTION: ClassVar[str] = "sampler"
    LIMITS: ClassVar[dict[str, Limit]] = {
        "eps": _unit_open("a diffusion time"), "atol": _non_negative(), "rtol": _non_negative(),
        "steps": _count(1, "heun steps"), "n_predictor": _count(1, "predictor steps"),
        "n_corrector": _count(0, "corrector steps per predictor step"), "snr": _positive("signal-to-noise ratio"),
    }

    kind: Literal["ode", "pc", "heun"] = "ode"
    prior: Literal["previous", "velocity"] = "previous"
    eps: float = 1e-5
    atol: float = 1e-5
    rtol: float = 1e-5
    method: str = "dopri5"
    steps: int = 1  # heun: fixed steps
    n_predictor: int = 100
    n_corrector: int = 1
    snr: float = 0.16

    def __post_init__(self) -> None:
        _check_section(self)
        _require(self.method in ODE_METHODS, f"sampler.method must be one of {ODE_METHODS}, got {self.method!r}")
        _require(self.atol > 0 or self.rtol > 0, "sampler.atol and sampler.rtol cannot both be 0")


@dataclass(frozen=True)
class TrainConfig:
    """Training loop. Paper: Adam 5e-4, weight decay 1e-10, ReduceLROnPlateau patience 5, min lr
    1e-7, seed 1, batch 200, 200 epochs, validation every 5 epochs.

    Raises ValueError (naming ``train.<field>``) for a value outside its range (see LIMITS) or a
    ``device`` that is not auto, cpu, cuda, mps or xpu (optionally ``:index``)."""

    SECTION: ClassVar[str] = "train"
    LIMITS: ClassVar[dict[str, Limit]] = {
        "lr": _positive("learning rate"), "weight_decay": _non_negative(), "patience": _count(0, "epochs"),
        "min_lr": _non_negative(), "lr_factor": _unit_open("the factor a plateau multiplies the learning rate by"),
        "seed": Limit(lo=0, hi=2**32 - 1), "batch_size": _count(1, "molecule windows"), "epochs": _count(1),
        "stride": _count(1, "MD frames per model frame"), "input_noise": _non_negative("Å"),
        "input_noise_shared": _non_negative("Å"), "unroll_prob": Limit(lo=0, hi=1, note="a probability"),
        "unroll_steps": _count(1, "model steps"), "max_steps": _count(0, "optimiser steps; 0: no limit"),
        "max_minutes": _non_negative("minutes; 0: no limit"),
        "val_every": _count(1, "epochs between validations; to validate rarely, set it above train.epochs"),
        "val_rollout_frames": _count(0, "frames; 0: no validation rollout"),
        "val_rollout_starts": _count(1, "rollout starts"), "checkpoint_every": _count(1, "epochs"),
        "keep_checkpoints": _count(0, "checkpoints; 0: keep all"), "grad_clip": _non_negative("gradient norm; 0: off"),
        "log_every": _count(1, "optimiser steps"),
        "calibration_frames": _count(0, "frames; 0: no calibration of the step's fluctuation"),
    }

    lr: float = 5e-4
    weight_decay: float = 1e-10
    patience: int = 5
    min_lr: float = 1e-7
    lr_factor: float = 0.5
    seed: int = 1
    batch_size: int = 200  # global batch (molecule windows); split evenly over DDP ranks
    epochs: int = 200
    stride: int = 1  # MD frames between consecutive model frames
    input_noise: float = 0.0  # Å, std of the noise on the conditioning frames x(t-2), x(t-1), x(t)
    input_noise_shared: float = 0.0  # Å, std of one offset added to all three (velocities stay exact)
    # the target follows the noise: x(t+1) plus the Verlet response of the fitted valence force field
    # (bonds, angles, torsions; valence/prior.py) to the perturbed frames, not the clean x(t+1) (training/conditioning.py)
    input_noise_response: bool = False
    unroll_prob: float = 0.0  # probability that a batch is conditioned on the model's own frames
    # targets x(t+1) continued from x(t) by the data's own forces (data.windows.force_continuations): the
    # reference's dynamics without its thermostat's random kicks, where the data has forces at every step
    force_targets: bool = False
    unroll_steps: int = 1  # most model steps unrolled (k drawn uniformly in 1..unroll_steps)
    max_steps: int = 0  # stop after this many optimiser steps (0: no limit), for smoke runs
    # wall-clock training budget (0: no limit), checked between optimiser steps; checkpoints carry
    # the seconds trained so far, so a killed and resumed run counts on from there
    max_minutes: float = 0.0
    val_every: int = 5  # epochs between validations (>= 1; above epochs: no validation)
    val_rollout_frames: int = 20  # frames rolled out for the validation ARMSE (0: skip)
    val_rollout_starts: int = 4  # rollout starts spread over the validation trajectory
    checkpoint_every: int = 1  # epochs
    keep_checkpoints: int = 2  # newest checkpoints kept (0: all)
    grad_clip: float = 10.0  # largest gradient norm (0: no clipping)
    device: str = "auto"  # "auto": cuda if available
    dtype: Literal["float32", "float64"] = "float32"
    log_every: int = 50  # steps
    # after training, frames rolled out from training windows to measure the model step's own friction
    # per element (training/calibration.py), which rollout.step_fluctuation balances; 0: not measured
    calibration_frames: int = 0
    # with calibration_frames: each X-H stretch's friction measured and balanced on its own, beside its elements'
    calibrate_stretches: bool = False

    def __post_init__(self) -> None:
        _check_section(self)
        _require(isinstance(self.device, str) and _DEVICE.fullmatch(self.device) is not None,
                 f"train.device must be auto, cpu, cuda, mps or xpu (optionally with :index, e.g. cuda:1), "
                 f"got {self.device!r}")
        _require(self.calibration_frames == 0 or self.calibration_frames >= 3 * CALIBRATION_ROUNDS,
                 f"train.calibration_frames must be 0 (no calibration) or at least {3 * CALIBRATION_ROUNDS} (3 frames "
                 f"in each of its {CALIBRATION_ROUNDS} rounds), got {self.calibration_frames}")


@dataclass(frozen=True)
class RolloutConfig:
    """Physics applied to every generated frame (dynamics/physics.py); beyond the paper, which
    generates frames with no correction ("paper mode": momentum = false, thermostat = "none").

    ``momentum``: remove each molecule's net linear and angular momentum from the implied velocity.
    ``step_fluctuation``: kick each frame with the noise that balances the model step's own friction
    at the training data's temperature (fluctuation-dissipation, dynamics.fluctuation.StepFluctuation),
    with the per-element friction the checkpoint measured after training (``train.calibration_frames``);
    no effect on a checkpoint without that measurement.
    ``prior_fallback``: on the atoms of a bond more than this many thermal widths from its fitted rest
    length, the frame fades from the network's into the valence prior's (nn.score_net.PriorFallback),
    reaching the prior at 1.5 times it; 0 keeps the network everywhere. ``prior_fallback_energy``: measure
    that excursion by the bond's oscillation amplitude (its stretch and stretching speed together, the
    stretch's energy) instead of its momentary stretch, so that a stretch the network pumps is handed to
    the prior while it passes its rest length too.
    ``thermostat``: "langevin" (per-atom Ornstein-Uhlenbeck step on the implied velocity), "bussi"
    (stochastic velocity rescaling of each molecule's kinetic energy) or "none".
    ``temperature_K``: thermostat target; 0 means the training data's mean kinetic temperature,
    which every checkpoint stores. ``tau_fs``: thermostat relaxation time (inverse friction).
    ``compile``: run each rollout frame (sampler, score network with its fused ops, corrections,
    health checks) as one torch.compile (inductor) graph: about half the time per frame at batch 1
    on a CPU with the fixed-step heun sampler, after a one-off compilation of 3-30 s (samplers that
    draw random numbers or adapt their steps break the graph and gain little).

    Raises ValueError (naming ``rollout.<field>``) for a value outside its range.
    """

    SECTION: ClassVar[str] = "rollout"
    LIMITS: ClassVar[dict[str, Limit]] = {
        "temperature_K": _non_negative("K; 0: the training data's"), "tau_fs": _positive("fs"),
        "prior_fallback": _non_negative("thermal widths of a bond's well; 0: off"),
    }

    momentum: bool = True
    step_fluctuation: bool = True
    prior_fallback: float = 4.0  # thermal widths of a bond's fitted well; 0: the network everywhere
    prior_fallback_energy: bool = False  # the widths of the bond's oscillation amplitude, not its momentary stretch
    thermostat: Literal["none", "langevin", "bussi"] = "langevin"
    temperature_K: float = 0.0  # K; 0: from the checkpoint's training data
    tau_fs: float = 100.0  # fs
    compile: bool = False

    def __post_init__(self) -> None:
        _check_section(self)


_SECTIONS = {"model": ModelConfig, "sde": SDEConfig, "sampler": SamplerConfig, "train": TrainConfig,
             "rollout": RolloutConfig}


def _coerce(cls: type, name: str, value: Any) -> Any:
    """Convert a TOML/CLI value to the field's declared type, with an error naming the field."""
    hint = get_type_hints(cls)[name]
    choices = get_args(hint) if getattr(hint, "__origin__", None) is Literal else None
    where = f"{cls.SECTION}.{name}"
    if choices is not None:
        if value not in choices:
            raise ValueError(f"{where} must be one of {choices}, got {value!r}")
        return value
    try:
        if hint is bool:
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0"):
                    raise ValueError(value)
                return value.lower() in ("true", "1")
            return bool(value)
        if hint is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if hint is float:
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where} expects {hint.__name__}, got {value!r}") from None


def _parse_scalar(text: str) -> Any:
    """A CLI override value: parsed as a TOML value when possible, else kept as a bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


@dataclass(frozen=True)
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    sde: SDEConfig = field(default_factory=SDEConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Config":
        unknown = set(data) - set(_SECTIONS)
        if unknown:
            raise ValueError(f"unknown config section(s) {sorted(unknown)}; expected {sorted(_SECTIONS)}")
        parts = {}
        for sec, sec_cls in _SECTIONS.items():
            values = data.get(sec, {})
            if not isinstance(values, dict):
                raise ValueError(f"config section [{sec}] must be a table, got {values!r}")
            names = {f.name for f in fields(sec_cls)}
            bad = set(values) - names
            if bad:
                raise ValueError(f"unknown field(s) {sorted(bad)} in [{sec}]; valid: {sorted(names)}")
            parts[sec] = sec_cls(**{k: _coerce(sec_cls, k, v) for k, v in values.items()})
        return cls(**parts)

    def with_overrides(self, overrides: list[str] | tuple[str, ...] = ()) -> "Config":
        """Apply ``section.field=value`` strings, e.g. ``train.lr=1e-3`` or ``sampler.kind=pc``."""
        data = self.to_dict()
        for item in overrides:
            key, sep, text = item.partition("=")
            sec, dot, name = key.strip().partition(".")
            if not sep or not dot:
                raise ValueError(f"override {item!r} must look like section.field=value")
            if sec not in data:
                raise ValueError(f"override {item!r}: unknown section {sec!r}; expected {sorted(_SECTIONS)}")
            if name not in data[sec]:
                raise ValueError(f"override {item!r}: unknown field {name!r} in [{sec}]")
            data[sec][name] = _parse_scalar(text.strip())
        return Config.from_dict(data)

    @classmethod
    def from_toml(cls, path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> "Config":
        """Load a TOML file (None: defaults) and apply overrides. A name that is no file but names a
        config shipped with the package ("long", "demo.toml", ...) loads that one, so an installed
        package's configs need no path. Raises FileNotFoundError naming the shipped ones otherwise."""
        base = cls()
        if path is not None:
            p = Path(path)
            if not p.is_file():
                from importlib.resources import files

                shipped = files("diffmd_fast") / "configs"
                named = shipped / (p.name if p.suffix == ".toml" else f"{p.name}.toml")
                if p.parent != Path(".") or not named.is_file():
                    names = sorted(f.name.removesuffix(".toml") for f in shipped.iterdir() if f.name.endswith(".toml"))
                    raise FileNotFoundError(f"config file {p} does not exist (shipped configs: {', '.join(names)})")
                p = Path(str(named))
            try:
                base = cls.from_dict(tomllib.loads(p.read_text()))
            except tomllib.TOMLDecodeError as err:
                raise ValueError(f"config file {p} is not valid TOML: {err}") from err
        return base.with_overrides(overrides)

    def to_toml(self) -> str:
        lines = []
        for sec, values in self.to_dict().items():
            lines.append(f"[{sec}]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in values.items()]
            lines.append("")
        return "\n".join(lines)

    def save(self, directory: str | Path) -> None:
        """Write config.json and config.toml into ``directory`` (the resolved run config)."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        (d / "config.json").write_text(json.dumps(self.to_dict(), indent=2))
        (d / "config.toml").write_text(self.to_toml())

    def replace(self, **sections: Any) -> "Config":
        return replace(self, **sections)
