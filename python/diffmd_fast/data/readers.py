"""Readers for MD17/sGDML npz, revised-MD17 npz, our own npz and anything ``ase.io.read`` reads.

``load_trajectory`` dispatches on content rather than only on suffix: an npz is identified by its
keys, a ``.db`` goes to the ISO17 reader, everything else goes through ASE. Every failure names
the file and says what is wrong. What a file states is honoured: sGDML's ``r_unit``/``e_unit``
are converted to Å and eV (unknown units are refused), a periodic cell (extxyz ``pbc``, sGDML
``lattice``) makes the reader unwrap the molecule, per-frame times (``time_fs``, or CP2K's
``time`` in fs) give the time step; each of these is recorded in the provenance.
"""
from __future__ import annotations

import json
import os
import warnings
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from .build import MD17_DT_FS, build_trajectory, make_whole, require_file, steps_from_times, unit_factor
from .iso17 import load_iso17
from .trajectory import Trajectory, TrajectoryError

# provenance key: True when dt_fs is not stated by the file but assumed (MD17's 0.5 fs sampling step)
DT_ASSUMED = "dt_fs_assumed"


def _scalar(arr: np.ndarray):
    return arr.item() if arr.ndim == 0 or arr.size == 1 else arr


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise TrajectoryError(f"{path.name}: not a readable npz file ({err})") from err


def _atomic_numbers(path: Path, z: np.ndarray, positions: np.ndarray, provenance: dict) -> np.ndarray:
    """(N,) atomic numbers from an npz's ``z`` (or ``nuclear_charges``): (N,), or (T, N) when every frame
    repeats the same numbers (noted in the provenance). Raises TrajectoryError naming the shape as
    stored when z fits neither (e.g. (T, N) numbers that change between frames)."""
    z = np.asarray(z)
    pos = np.asarray(positions)
    if pos.ndim != 3 or z.ndim < 2:
        return z  # a 1-D z, or positions the trajectory check refuses with their own message
    frames, atoms = pos.shape[:2]
    per_frame = z.ndim == 2 and z.shape[0] in (1, frames) and z.shape[1] == atoms
    if per_frame and (z == z[:1]).all():
        provenance["z_note"] = f"z stored per frame {z.shape}, the same in every frame; frame 0's used"
        return z[0]
    why = ("atomic numbers that change between frames" if per_frame
           else f"one atomic number per atom ({atoms},) expected")
    raise TrajectoryError(f"{path.name}: z has shape {z.shape} for positions {pos.shape}: {why}; a trajectory "
                          "holds one molecule, the same atoms in every frame")


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
    explicit_dt = dt_fs is not None
    if explicit_dt:  # the caller states the time step: an assumption recorded when the file was saved is gone
        provenance.pop(DT_ASSUMED, None)
    if dt_fs is None:
        if "dt_fs" in data:  # NaN: we saved a trajectory whose time step was not known
            dt_fs = float(_scalar(data["dt_fs"]))
            dt_fs = None if np.isnan(dt_fs) else dt_fs
        elif "dt" in data:
            dt_fs = float(_scalar(data["dt"]))
        else:
            dt_fs = MD17_DT_FS
            provenance.setdefault("dt_fs_note", f"not stored; assumed the MD17 sampling step {MD17_DT_FS} fs")
            provenance[DT_ASSUMED] = True
    if name is None:
        stored = data.get("name")
        name = str(_scalar(stored)) if stored is not None and stored.dtype.kind in "US" else path.stem
    provenance.setdefault("source_file", str(path))
    provenance.setdefault("format", "npz (MD17 keys)")
    pos, energies, forces, length = _npz_units(path, data, provenance)
    z = _atomic_numbers(path, data["z"], pos, provenance)
    # our own key: the engine's velocities, Å/fs (x length factor if a file ever states r_unit)
    velocities = None if "V" not in data else np.asarray(data["V"], dtype=np.float64) * length
    if "lattice" in data:  # sGDML stores the cell of periodic data sets in r_unit
        cell = np.asarray(data["lattice"], dtype=np.float64).reshape(3, 3) * length
        pos = _unwrap(path, pos, z, np.broadcast_to(cell, (pos.shape[0], 3, 3)), np.ones(3, bool), provenance)
    # an explicit dt_fs declares the frames evenly spaced; otherwise keep the spacing we saved
    steps = None if explicit_dt else data.get("frame_steps")
    spacing_known = explicit_dt or "spacing_known" not in data or bool(_scalar(data["spacing_known"]))
    return build_trajectory(path, pos, z, dt_fs, energies, forces, name, provenance,
                            frame_steps=steps, spacing_known=spacing_known, velocities=velocities)


def _npz_units(path: Path, data: dict[str, np.ndarray], provenance: dict):
    """R, E, F in Å, eV, eV/Å and the length factor (Å per file unit): sGDML files state r_unit and
    e_unit; without them Å and eV are assumed."""
    pos = np.asarray(data["R"], dtype=np.float64)
    energies, forces = data.get("E"), data.get("F")
    if "r_unit" not in data and "e_unit" not in data:
        return pos, energies, forces, 1.0
    r_unit = str(_scalar(data["r_unit"])) if "r_unit" in data else "Ang"
    e_unit = str(_scalar(data["e_unit"])) if "e_unit" in data else "eV"
    length, energy = unit_factor(path, "length", r_unit), unit_factor(path, "energy", e_unit)
    provenance["units"] = {"r_unit": r_unit, "e_unit": e_unit, "length_factor": length, "energy_factor": energy,
                           "note": f"converted on load: R x {length:g} -> Å, E x {energy:g} -> eV, "
                                   f"F x {energy / length:g} -> eV/Å"}
    energies = None if energies is None else np.asarray(energies, dtype=np.float64) * energy
    forces = None if forces is None else np.asarray(forces, dtype=np.float64) * (energy / length)
    return pos * length, energies, forces, length


def _unwrap(path: Path, pos: np.ndarray, numbers, cells: np.ndarray, pbc: np.ndarray, provenance: dict) -> np.ndarray:
    """Periodic input made whole (see ``make_whole``), with the cell and a note in the provenance."""
    provenance["cell_A"] = np.round(cells[0], 6).tolist()
    provenance["pbc"] = [bool(p) for p in pbc]
    if not pbc.any():
        return pos
    if not np.allclose(cells, cells[0]):
        provenance["cell_varies"] = True
    provenance["pbc_note"] = ("periodic input made whole on load: molecule unwrapped along its bonds in frame 0, "
                              "then each atom unwrapped through time by minimum image against the previous frame")
    return make_whole(path, pos, np.asarray(numbers).astype(np.int64).ravel(), cells, pbc)


def _from_rmd17(path: Path, data: dict[str, np.ndarray], dt_fs: float | None, name: str | None) -> Trajectory:
    """Revised MD17 stores frames drawn from MD17, energies in kcal/mol and forces in kcal/mol/Å
    (Christensen & von Lilienfeld 2020), converted here to eV and eV/Å; ``old_indices`` (if present)
    restores time order."""
    kcal = unit_factor(path, "energy", "kcal/mol")  # eV per kcal/mol
    pos, energies, forces = data["coords"], data.get("energies"), data.get("forces")
    energies = None if energies is None else np.asarray(energies, dtype=np.float64) * kcal
    forces = None if forces is None else np.asarray(forces, dtype=np.float64) * kcal
    provenance: dict = {"source_file": str(path), "format": "revised MD17 npz",
                        "units": {"note": f"converted on load: energies and forces x {kcal:g} (kcal/mol -> eV)"}}
    steps = None
    if "old_indices" in data:
        idx = np.asarray(data["old_indices"]).astype(np.int64).ravel()
        if idx.shape[0] != np.asarray(pos).shape[0]:
            raise TrajectoryError(f"{path.name}: old_indices has {idx.shape[0]} entries for {np.asarray(pos).shape[0]} frames")
        order = np.argsort(idx, kind="stable")
        pos = np.asarray(pos)[order]
        energies = None if energies is None else np.asarray(energies)[order]
        forces = None if forces is None else np.asarray(forces)[order]
        steps = idx[order]  # MD17 frame index: the time of each frame in MD17 sampling steps
        if (np.diff(steps) == 0).any():
            raise TrajectoryError(f"{path.name}: old_indices repeats a frame")
    if dt_fs is None:
        dt_fs = MD17_DT_FS
        provenance["dt_fs_note"] = f"assumed the MD17 sampling step {MD17_DT_FS} fs per old_indices step"
        provenance[DT_ASSUMED] = True
    else:
        steps = None  # an explicit dt_fs declares the frames evenly spaced
    z = _atomic_numbers(path, data["nuclear_charges"], pos, provenance)
    return build_trajectory(path, pos, z, dt_fs, energies, forces, name or path.stem, provenance,
                            frame_steps=steps)


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
    if frames[0].info.get("start_frame") is not None:  # a diffmd generate stream: the reference frame it started from
        provenance["start_frame"] = int(frames[0].info["start_frame"])
    frame_steps = None
    if dt_fs is None:
        dt_fs, frame_steps = _ase_times(path, frames, provenance)
    pos = np.stack([a.get_positions() for a in frames])  # (T, N, 3) Å
    velocities = None  # ASE stores momenta; velocities in Å per ASE time unit -> Å/fs
    if all(a.has("momenta") for a in frames):
        from ase import units

        velocities = np.stack([a.get_velocities() for a in frames]) * units.fs
    pbc = np.asarray(frames[0].pbc, dtype=bool)
    if pbc.any() or frames[0].cell.rank:
        pos = _unwrap(path, pos, numbers, np.stack([np.asarray(a.cell) for a in frames]), pbc, provenance)
    return build_trajectory(path, pos, numbers, dt_fs, energies, forces, name or path.stem, provenance,
                            frame_steps=frame_steps, velocities=velocities)


TIME_KEYS = ("time_fs", "time")  # ours (extxyz), CP2K's xyz comment ("i = 1, time = 0.500, E = ...", fs)


def _ase_times(path: Path, frames, provenance: dict) -> tuple[float | None, np.ndarray | None]:
    """(dt_fs, frame_steps) from a per-frame time key; (None, None) when the file stores no time."""
    for key in TIME_KEYS:
        times = [a.info.get(key) for a in frames]
        if len(frames) > 1 and all(t is not None for t in times):
            if key != "time_fs":
                provenance["dt_fs_note"] = f"from the per-frame key {key!r}, read as fs"
            return steps_from_times(path, np.asarray(times, dtype=np.float64))
    provenance["dt_fs_note"] = "not stored in the file (no per-frame time_fs or time); pass --dt-fs"
    return None, None


def _calc_property(frames, key: str) -> np.ndarray | None:
    """Energies/forces stored with the frames (SinglePointCalculator), or None if any frame lacks them."""
    values = []
    for atoms in frames:
        calc = atoms.calc
        if calc is None or key not in getattr(calc, "results", {}):
            return None
        values.append(calc.results[key])
    return np.asarray(values, dtype=np.float64)


def load_trajectory(path: str | os.PathLike, *, dt_fs: float | None = None, name: str | None = None,
                    molecule: int | str | None = None, check_time: bool = True) -> Trajectory:
    """Load one trajectory from MD17/rMD17/our npz, an ASE database (ISO17), or any ASE format.

    ``dt_fs`` (fs) overrides the stored (or, for MD17, assumed 0.5 fs) time between frames and
    declares the frames evenly spaced. ``molecule`` (index or name) picks one isomer of a
    database holding several (ISO17); on the command line, ``FILE.db@INDEX`` or ``--molecule``.
    Raises TrajectoryError when the time between frames disagrees with the stored velocities or
    forces (check_time_step); ``check_time=False`` skips that, for a caller that reads one frame's
    structure only.
    """
    p = require_file(path)
    if dt_fs is not None and not dt_fs > 0:
        raise TrajectoryError(f"{p.name}: the time step must be a positive number of fs, got {dt_fs}")
    if p.suffix == ".db":
        trajs = load_iso17(p, molecule, dt_fs=dt_fs)
        if len(trajs) != 1:
            raise TrajectoryError(f"{p.name}: holds {len(trajs)} molecules; pick one with {p.name}@INDEX or "
                                  f"--molecule INDEX|NAME (Python: molecule=); names: {[t.name for t in trajs[:10]]}")
        traj = trajs[0] if name is None else replace(trajs[0], name=name)
    elif molecule is not None:
        raise TrajectoryError(f"{p.name}: holds one molecule; a molecule selector only applies to databases (.db)")
    else:
        traj = _load_npz(p, dt_fs, name) if p.suffix == ".npz" or zipfile.is_zipfile(p) else _load_ase(p, dt_fs, name)
    if check_time:
        check_time_step(traj)
    return traj


# Stored frames up to CHECKED_DT_FS apart are checked against their velocities, or, without velocities,
# against their forces. A difference of positions is the mean velocity over its interval, never faster
# than the velocities (up to noise: at most AGREEMENT times), and slower by the fast modes' averaging:
# frames up to RESOLVED_DT_FS apart resolve a C-H stretch (at 5 fs its share still 0.7), so they agree
# within AGREEMENT both ways; further apart only the slower modes count, and at least SPARSE_AGREEMENT
# of the velocity remains. A second difference of positions over dt² is the mean acceleration, F/m
# within AGREEMENT likewise (GFN2-xTB MD at 500 K, 0.5-5 fs frames: 0.76-1.06 of F/m in rms speed units,
# the square root of the accelerations' ratio, in which the two compare like the velocities; 10 fs frames
# 0.5, beyond which FORCE_CORRELATION leaves them unchecked).
RESOLVED_DT_FS = 5.0
CHECKED_DT_FS = 20.0
AGREEMENT = 2.0
SPARSE_AGREEMENT = 0.2
CHECKED_PAIRS = 64
# the second differences of MD frames up to 5 fs apart correlate with F/m at 0.8-0.97 (GFN2-xTB, 500 K),
# frames 10 fs apart at 0.5; forces unrelated to the motion (or frames out of time order) near 0
FORCE_CORRELATION = 0.5


def _velocity_ratio(traj: Trajectory, t: np.ndarray) -> float | None:
    """The rms of the position differences over dt at frames ``t`` and t + 1, over that of the stored
    velocities at the same midpoints (both Å/fs): the frames' true spacing over dt; None without either."""
    x, v, dt = traj.positions, traj.velocities, traj.dt_fs
    moved = np.sqrt(np.mean(((x[t + 1] - x[t]) / dt) ** 2))  # Å/fs
    stored = np.sqrt(np.mean((0.5 * (v[t] + v[t + 1])) ** 2))
    if moved == 0 and stored == 0:
        return None
    return moved / stored if stored > 0 else np.inf


def _force_ratio(traj: Trajectory, t: np.ndarray) -> tuple[float | None, float]:
    """(the square root of the rms second difference of positions over dt² at frames ``t`` (t - 1, t,
    t + 1) over that of the stored forces' F/m (both Å/fs²): the frames' true spacing over dt, as
    _velocity_ratio; the two's correlation). The ratio is None where they do not point the same way
    (correlation below FORCE_CORRELATION, whatever dt: forces that are not the ones moving these frames,
    or frames that are not consecutive) or the forces are all zero (correlation 1 then: nothing to say).
    Raises TrajectoryError where they point opposite ways (correlation below -FORCE_CORRELATION:
    gradients stored as forces)."""
    from ase import units

    from .elements import masses

    t = t[(t >= 1) & (t <= traj.num_frames - 2)]
    if t.size == 0:
        return None, 1.0
    x = traj.positions
    pushed = traj.forces[t] / masses(traj.numbers)[:, None] * units.fs**2  # (T, N, 3) Å/fs²
    moved = (x[t + 1] - 2 * x[t] + x[t - 1]) / traj.dt_fs**2
    norm = np.sqrt(np.sum(pushed**2) * np.sum(moved**2))
    if norm == 0:
        return None, 1.0
    corr = float(np.sum(pushed * moved) / norm)
    if corr <= -FORCE_CORRELATION:
        raise TrajectoryError(f"{traj.name}: its stored forces point against its frames' accelerations (correlation "
                              f"{corr:.2f}): gradients (dE/dx) stored as forces? Forces are -dE/dx")
    if corr < FORCE_CORRELATION:
        return None, corr
    return float(np.sqrt(np.sqrt(np.mean(moved**2) / np.mean(pushed**2)))), corr


def _assumed(traj: Trajectory) -> str:
    return " (assumed: the file stores none)" if traj.provenance.get(DT_ASSUMED) else ""


def check_time_step(traj: Trajectory) -> None:
    """Raise TrajectoryError when ``traj``'s time step disagrees with its stored velocities, or without
    them with its stored forces, by more than AGREEMENT times (module comment above: root mean square over
    CHECKED_PAIRS frames; further apart than RESOLVED_DT_FS, only positions moving slower than
    SPARSE_AGREEMENT of them fail): the time between frames
    (or the velocities' or forces' unit) is wrong, e.g. an ASE trajectory's times read in ASE time units
    (1 fs = 0.0982), a time step given for other frames, or MD17's assumed 0.5 fs for frames saved further
    apart. Frames further apart than CHECKED_DT_FS, unevenly spaced or with neither velocities nor
    forces are not checked; frames up to RESOLVED_DT_FS apart whose forces do not move them (out of
    time order, sparser than stated) are warned about (UserWarning)."""
    dt = traj.dt_fs
    if dt is None or dt > CHECKED_DT_FS or not traj.evenly_spaced or traj.num_frames < 2:
        return
    t = np.unique(np.linspace(0, traj.num_frames - 2, min(CHECKED_PAIRS, traj.num_frames - 1)).astype(np.int64))
    if traj.velocities is not None:
        ratio, against, wrong_unit = _velocity_ratio(traj, t), "velocities", "velocities not in Å/fs"
    elif traj.forces is not None:
        (ratio, corr), against, wrong_unit = _force_ratio(traj, t), "forces (eV/Å)", "forces not in eV/Å"
        if ratio is None and corr < FORCE_CORRELATION and dt <= RESOLVED_DT_FS:
            warnings.warn(f"{traj.name}: its frames' accelerations do not follow its stored forces (correlation "
                          f"{corr:.2f}, where consecutive MD frames up to {RESOLVED_DT_FS:g} fs apart give 0.8 or more): "
                          f"frames further apart than {dt:g} fs{_assumed(traj)} or out of time order? Training and time-based "
                          "metrics need consecutive frames; --dt-fs sets their spacing", stacklevel=3)
    else:
        return
    if ratio is None:
        return
    low = 1 / AGREEMENT if dt <= RESOLVED_DT_FS else SPARSE_AGREEMENT
    if not low <= ratio <= AGREEMENT:
        # a difference of positions averages the fastest motions away: the spacing it implies is a lower bound
        raise TrajectoryError(
            f"{traj.name}: its positions move {ratio:.3g}x as fast as its stored {against} say at {dt:g} fs between "
            f"frames{_assumed(traj)}: the frames are likely {dt * ratio:.3g} fs apart or more (or the {wrong_unit}); "
            "set the right one with --dt-fs (Python: dt_fs=)")
