"""The friction of a trained model's own step, measured on its training data, so that rollouts can
balance it with the matching fluctuation (dynamics.fluctuation.StepFluctuation).

A one-evaluation sampler returns the conditional mean of the next frame. Rolled out, that mean damps:
it keeps the friction of the data's dynamics (a reference under Langevin friction γ teaches the mean
that γ) and the shrinkage of the regression, and none of the fluctuations that balanced them. The
friction γ_e of each element is found by rolling the model out from training windows with the
fluctuation of a trial γ and moving γ until each element's kinetic temperature equals the training
data's, both measured the same way (finite-difference velocities at the model's frame time, rigid-body
translation and rotation removed, 3 degrees of freedom per atom). A step that damps velocities at rate γ and is kicked by
the noise of friction γ' holds the temperature T γ' / γ, so each round multiplies γ' by
(T_data / T_rollout)^(GAIN / s); the rounds continue the same rollouts. Without a thermostat s = 1. With
one in the rollouts (and the network's own heating) the temperature is not proportional to γ' but
linear in it, T = a + b γ' (the fluctuation's heat grows with γ', the thermostat's pull towards
T_data does not), so s = d ln T / d ln γ' < 1 (a small molecule's heavy atoms: about 0.2), and steps
that assume s = 1 move a few per cent of the way per round. Each round's s is measured from the
rounds so far (``log_sensitivity``).
With ``stretches`` each X-H stretch (per partner element X) gets a friction γ_s of its own, found the
same way from the kinetic temperature of the stretch, μ ⟨((v_H - v_X) · e)²⟩ / k_B (μ the pair's
reduced mass, e the bond's direction at the two frames' midpoint), and balanced by a kick along the
bond (dynamics.fluctuation.StepFluctuation): a conditional mean damps the fast stretch more than the rest
of a hydrogen's motion, by an amount that varies from one training to the next.
Nothing of the rollouts beyond the data's own temperatures enters, and no setting is chosen per
molecule: a new molecule gets its γ from its own training data.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from ase import units

from ..config import CALIBRATION_ROUNDS
from ..data.trajectory import Trajectory
from ..data.windows import start_batch
from ..data.elements import covalent_pairs, directed_bonds, masses
from ..dynamics.fluctuation import StepFluctuation, friction_label, hydrogen_partners, partners_from_bonds
from ..dynamics.physics import MomentumProjection
from ..dynamics.rollout import evenly_spaced_starts
from ..dynamics.stepper import Stepper
from ..evaluation.longrun import atom_kinetic_energy, group_temperature, internal_velocities

FRICTION_RANGE = (1e-4, 0.5)  # 1/fs: from far weaker than any thermostat to critically damped C-H
GAIN = 0.7  # damping of each round's Newton step against its sampling noise
# d ln T / d ln γ a round's step may assume: 1 without a thermostat (T proportional to γ); a thermostat's
# pull towards T_data makes it smaller (heavy atoms: about 0.2), never below this floor (a 5x larger step)
SENSITIVITY_RANGE = (0.2, 1.0)
UNBALANCED = 0.1  # a last round further than this fraction from the data's temperature is reported


@dataclass(frozen=True)
class Calibration:
    """What ``measure_step_friction`` found: per atomic number, the friction γ (1/fs) whose fluctuation
    balances the step, the training data's temperature (K) and the last round's rollout temperature (K)."""

    friction_per_fs: dict[int, float]
    target_K: dict[int, float]
    measured_K: dict[int, float]
    frames: int  # frames rolled out per start
    starts: int
    # with stretches: the same per X-H stretch, keyed by the partner's atomic number X
    stretch_friction_per_fs: dict[int, float] = field(default_factory=dict)
    stretch_target_K: dict[int, float] = field(default_factory=dict)
    stretch_measured_K: dict[int, float] = field(default_factory=dict)

    def summary(self) -> str:
        """One line: each element's and X-H stretch's friction (1/fs) with the data's / the last round's
        temperature (K), e.g. "H 0.0152 (443/434), C 0.0133 (311/300), C-H stretch 0.0095 (394/384)"."""
        return ", ".join(f"{friction_label(z, stretch)} {g:.4f} ({target[z]:.0f}/{measured.get(z, math.nan):.0f})"
                         for stretch, gammas, target, measured in self._tables() for z, g in gammas.items())

    def _tables(self) -> tuple[tuple[bool, dict, dict, dict], ...]:
        """(stretch?, γ, data's K, last round's K) of the elements, then of the X-H stretches."""
        return ((False, self.friction_per_fs, self.target_K, self.measured_K),
                (True, self.stretch_friction_per_fs, self.stretch_target_K, self.stretch_measured_K))

    def unbalanced(self, tolerance: float = UNBALANCED) -> list[str]:
        """Labels ("C 168 K against the data's 339 K, friction 0.0001 /fs", "C-H stretch ...") of the elements
        and stretches whose last calibration round ended more than ``tolerance`` (fraction) away from the
        training data's temperature: the fluctuation does not balance the step there (a friction at the
        edge of FRICTION_RANGE, or a step that heats or cools that motion beyond what noise can offset)."""
        out = []
        for stretch, gammas, target, measured in self._tables():
            for z, g in gammas.items():
                t, m = target.get(z, math.nan), measured.get(z, math.nan)
                if math.isfinite(t) and math.isfinite(m) and t > 0 and abs(m / t - 1.0) > tolerance:
                    out.append(f"{friction_label(z, stretch)} {m:.0f} K against the data's {t:.0f} K, friction {g:.2g} /fs")
        return out

    def record(self) -> dict:
        """The JSON-able form a checkpoint stores (dynamics.fluctuation.StepFluctuation reads friction_per_fs
        and stretch_friction_per_fs)."""
        out = {"friction_per_fs": {str(z): g for z, g in self.friction_per_fs.items()},
               "target_K": {str(z): t for z, t in self.target_K.items()},
               "measured_K": {str(z): t for z, t in self.measured_K.items()},
               "frames": self.frames, "starts": self.starts}
        if self.stretch_friction_per_fs:
            out.update({name: {str(z): v for z, v in table.items()} for name, table in (
                ("stretch_friction_per_fs", self.stretch_friction_per_fs), ("stretch_target_K", self.stretch_target_K),
                ("stretch_measured_K", self.stretch_measured_K))})
        return out


def friction_table(record: dict | None, key: str = "friction_per_fs") -> dict[int, float] | None:
    """{atomic number: γ (1/fs)} of a checkpoint's ``step_friction`` record, None when there is none;
    ``key="stretch_friction_per_fs"``: the X-H stretches', keyed by the partner's atomic number."""
    if not record or not record.get(key):
        return None
    return {int(z): float(g) for z, g in record[key].items()}


def _stretch_sums(x: np.ndarray, partner: np.ndarray, z: np.ndarray, frame_fs: float) -> dict[int, tuple[float, int]]:
    """{partner element X: (Σ μ s² / k_B (K), stretch-frames)} of frames x (T, n, 3) Å ``frame_fs`` fs apart:
    s = (v_H - v_X) · e of every hydrogen with a partner (``partner`` (n,), -1: none), v the
    finite-difference velocities, e the bond's direction at the two frames' midpoint, μ the reduced mass."""
    h = np.nonzero(partner >= 0)[0]
    if h.size == 0 or len(x) < 2:
        return {}
    p = partner[h]
    mid = 0.5 * (x[1:] + x[:-1])  # (T-1, n, 3)
    e = mid[:, h] - mid[:, p]
    e = e / np.linalg.norm(e, axis=-1, keepdims=True).clip(1e-12)
    v = (x[1:] - x[:-1]) / frame_fs  # (T-1, n, 3) Å/fs
    s = ((v[:, h] - v[:, p]) * e).sum(-1)  # (T-1, H) Å/fs
    m = masses(z)
    mu = m[h] * m[p] / (m[h] + m[p])  # (H,) amu
    t = mu * (s / units.fs) ** 2 / units.kB  # (T-1, H) K: μ s² / k_B (ASE velocity units: m v² in eV)
    return {int(e_): (float(t[:, z[p] == e_].sum()), int((z[p] == e_).sum()) * (len(x) - 1)) for e_ in np.unique(z[p])}


def stretch_temperatures(trajs: Sequence[Trajectory], stride: int) -> dict[int, float]:
    """K per partner element X: the kinetic temperature of the training frames' X-H stretches
    (``_stretch_sums``) at the model's stride, each trajectory's bonds at the median over its frames
    (data.elements.covalent_pairs, the bonds the rollouts' windows carry)."""
    sums: dict[int, list[float]] = {}
    for traj in trajs:
        frames = np.asarray(traj.positions[::stride], dtype=np.float64)
        z = np.asarray(traj.numbers)
        partner = partners_from_bonds(torch.as_tensor(z), directed_bonds(covalent_pairs(traj.positions, z))).numpy()
        for e, (t, n) in _stretch_sums(frames, partner, z, traj.dt_fs * stride).items():
            acc = sums.setdefault(e, [0.0, 0])
            acc[0] += t
            acc[1] += n
    return {e: t / n for e, (t, n) in sums.items() if n}


def _element_sums(x: np.ndarray, z: np.ndarray, frame_fs: float) -> dict[int, tuple[float, int]]:
    """{element: (Σ kinetic energy (eV), atom-frames)} of the internal velocities (rigid-body motion
    removed, evaluation.longrun.internal_velocities) of frames x (T, n, 3) Å, ``frame_fs`` fs apart."""
    m = masses(z)
    ke = atom_kinetic_energy(internal_velocities(x, m, frame_fs), m)  # (n,) eV over the T - 1 velocities
    return {int(e): (float(ke[z == e].sum()), int((z == e).sum()) * (len(x) - 1)) for e in np.unique(z)}


def _temperatures(sums: dict[int, list[float]]) -> dict[int, float]:
    """K per element from {element: [Σ kinetic energy (eV), atom-frames]}, T = 2 Σ KE / (3 k_B count),
    and the whole molecule's under key 0."""
    whole = [sum(v[k] for v in sums.values()) for k in (0, 1)]
    return {e: group_temperature(s, count) for e, (s, count) in {**sums, 0: whole}.items()}


def element_temperatures(trajs: Sequence[Trajectory], stride: int) -> dict[int, float]:
    """K per atomic number, and of all atoms under key 0: the kinetic temperature of the training
    frames' finite-difference velocities (x(t+s) - x(t)) / (s dt) at the model's stride s, rigid-body
    translation and rotation removed, 3 degrees of freedom per atom."""
    sums: dict[int, list[float]] = {}
    for traj in trajs:
        frames = np.asarray(traj.positions[::stride], dtype=np.float64)
        if len(frames) < 2:
            continue
        for e, (s, n) in _element_sums(frames, np.asarray(traj.numbers), traj.dt_fs * stride).items():
            acc = sums.setdefault(e, [0.0, 0])
            acc[0] += s
            acc[1] += n
    return _temperatures(sums)


class _ElementKinetics:
    """Stepper observer: Σ kinetic energy and atom-frames per element of the active molecules' frames after ``burn_in``."""

    def __init__(self, z: np.ndarray, frame_fs: float, partner: np.ndarray | None = None) -> None:
        self.z, self.frame_fs, self.partner = z, frame_fs, partner
        self.previous: np.ndarray | None = None  # (N, 3) Å, the last frame seen
        self.sums: dict[int, list[float]] = {int(e): [0.0, 0] for e in np.unique(z)}
        self.stretch: dict[int, list[float]] = {}  # {X: [Σ μ s² / k_B, count]} with ``partner``
        self.burn_in = 0

    def reset(self, burn_in: int) -> None:
        self.sums = {e: [0.0, 0] for e in self.sums}
        self.stretch = {}
        self.burn_in = burn_in

    def __call__(self, stepper: Stepper) -> None:
        x = stepper.positions.double().cpu().numpy().copy()  # (N, 3) Å, NaN for stopped molecules
        if self.previous is not None and self.burn_in <= 0:
            pair = np.stack([self.previous, x])  # (2, N, 3)
            batch = stepper.start.batch.cpu().numpy()
            for b in np.unique(batch):
                atoms = batch == b
                if np.isfinite(pair[:, atoms]).all():
                    for e, (s, n) in _element_sums(pair[:, atoms], self.z[atoms], self.frame_fs).items():
                        self.sums[e][0] += s
                        self.sums[e][1] += n
            if self.partner is not None:  # stopped molecules' frames are NaN: their stretches drop out
                ok = np.isfinite(pair).all(axis=(0, 2))
                partner = np.where(ok & (self.partner >= 0) & ok[self.partner.clip(0)], self.partner, -1)
                for e, (t, n) in _stretch_sums(pair, partner, self.z, self.frame_fs).items():
                    acc = self.stretch.setdefault(e, [0.0, 0])
                    acc[0] += t
                    acc[1] += n
        self.burn_in -= 1
        self.previous = x


def log_sensitivity(rounds: Sequence[tuple[dict[int, float], dict[int, float]]], e: int) -> float:
    """d ln T / d ln γ of element ``e`` over the calibration ``rounds`` [(γ per element, measured K per
    element)], the first round left out (it starts from the data's windows, not from the step's own
    steady state): the least-squares slope, within SENSITIVITY_RANGE; 1 (T proportional to γ, no
    thermostat) until two rounds with different γ say otherwise."""
    used = [(g[e], t[e]) for g, t in rounds[1:] if t[e] > 0 and math.isfinite(t[e])]
    if len(used) < 2 or len({g for g, _ in used}) < 2:
        return 1.0
    x, y = np.log([g for g, _ in used]), np.log([t for _, t in used])
    slope = float(np.polyfit(x, y, 1)[0])
    return float(np.clip(slope, *SENSITIVITY_RANGE)) if math.isfinite(slope) else 1.0


def measure_step_friction(model: torch.nn.Module, sde, sampler, trajs: Sequence[Trajectory], *, stride: int,
                          frame_fs: float, temperature_K: float, frames: int, starts: int = 16,
                          rounds: int = CALIBRATION_ROUNDS,
                          dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu", seed: int = 1,
                          initial_per_fs: float = 0.01, corrections: Sequence = (MomentumProjection(),),
                          progress: bool = False, stretches: bool = False) -> Calibration:
    """Each element's step friction γ (module docstring): ``starts`` rollouts from training windows
    spread over ``trajs``, ``frames`` frames each in ``rounds`` rounds, the first third of every
    round not measured (the rollouts relax to the new γ), γ starting at ``initial_per_fs`` 1/fs and
    kept within FRICTION_RANGE. ``temperature_K``: the fluctuation's temperature (the training data's
    mean kinetic temperature); ``frame_fs``: the model's frame time (fs); ``stretches``: the X-H
    stretches' frictions too (module docstring). Raises ValueError when
    ``frames`` < 3 ``rounds`` or no training window fits, RuntimeError when every rollout stopped."""
    if frames < 3 * rounds:
        raise ValueError(f"calibration needs at least 3 frames per round, got {frames} frames in {rounds} rounds")
    usable = [t for t in trajs if t.num_frames > 2 * stride]
    if not usable:
        raise ValueError(f"no training trajectory has the {2 * stride + 1} frames a rollout start needs")
    chosen = [usable[i % len(usable)] for i in range(starts)]
    times = [evenly_spaced_starts(t.num_frames, 0, stride, starts)[i] for i, t in enumerate(chosen)]
    start = start_batch(chosen, times, stride=stride, dtype=dtype).to(device)
    target = element_temperatures(usable, stride)
    friction = {e: initial_per_fs for e in target if e}
    stretch_target = stretch_temperatures(usable, stride) if stretches else {}
    stretch = {e: initial_per_fs for e in stretch_target}
    fluctuation = StepFluctuation(temperature_K, friction, frame_fs, stretch or None)
    stepper = Stepper(model, sde, sampler, start, corrections=[fluctuation, *corrections],
                      generator=torch.Generator(device=device).manual_seed(seed))
    partner = hydrogen_partners(start).cpu().numpy() if stretch else None
    kinetics = _ElementKinetics(start.z.cpu().numpy(), frame_fs, partner)
    stepper.attach(kinetics)
    per_round = frames // rounds
    measured: dict[int, float] = {}
    stretch_measured: dict[int, float] = {}
    rounds_seen: list[tuple[dict[int, float], dict[int, float]]] = []  # (γ of the round, its temperatures)
    stretch_rounds: list[tuple[dict[int, float], dict[int, float]]] = []
    lo, hi = FRICTION_RANGE

    def newton(gammas: dict[int, float], goal: dict[int, float], now: dict[int, float], seen: list) -> dict[int, float]:
        """Each γ moved by the damped Newton step in log space with the sensitivity the rounds measured."""
        return {e: min(hi, max(lo, g * (goal[e] / now[e]) ** (GAIN / log_sensitivity(seen, e))))
                if now.get(e, 0) > 0 else g for e, g in gammas.items()}

    for _ in range(rounds):
        kinetics.reset(burn_in=per_round // 3)
        stepper.run(per_round, progress=progress, desc="calibrating the step's fluctuation", frame_fs=frame_fs)
        if stepper.num_active == 0:
            first = next(r for r in stepper.stopped if r is not None)
            raise RuntimeError(f"every calibration rollout stopped (the first: {first.message()}); the model's step is "
                               "not stable enough to measure its friction")
        measured = _temperatures(kinetics.sums)
        rounds_seen.append((friction, measured))
        friction = newton(friction, target, measured, rounds_seen)
        if stretch:
            stretch_measured = {e: t / n for e, (t, n) in kinetics.stretch.items() if n}
            stretch_rounds.append((stretch, stretch_measured))
            stretch = newton(stretch, stretch_target, stretch_measured, stretch_rounds)
        fluctuation.set_friction(friction, stretch or None)

    def settled(seen: list, last: dict[int, float]) -> dict[int, float]:
        """The geometric mean of the later half of the γ each round ended with (the next round's γ, and
        the last update): the estimate with its round-to-round noise averaged."""
        ended = [g for g, _ in seen[1:]] + [last]
        later = ended[len(ended) // 2:]
        return {e: math.exp(sum(math.log(h[e]) for h in later) / len(later)) for e in last}

    friction = settled(rounds_seen, friction)
    stretch = settled(stretch_rounds, stretch) if stretch else {}
    return Calibration(friction, target, measured, frames, starts, stretch, stretch_target, stretch_measured)
