"""The friction of a trained model's own step, measured on its training data, so that rollouts can
balance it with the matching fluctuation (dynamics.physics.StepFluctuation).

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
Nothing of the rollouts beyond the data's own temperatures enters, and no setting is chosen per
molecule: a new molecule gets its γ from its own training data.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..data.trajectory import Trajectory
from ..data.windows import start_batch
from ..data.elements import masses
from ..dynamics.physics import MomentumProjection, StepFluctuation
from ..dynamics.rollout import evenly_spaced_starts
from ..dynamics.stepper import Stepper
from ..evaluation.longrun import atom_kinetic_energy, group_temperature, internal_velocities

FRICTION_RANGE = (1e-4, 0.5)  # 1/fs: from far weaker than any thermostat to critically damped C-H
GAIN = 0.7  # damping of each round's Newton step against its sampling noise
# d ln T / d ln γ a round's step may assume: 1 without a thermostat (T proportional to γ); a thermostat's
# pull towards T_data makes it smaller (heavy atoms: about 0.2), never below this floor (a 5x larger step)
SENSITIVITY_RANGE = (0.2, 1.0)


@dataclass(frozen=True)
class Calibration:
    """What ``measure_step_friction`` found: per atomic number, the friction γ (1/fs) whose fluctuation
    balances the step, the training data's temperature (K) and the last round's rollout temperature (K)."""

    friction_per_fs: dict[int, float]
    target_K: dict[int, float]
    measured_K: dict[int, float]
    frames: int  # frames rolled out per start
    starts: int

    def record(self) -> dict:
        """The JSON-able form a checkpoint stores (dynamics.physics.StepFluctuation reads friction_per_fs)."""
        return {"friction_per_fs": {str(z): g for z, g in self.friction_per_fs.items()},
                "target_K": {str(z): t for z, t in self.target_K.items()},
                "measured_K": {str(z): t for z, t in self.measured_K.items()},
                "frames": self.frames, "starts": self.starts}


def friction_table(record: dict | None) -> dict[int, float] | None:
    """{atomic number: γ (1/fs)} of a checkpoint's ``step_friction`` record, None when there is none."""
    if not record or not record.get("friction_per_fs"):
        return None
    return {int(z): float(g) for z, g in record["friction_per_fs"].items()}


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

    def __init__(self, z: np.ndarray, frame_fs: float) -> None:
        self.z, self.frame_fs = z, frame_fs
        self.previous: np.ndarray | None = None  # (N, 3) Å, the last frame seen
        self.sums: dict[int, list[float]] = {int(e): [0.0, 0] for e in np.unique(z)}
        self.burn_in = 0

    def reset(self, burn_in: int) -> None:
        self.sums = {e: [0.0, 0] for e in self.sums}
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
                          frame_fs: float, temperature_K: float, frames: int, starts: int = 16, rounds: int = 8,
                          dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu", seed: int = 1,
                          initial_per_fs: float = 0.01, corrections: Sequence = (MomentumProjection(),),
                          progress: bool = False) -> Calibration:
    """Each element's step friction γ (module docstring): ``starts`` rollouts from training windows
    spread over ``trajs``, ``frames`` frames each in ``rounds`` rounds, the first third of every
    round not measured (the rollouts relax to the new γ), γ starting at ``initial_per_fs`` 1/fs and
    kept within FRICTION_RANGE. ``temperature_K``: the fluctuation's temperature (the training data's
    mean kinetic temperature); ``frame_fs``: the model's frame time (fs). Raises ValueError when
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
    fluctuation = StepFluctuation(temperature_K, friction, frame_fs)
    stepper = Stepper(model, sde, sampler, start, corrections=[fluctuation, *corrections],
                      generator=torch.Generator(device=device).manual_seed(seed))
    kinetics = _ElementKinetics(start.z.cpu().numpy(), frame_fs)
    stepper.attach(kinetics)
    per_round = frames // rounds
    measured: dict[int, float] = {}
    rounds_seen: list[tuple[dict[int, float], dict[int, float]]] = []  # (γ of the round, its temperatures)
    lo, hi = FRICTION_RANGE
    for _ in range(rounds):
        kinetics.reset(burn_in=per_round // 3)
        stepper.run(per_round, progress=progress, desc="calibrating the step's fluctuation", frame_fs=frame_fs)
        if stepper.num_active == 0:
            raise RuntimeError("every calibration rollout stopped (stepper.stopped says why); the model's step is "
                               "not stable enough to measure its friction")
        measured = _temperatures(kinetics.sums)
        rounds_seen.append((friction, measured))
        # the Newton step in log space with the sensitivity the rounds measured, damped (GAIN)
        friction = {e: min(hi, max(lo, g * (target[e] / measured[e]) ** (GAIN / log_sensitivity(rounds_seen, e))))
                    if measured[e] > 0 else g for e, g in friction.items()}
        fluctuation.set_friction(friction)
    # the geometric mean of the later half of the γ each round ended with (the next round's γ, and the
    # last update): the estimate with its round-to-round noise averaged
    ended = [g for g, _ in rounds_seen[1:]] + [friction]
    later = ended[len(ended) // 2:]
    friction = {e: math.exp(sum(math.log(h[e]) for h in later) / len(later)) for e in friction}
    return Calibration(friction, target, measured, frames, starts)
