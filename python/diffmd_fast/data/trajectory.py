"""The in-memory reference trajectory every loader returns and every task consumes.

Why one container: MD17 npz, revised MD17, ISO17 databases, extxyz and our own GFN2-xTB runs
all reduce to "positions of a fixed set of atoms at evenly spaced times, maybe with energies and
forces". Validating once here (shapes, finite coordinates) means a broken file fails at load
time with its name in the message instead of producing NaN losses hours later.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ase import units
from ase.symbols import Symbols

from .elements import masses


class TrajectoryError(ValueError):
    """A trajectory file or array is malformed; the message names the source and the problem."""


def _first_bad_frame(arr: np.ndarray) -> int:
    """Index of the first frame holding a non-finite value (arr has a leading frame axis)."""
    bad = ~np.isfinite(arr.reshape(arr.shape[0], -1)).all(axis=1)
    return int(np.argmax(bad))


@dataclass(frozen=True)
class Trajectory:
    """Positions of N atoms over T frames in time order, with optional energies and forces.

    ``dt_fs`` is the time between *stored* frames (MD timestep times the save interval), so
    a model trained on frame windows knows its physical time step; ``None`` when the file does
    not say (pass it to the loader, ``--dt-fs`` on the command line). Frames that are not evenly
    spaced (a data set that holds out some steps) carry ``frame_steps``: frame t lies at time
    ``frame_steps[t] * dt_fs``; ``spacing_known=False`` says the frames are in time order but which
    of them are consecutive is not known. Windows only ever span consecutive frames.
    ``velocities`` are the MD engine's velocities at each stored frame where the file has them
    (not finite differences of positions; ``velocity_estimates`` falls back to those).
    ``provenance`` is a JSON-able dict recording how the data was made (engine, method, temperature,
    seed, command, source file, units converted, cell unwrapped).
    """

    positions: np.ndarray  # (T, N, 3) float64 Å
    numbers: np.ndarray  # (N,) int64 atomic numbers
    dt_fs: float | None  # fs between stored frames (or per unit of frame_steps); None: not known
    energies: np.ndarray | None = None  # (T,) eV
    forces: np.ndarray | None = None  # (T, N, 3) eV/Å
    name: str = "trajectory"
    provenance: dict[str, Any] = field(default_factory=dict)
    frame_steps: np.ndarray | None = None  # (T,) int64 increasing, time in units of dt_fs; None: 0..T-1
    spacing_known: bool = True  # False: in time order, but gaps between frames are not known
    velocities: np.ndarray | None = None  # (T, N, 3) Å/fs, the engine's own (diffmd simulate records them)

    def __post_init__(self) -> None:
        src = self.name
        pos = np.asarray(self.positions, dtype=np.float64)
        if pos.ndim != 3 or pos.shape[2] != 3:
            raise TrajectoryError(f"{src}: positions must have shape (T, N, 3), got {pos.shape}")
        if pos.shape[0] < 1 or pos.shape[1] < 1:
            raise TrajectoryError(f"{src}: positions are empty, shape {pos.shape}")
        if not np.isfinite(pos).all():
            kind = "NaN" if np.isnan(pos).any() else "non-finite values"
            raise TrajectoryError(f"{src}: positions contain {kind} at frame {_first_bad_frame(pos)}")
        num = np.asarray(self.numbers)
        if num.ndim != 1 or num.shape[0] != pos.shape[1]:
            raise TrajectoryError(
                f"{src}: numbers must have shape ({pos.shape[1]},) to match positions {pos.shape}, "
                f"got {num.shape}"
            )
        if not np.issubdtype(num.dtype, np.integer) and not np.all(num == np.round(num)):
            raise TrajectoryError(f"{src}: atomic numbers must be integers, got {num.dtype}")
        num = num.astype(np.int64)
        if (num < 1).any() or (num > 118).any():
            raise TrajectoryError(f"{src}: atomic numbers must lie in 1..118, got {sorted(set(num.tolist()))}")
        if self.dt_fs is not None and not (np.isfinite(self.dt_fs) and self.dt_fs > 0):
            raise TrajectoryError(f"{src}: dt_fs must be a positive number of fs or None, got {self.dt_fs!r}")
        dt_fs, steps = self.dt_fs, self.frame_steps
        if steps is not None:
            steps = np.asarray(steps)
            if steps.shape != (pos.shape[0],) or not np.issubdtype(steps.dtype, np.integer):
                raise TrajectoryError(f"{src}: frame_steps must be ({pos.shape[0]},) integers, got {steps.dtype} {steps.shape}")
            gaps = np.diff(steps.astype(np.int64))
            if (gaps <= 0).any():
                raise TrajectoryError(f"{src}: frame_steps must increase, got {steps[:10].tolist()}...")
            # canonical form: steps from 0 with gcd 1 (the gcd folds into dt_fs); None when even
            g = int(np.gcd.reduce(gaps)) if gaps.size else 1
            steps = (steps.astype(np.int64) - int(steps[0])) // g
            dt_fs = None if dt_fs is None else float(dt_fs) * g
            if (np.diff(steps) == 1).all():
                steps = None
        energies = self._check_optional("energies", self.energies, (pos.shape[0],))
        forces = self._check_optional("forces", self.forces, pos.shape)
        velocities = self._check_optional("velocities", self.velocities, pos.shape)
        try:
            json.dumps(self.provenance)
        except TypeError as err:
            raise TrajectoryError(f"{src}: provenance must be JSON-serialisable ({err})") from err
        object.__setattr__(self, "positions", pos)
        object.__setattr__(self, "numbers", num)
        object.__setattr__(self, "dt_fs", None if dt_fs is None else float(dt_fs))
        object.__setattr__(self, "frame_steps", steps)
        object.__setattr__(self, "spacing_known", bool(self.spacing_known))
        object.__setattr__(self, "energies", energies)
        object.__setattr__(self, "forces", forces)
        object.__setattr__(self, "velocities", velocities)
        object.__setattr__(self, "provenance", dict(self.provenance))

    def _check_optional(self, key: str, arr: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
        if arr is None:
            return None
        out = np.asarray(arr, dtype=np.float64)
        if out.shape != tuple(shape):
            # MD17 stores energies as (T, 1); accept that one harmless variant.
            if key == "energies" and out.shape == (shape[0], 1):
                out = out[:, 0]
            else:
                raise TrajectoryError(f"{self.name}: {key} must have shape {tuple(shape)}, got {out.shape}")
        if not np.isfinite(out).all():
            raise TrajectoryError(f"{self.name}: {key} contain non-finite values at frame {_first_bad_frame(out)}")
        return out

    @property
    def num_frames(self) -> int:
        return int(self.positions.shape[0])

    @property
    def num_atoms(self) -> int:
        return int(self.positions.shape[1])

    @property
    def evenly_spaced(self) -> bool:
        """True when frame t+1 always follows frame t by the same time (known or not)."""
        return self.spacing_known and self.frame_steps is None

    @property
    def steps(self) -> np.ndarray | None:
        """(T,) int64 time of each frame in units of dt_fs; None when the spacing is not known."""
        if not self.spacing_known:
            return None
        return np.arange(self.num_frames, dtype=np.int64) if self.frame_steps is None else self.frame_steps

    @property
    def duration_fs(self) -> float | None:
        """fs from the first to the last frame; None when the time step or the spacing is unknown."""
        steps = self.steps
        return None if self.dt_fs is None or steps is None else float(steps[-1] - steps[0]) * self.dt_fs

    def consecutive(self, start: int, stop: int) -> bool:
        """Whether frames ``start .. stop`` (inclusive) are consecutive MD frames, with no gap."""
        steps = self.steps
        if steps is None:
            return False
        return 0 <= start <= stop < self.num_frames and int(steps[stop] - steps[start]) == stop - start

    def velocity_estimates(self, frames: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """(T, N, 3) float64 Å/fs, or (len(frames), N, 3) for the frame indices ``frames``: each frame's
        velocity for phase-space models. The engine's own where the file has them; else, with forces,
        the velocity-Verlet identity v(t) = (x(t) - x(t-1)) / Δt + (Δt / 2) F(t) / m (exact for
        velocity-Verlet data; frame 0 from its forward twin); else the second-order backward difference
        (3 x(t) - 4 x(t-1) + x(t-2)) / (2 Δt) (forward and central at frames 0 and 1, which no window has
        as its current frame). Backward, so that the velocity at a window's x(t) never reads a later
        frame: it must not carry its own target. Only the frames asked for are computed (a rollout
        start needs four). Raises TrajectoryError without a time step, with frames that are not evenly
        spaced, or with fewer than 3 frames to difference."""
        t = np.arange(self.num_frames) if frames is None else np.asarray(frames, dtype=np.int64)
        if self.velocities is not None:
            return self.velocities if frames is None else self.velocities[t]
        dt = self.require_dt()
        if not self.evenly_spaced or self.num_frames < 3:
            raise TrajectoryError(f"{self.name}: velocities are not stored and cannot be estimated: finite "
                                  "differences need at least 3 evenly spaced frames")
        x = self.positions
        v = np.empty((len(t), *x.shape[1:]))
        if self.forces is not None:
            kick = 0.5 * dt * self.forces[t] / masses(self.numbers)[None, :, None] * units.fs**2  # Å/fs
            back = t >= 1
            v[back] = (x[t[back]] - x[t[back] - 1]) / dt + kick[back]
            v[~back] = (x[1] - x[0]) / dt - kick[~back]
            return v
        back = t >= 2
        v[back] = (3.0 * x[t[back]] - 4.0 * x[t[back] - 1] + x[t[back] - 2]) / (2.0 * dt)
        v[t == 1] = (x[2] - x[0]) / (2.0 * dt)
        v[t == 0] = (-3.0 * x[0] + 4.0 * x[1] - x[2]) / (2.0 * dt)
        return v

    def require_dt(self) -> float:
        """dt_fs, or a one-line error saying how to give it."""
        if self.dt_fs is None:
            raise TrajectoryError(f"{self.name}: the time between frames is not stored; pass --dt-fs FS "
                                  "(Python: dt_fs=)")
        return self.dt_fs

    @property
    def formula(self) -> str:
        """Hill-ordered chemical formula as ASE writes it, e.g. ``C2H6O``."""
        return Symbols(self.numbers).get_chemical_formula(mode="hill")

    def slice(self, start: int, stop: int | None = None, step: int = 1) -> "Trajectory":
        """Frames ``start:stop:step`` as a new trajectory; ``dt_fs`` scales with ``step`` when evenly spaced."""
        if step < 1:
            raise ValueError(f"{self.name}: slice step must be >= 1, got {step}")
        sel = slice(start, stop, step)
        pos = self.positions[sel]
        if pos.shape[0] == 0:
            raise TrajectoryError(
                f"{self.name}: slice({start}, {stop}, {step}) selects no frames of {self.num_frames}"
            )
        return Trajectory(
            positions=pos,
            numbers=self.numbers,
            dt_fs=self.dt_fs * step if self.dt_fs is not None and self.frame_steps is None and self.spacing_known
            else self.dt_fs,
            energies=None if self.energies is None else self.energies[sel],
            forces=None if self.forces is None else self.forces[sel],
            name=self.name,
            provenance={**self.provenance, "slice": [start, stop, step]},
            frame_steps=None if self.frame_steps is None else self.frame_steps[sel],
            spacing_known=self.spacing_known,
            velocities=None if self.velocities is None else self.velocities[sel],
        )

    def __repr__(self) -> str:
        return (
            f"Trajectory(name={self.name!r}, formula={self.formula}, frames={self.num_frames}, "
            f"dt_fs={self.dt_fs}, evenly_spaced={self.evenly_spaced}, energies={self.energies is not None}, forces={self.forces is not None}, velocities={self.velocities is not None})"
        )
