"""Readers for MD17/sGDML npz, revised-MD17 npz, our own npz and anything ``ase.io.read`` reads.

``load_trajectory`` dispatches on content rather than only on suffix: an npz is identified by its
keys, a ``.db`` goes to the ISO17 reader, everything else goes through ASE. Every failure names
the file and says what is wrong.
"""
from __future__ import annotations

import json
import os
import warnings
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from .build import MD17_DT_FS, build_trajectory, require_file
from .iso17 import load_iso17
from .trajectory import Trajectory, TrajectoryError



def _scalar(arr: np.ndarray):
    return arr.item() if arr.ndim == 0 or arr.size == 1 else arr


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise TrajectoryError(f"{path.name}: not a readable npz file ({err})") from err


def _load_npz(path: Path, dt_fs: float | None, name: str | None) -> Trajectory:
    data = _read_npz(path)
    keys = set(data)
    if {"nuclear_charges", "coords"} <= keys:
        return _from_rmd17(path, data, dt_fs, name)
    missing = {"R", "z"} - keys
    if missing:
        raise TrajectoryError(
            f"{path.name}: missing key(s) {sorted(missing)}; expected MD17 keys R, z (E, F optional) "
            f"or revised-MD17 keys nuclear_charges, coords; found {sorted(keys)}"
        )
    provenance: dict = {}
    if "provenance" in data:
        try:
            provenance = json.loads(str(_scalar(data["provenance"])))
        except json.JSONDecodeError as err:
            raise TrajectoryError(f"{path.name}: provenance is not valid JSON ({err})") from err
    if dt_fs is None:
        if "dt_fs" in data:
            dt_fs = float(_scalar(data["dt_fs"]))
        elif "dt" in data:
            dt_fs = float(_scalar(data["dt"]))
        else:
            dt_fs = MD17_DT_FS
            provenance.setdefault("dt_fs_note", f"not stored; assumed the MD17 sampling step {MD17_DT_FS} fs")
    if name is None:
        stored = data.get("name")
        name = str(_scalar(stored)) if stored is not None and stored.dtype.kind in "US" else path.stem
    provenance.setdefault("source_file", str(path))
    provenance.setdefault("format", "npz (MD17 keys)")
    return build_trajectory(path, data["R"], data["z"], dt_fs, data.get("E"), data.get("F"), name, provenance)


def _from_rmd17(path: Path, data: dict[str, np.ndarray], dt_fs: float | None, name: str | None) -> Trajectory:
    """Revised MD17 stores frames drawn from MD17; ``old_indices`` (if present) restores time order."""
    pos, energies, forces = data["coords"], data.get("energies"), data.get("forces")
    provenance: dict = {"source_file": str(path), "format": "revised MD17 npz"}
    step = 1
    if "old_indices" in data:
        idx = np.asarray(data["old_indices"]).astype(np.int64).ravel()
        if idx.shape[0] != np.asarray(pos).shape[0]:
            raise TrajectoryError(f"{path.name}: old_indices has {idx.shape[0]} entries for {np.asarray(pos).shape[0]} frames")
        order = np.argsort(idx, kind="stable")
        pos = np.asarray(pos)[order]
        energies = None if energies is None else np.asarray(energies)[order]
        forces = None if forces is None else np.asarray(forces)[order]
        gaps = np.unique(np.diff(idx[order]))
        if gaps.size == 1:
            step = int(gaps[0])
        elif gaps.size > 1:
            provenance["time_uniform"] = False
            warnings.warn(f"{path.name}: frames are not evenly spaced in MD17 time (gaps {gaps[:5]}...); "
                          "windows built on it mix time steps", stacklevel=3)
    if dt_fs is None:
        dt_fs = MD17_DT_FS * step
        provenance["dt_fs_note"] = f"assumed MD17 sampling step {MD17_DT_FS} fs x index gap {step}"
    return build_trajectory(path, pos, data["nuclear_charges"], dt_fs, energies, forces, name or path.stem, provenance)


def _load_ase(path: Path, dt_fs: float | None, name: str | None) -> Trajectory:
    import ase.io

    try:
        frames = ase.io.read(path, index=":")
    except Exception as err:  # noqa: BLE001 - ASE raises many types for unreadable files
        raise TrajectoryError(f"{path.name}: ase.io.read could not read it ({type(err).__name__}: {err})") from err
    if not frames:
        raise TrajectoryError(f"{path.name}: contains no frames")
    numbers = frames[0].get_atomic_numbers()
    for t, atoms in enumerate(frames):
        if not np.array_equal(atoms.get_atomic_numbers(), numbers):
            raise TrajectoryError(f"{path.name}: frame {t} has different atoms than frame 0")
    energies = _calc_property(frames, "energy")
    forces = _calc_property(frames, "forces")
    provenance: dict = {"source_file": str(path), "format": f"ase.io ({path.suffix.lstrip('.') or 'auto'})"}
    if dt_fs is None:
        times = [a.info.get("time_fs") for a in frames]
        if len(frames) > 1 and all(t is not None for t in times):
            steps = np.diff(np.asarray(times, dtype=np.float64))
            if not np.allclose(steps, steps[0], rtol=1e-6) or steps[0] <= 0:
                raise TrajectoryError(f"{path.name}: time_fs is not evenly increasing; pass dt_fs explicitly")
            dt_fs = float(steps[0])
        elif len(frames) == 1:
            dt_fs = 1.0
        else:
            raise TrajectoryError(f"{path.name}: the time between frames is not stored; pass dt_fs=")
    pos = np.stack([a.get_positions() for a in frames])  # (T, N, 3) Å
    return build_trajectory(path, pos, numbers, dt_fs, energies, forces, name or path.stem, provenance)


def _calc_property(frames, key: str) -> np.ndarray | None:
    """Energies/forces stored with the frames (SinglePointCalculator), or None if any frame lacks them."""
    values = []
    for atoms in frames:
        calc = atoms.calc
        if calc is None or key not in getattr(calc, "results", {}):
            return None
        values.append(calc.results[key])
    return np.asarray(values, dtype=np.float64)


def load_trajectory(path: str | os.PathLike, *, dt_fs: float | None = None, name: str | None = None) -> Trajectory:
    """Load one trajectory from MD17/rMD17/our npz, a single-molecule ASE database, or any ASE format.

    ``dt_fs`` overrides the stored (or, for MD17, assumed 0.5 fs) time between frames. A database
    holding several molecules (ISO17) must be read with ``load_iso17``.
    """
    p = require_file(path)
    if p.suffix == ".npz" or zipfile.is_zipfile(p):
        return _load_npz(p, dt_fs, name)
    if p.suffix == ".db":
        trajs = load_iso17(p, dt_fs=dt_fs)
        if len(trajs) != 1:
            raise TrajectoryError(f"{p.name}: holds {len(trajs)} molecules; use load_iso17(path, molecule=...)")
        traj = trajs[0]
        return traj if name is None else replace(traj, name=name)
    return _load_ase(p, dt_fs, name)
