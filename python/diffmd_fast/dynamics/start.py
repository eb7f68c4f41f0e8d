"""Starting a rollout from one structure: velocities (from the structure or Maxwell-Boltzmann) and
the two history frames the model conditions on, so that no reference trajectory is needed.

DiffMD conditions every frame on the window (x(t-2), x(t-1), x(t)) at the model's frame time Δt.
A single structure has only x(t); its velocity v (taken from the file, or drawn at a temperature)
gives the history by ``history_from_velocities``.
"""
from __future__ import annotations

import numpy as np
import torch
from ase import Atoms, units
from ase.md.velocitydistribution import Stationary, ZeroRotation, thermalize_momenta

from ..data.batch import FrameBatch
from ..data.windows import Window, collate_windows


def history_from_velocities(x: np.ndarray | torch.Tensor, v: np.ndarray | torch.Tensor, numbers, frame_fs: float,
                            *, dtype: torch.dtype = torch.float64) -> FrameBatch:
    """A one-molecule FrameBatch whose window ends at x (N, 3) Å moving with velocity v (N, 3) Å/fs:
    x(t-1) = x - v Δt, x(t-2) = x - 2 v Δt with Δt = ``frame_fs`` fs; ``numbers`` (N,) atomic numbers.
    ``FrameBatch.v`` is v itself (what a phase-space model starts from).

    This is a constant-velocity history (zero acceleration). It is acceptable because the window
    enters the model through v(t) and a(t) only: v(t) is exact, and the dropped a(t) is small (the
    bundled 500 K ethanol at 0.5 fs: |a| Δt² ≈ 2e-3 Å per frame against steps of ≈ 1e-2 Å); only
    the first two generated frames see the made-up history (the conditional SDE's noise scale,
    Eq. 6, reads a quiet atom), after which the window holds generated frames only."""
    if frame_fs <= 0:
        raise ValueError(f"frame_fs must be > 0, got {frame_fs}")
    pos = torch.as_tensor(np.asarray(x, dtype=np.float64))
    vel = torch.as_tensor(np.asarray(v, dtype=np.float64))
    if pos.ndim != 2 or pos.shape[1] != 3 or vel.shape != pos.shape:
        raise ValueError(f"positions and velocities must both be (N, 3); got {tuple(pos.shape)} and {tuple(vel.shape)}")
    step = vel * frame_fs  # Å per frame
    frames = torch.stack([pos - 2 * step, pos - step, pos, pos])  # x_next unknown: x, as in start_batch
    return collate_windows([Window(frames, torch.as_tensor(np.asarray(numbers, dtype=np.int64)), vel.expand(4, -1, -1))],
                           dtype=dtype)


def maxwell_boltzmann_velocities(atoms: Atoms, temperature_K: float, seed: int) -> np.ndarray:
    """(N, 3) Å/fs drawn from the Maxwell-Boltzmann distribution at ``temperature_K`` K (ASE's
    thermalize_momenta with a seeded numpy rng), then with zero net momentum (Stationary) and zero
    angular momentum (ZeroRotation); both keep the kinetic temperature of the draw. ``atoms`` is
    not modified."""
    if not temperature_K > 0:
        raise ValueError(f"temperature must be > 0 K, got {temperature_K}")
    work = Atoms(numbers=atoms.numbers, positions=atoms.positions)
    thermalize_momenta(work, temperature_K=temperature_K, rng=np.random.default_rng(seed))
    Stationary(work)
    ZeroRotation(work)
    return work.get_velocities() * units.fs  # ASE velocity unit Å/(ASE time); 1 fs = units.fs


def velocities_of(atoms: Atoms) -> np.ndarray | None:
    """(N, 3) Å/fs stored with the structure (momenta in extxyz/.traj), or None when it has none;
    all-zero momenta count as none (ASE integrators give every Atoms zero momenta by default)."""
    if not atoms.has("momenta") or not atoms.get_momenta().any():
        return None
    return atoms.get_velocities() * units.fs


def start_velocities(atoms: Atoms, temperature_K: float | None, seed: int) -> tuple[np.ndarray, str]:
    """(velocities (N, 3) Å/fs, where they came from): the structure's own when it has them, else
    Maxwell-Boltzmann at ``temperature_K``. Raises ValueError when it has none and no temperature
    is given."""
    v = velocities_of(atoms)
    if v is not None:
        return v, "from the structure"
    if not temperature_K:
        raise ValueError("the start structure has no velocities; give a temperature (--temperature K; Python: "
                         "temperature_K=) to draw them from the Maxwell-Boltzmann distribution")
    return maxwell_boltzmann_velocities(atoms, temperature_K, seed), f"Maxwell-Boltzmann at {temperature_K:g} K"
