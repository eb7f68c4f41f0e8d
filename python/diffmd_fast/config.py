"""Typed, frozen run configuration with the paper's defaults (appendix "Implementation details",
Table 3), loadable from TOML with ``section.field=value`` overrides.

Why frozen dataclasses: a run is fully described by one ``Config``; it is saved beside every
checkpoint (JSON), so a resumed or re-evaluated run cannot silently drift from what trained it.
"""
from __future__ import annotations

import json
import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, get_args, get_type_hints


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
    ballistic flight (beyond the paper; nn/bond_prior.py). ``prior_torsions``: with the torsions
    (they hold the molecule near the conformers the data visited; off: groups rotate freely).
    """

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
    bond_prior: bool = False  # anchor = Verlet step of a valence force field fitted to the data (nn/bond_prior.py)
    prior_torsions: bool = True  # the bond prior's periodic torsions
    backend: Literal["fused", "reference"] = "fused"


@dataclass(frozen=True)
class SDEConfig:
    """Forward SDE dx = σ^s dw, s in [0, 1] (Eq. 5).

    ``kind="conditional"``: per-atom σ from the previous acceleration (Eq. 6, Table 3 parameters
    σ_s, ā, η_σ; the paper does not report the values it chose, these are mid-range of Table 3).
    ``kind="ve"``: Song et al.'s plain VE SDE, std(s) = σ_min (σ_max/σ_min)^s, same for every atom.
    ``eps``: smallest diffusion time drawn in training; ``time_sampling``: how s is drawn on
    [eps, 1] (log-uniform by default, see SDE.time_from_uniform; "uniform" is Eq. 8 literally).
    """

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


@dataclass(frozen=True)
class SamplerConfig:
    """Reverse-process sampler. Paper: probability-flow ODE, atol = rtol = 1e-5, prior x(t).

    ``kind``: "ode" (adaptive ``method``, the paper's), "pc" (predictor-corrector, Algorithm 1),
    "heun" (fixed ``steps`` of the probability-flow ODE in the noise std, 2·steps - 1 score
    evaluations per frame; see samplers.HeunSampler).
    ``prior="previous"`` starts at x(t) (the paper); ``"velocity"`` at x(t) + v(t).
    ``eps``: the diffusion time the sampler stops at (Table 3 searches 0.1 ... 0.99).
    """

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


@dataclass(frozen=True)
class TrainConfig:
    """Training loop. Paper: Adam 5e-4, weight decay 1e-10, ReduceLROnPlateau patience 5, min lr
    1e-7, seed 1, batch 200, 200 epochs, validation every 5 epochs."""

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
    # (bonds, angles, torsions; nn/bond_prior.py) to the perturbed frames, not the clean x(t+1) (training/conditioning.py)
    input_noise_response: bool = False
    unroll_prob: float = 0.0  # probability that a batch is conditioned on the model's own frames
    unroll_steps: int = 1  # most model steps unrolled (k drawn uniformly in 1..unroll_steps)
    max_steps: int = 0  # stop after this many optimiser steps (0: no limit), for smoke runs
    # wall-clock training budget (0: no limit), checked between optimiser steps; checkpoints carry
    # the seconds trained so far, so a killed and resumed run counts on from there
    max_minutes: float = 0.0
    val_every: int = 5  # epochs
    val_rollout_frames: int = 20  # frames rolled out for the validation ARMSE (0: skip)
    val_rollout_starts: int = 4  # rollout starts spread over the validation trajectory
    checkpoint_every: int = 1  # epochs
    keep_checkpoints: int = 2
    grad_clip: float = 10.0
    device: str = "auto"  # "auto": cuda if available
    dtype: Literal["float32", "float64"] = "float32"
    log_every: int = 50  # steps


@dataclass(frozen=True)
class RolloutConfig:
    """Physics applied to every generated frame (dynamics/physics.py); beyond the paper, which
    generates frames with no correction ("paper mode": momentum = false, thermostat = "none").

    ``momentum``: remove each molecule's net linear and angular momentum from the implied velocity.
    ``thermostat``: "langevin" (per-atom Ornstein-Uhlenbeck step on the implied velocity), "bussi"
    (stochastic velocity rescaling of each molecule's kinetic energy) or "none".
    ``temperature_K``: thermostat target; 0 means the training data's mean kinetic temperature,
    which every checkpoint stores. ``tau_fs``: thermostat relaxation time (inverse friction).
    ``compile``: run each rollout frame (sampler, score network with its fused ops, corrections,
    health checks) as one torch.compile (inductor) graph: about half the time per frame at batch 1
    on a CPU with the fixed-step heun sampler, after a one-off compilation of 3-30 s (samplers that
    draw random numbers or adapt their steps break the graph and gain little).
    """

    momentum: bool = True
    thermostat: Literal["none", "langevin", "bussi"] = "langevin"
    temperature_K: float = 0.0  # K; 0: from the checkpoint's training data
    tau_fs: float = 100.0  # fs
    compile: bool = False


_SECTIONS = {"model": ModelConfig, "sde": SDEConfig, "sampler": SamplerConfig, "train": TrainConfig,
             "rollout": RolloutConfig}


def _coerce(cls: type, name: str, value: Any) -> Any:
    """Convert a TOML/CLI value to the field's declared type, with an error naming the field."""
    hint = get_type_hints(cls)[name]
    choices = get_args(hint) if getattr(hint, "__origin__", None) is Literal else None
    where = f"{cls.__name__}.{name}"
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
        """Load a TOML file (None: defaults) and apply overrides."""
        base = cls()
        if path is not None:
            p = Path(path)
            if not p.is_file():
                raise FileNotFoundError(f"config file {p} does not exist")
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
