"""Writers: our npz format (MD17 keys plus dt_fs and provenance) and extended XYZ.

Both write to a temporary file in the target folder and ``os.replace`` it into place, so an
interrupted run never leaves a half-written file that a later load would trust.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import ase.io
import numpy as np
from ase import Atoms, units
from ase.calculators.singlepoint import SinglePointCalculator

from .trajectory import Trajectory


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it over ``path`` only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file normal permissions
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB blocks): checkpoint sidecars, data manifests."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def json_text(obj, indent: int | None = 1) -> str:
    """``obj`` as strict JSON (RFC 8259): a non-finite float (NaN, ±inf: a figure not measured) becomes
    null, which jq, JavaScript and pandas read, where Python's own NaN literal makes them fail."""
    def finite(o):
        if isinstance(o, float):
            return o if math.isfinite(o) else None
        if isinstance(o, dict):
            return {k: finite(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [finite(v) for v in o]
        return o
    return json.dumps(finite(obj), indent=indent, allow_nan=False, default=str)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomic text write (reports, tables, JSON, metrics logs): the old content or the new, never half."""
    with atomic_path(path, Path(path).suffix or ".txt") as tmp:
        tmp.write_text(text)
    return Path(path)


def save_npz(traj: Trajectory, path: str | os.PathLike, *, forces_dtype: type = np.float64) -> Path:
    """Write ``traj`` as a compressed npz readable by MD17/sGDML tools and by ``load_trajectory``.

    Keys: R (T,N,3) Å, z (N,), E (T,) eV, F (T,N,3) eV/Å, V (T,N,3) Å/fs (E/F/V only when present), dt_fs (NaN when
    not known), name, provenance (JSON string); frame_steps (T,) and spacing_known only for frames
    that are not evenly spaced. ``forces_dtype=np.float32`` (forces and velocities) halves shipped files;
    positions always stay float64 because velocities and accelerations are small differences.
    """
    arrays: dict[str, np.ndarray] = {
        "R": traj.positions,
        "z": traj.numbers,
        "dt_fs": np.array(np.nan if traj.dt_fs is None else traj.dt_fs),
        "name": np.array(traj.name),
        "provenance": np.array(json.dumps(traj.provenance, sort_keys=True)),
    }
    if traj.frame_steps is not None:
        arrays["frame_steps"] = traj.frame_steps
    if not traj.spacing_known:
        arrays["spacing_known"] = np.array(False)
    if traj.energies is not None:
        arrays["E"] = traj.energies
    if traj.forces is not None:
        arrays["F"] = traj.forces.astype(forces_dtype)
    if traj.velocities is not None:
        arrays["V"] = traj.velocities.astype(forces_dtype)
    with atomic_path(path, ".npz") as tmp:
        with open(tmp, "wb") as fh:  # a file handle stops numpy appending a second ".npz"
            np.savez_compressed(fh, **arrays)
    return Path(path)


def _frames_as_atoms(traj: Trajectory) -> list[Atoms]:
    frames, steps = [], traj.steps
    for t in range(traj.num_frames):
        atoms = Atoms(numbers=traj.numbers, positions=traj.positions[t])
        if traj.velocities is not None:  # Å/fs -> ASE's units (written as momenta)
            atoms.set_velocities(traj.velocities[t] / units.fs)
        if traj.energies is not None or traj.forces is not None:
            atoms.calc = SinglePointCalculator(
                atoms,
                energy=None if traj.energies is None else float(traj.energies[t]),
                forces=None if traj.forces is None else traj.forces[t],
            )
        if steps is not None and traj.dt_fs is not None:  # never write a time that is not known
            atoms.info["time_fs"] = float(steps[t]) * traj.dt_fs
        frames.append(atoms)
    return frames


def write_extxyz(
    traj: Trajectory | np.ndarray,
    path: str | os.PathLike,
    numbers: np.ndarray | None = None,
    *,
    dt_fs: float = 1.0,
) -> Path:
    """Write a trajectory (or positions (T,N,3) Å plus ``numbers`` (N,)) as extended XYZ.

    Extended XYZ is what ASE, OVITO and VMD all read; each frame carries ``time_fs`` and, when
    known, the energy and per-atom forces.
    """
    if not isinstance(traj, Trajectory):
        if numbers is None:
            raise ValueError("write_extxyz: pass atomic numbers when giving raw positions")
        traj = Trajectory(positions=np.asarray(traj), numbers=np.asarray(numbers), dt_fs=dt_fs,
                          name=str(path))
    with atomic_path(path, ".extxyz") as tmp:
        ase.io.write(tmp, _frames_as_atoms(traj), format="extxyz")
    return Path(path)
