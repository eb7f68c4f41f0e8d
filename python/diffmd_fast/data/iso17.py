"""ISO17 / C7O2H10 reader: an ASE sqlite database of consecutive MD frames of many isomers.

ISO17 (Schütt et al. 2017, quantum-machine.org) stores rows in ASE's db format with the energy
in eV under ``total_energy`` (key_value_pairs) and forces in eV/Å under ``atomic_forces`` (data);
the frames of each isomer follow each other (5000 per isomer, 1 fs apart; reference.db keeps 80%
of the steps and test_within.db the other 20%, so their frames are not evenly spaced, and the rows
do not say which steps they hold). Rows that carry their time (``time_fs``, ``time`` in fs, or the
MD ``step``) give each frame its step, so windows span only consecutive ones; rows that do not
give a trajectory whose spacing is unknown (no windows, no time step shown) unless the caller
passes ``dt_fs``, which declares the frames consecutive and that far apart. The files name no
isomer, so:

1. if rows carry an isomer label (one of ``GROUP_KEYS`` in key_value_pairs or data), group by it;
2. else if ``frames_per_molecule`` is given, cut consecutive rows into blocks of that size;
3. else start a new isomer wherever the atomic-number sequence changes or the geometry jumps
   (some atom moves more than ``jump_A`` between consecutive rows: MD moves atoms < 0.3 Å in a
   few fs, while two different isomers differ by Å).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .build import ISO17_DT_FS, build_trajectory, require_file, steps_from_times
from .trajectory import Trajectory, TrajectoryError

GROUP_KEYS = ("molecule", "mol_id", "isomer", "trajectory", "traj_id")
ENERGY_KEYS = ("total_energy", "energy")
FORCE_KEYS = ("atomic_forces", "forces")
TIME_KEYS = ("time_fs", "time")  # fs
STEP_KEY = "step"  # MD step index, ISO17_DT_FS apart


class _Row(NamedTuple):
    id: int  # database row id
    label: str | None  # isomer label, if the file stores one
    numbers: np.ndarray  # (N,) int64
    positions: np.ndarray  # (N, 3) Å
    energy: float | None  # eV
    forces: np.ndarray | None  # (N, 3) eV/Å
    time: tuple[str, float] | None  # (key, value) of the row's time (fs) or MD step, if stored


def _row_label(row) -> str | None:
    for key in GROUP_KEYS:
        if key in row.key_value_pairs:
            return str(row.key_value_pairs[key])
        if key in row.data:
            return str(row.data[key])
    return None


def _row_energy(row) -> float | None:
    for key in ENERGY_KEYS:
        if key in row.key_value_pairs:
            return float(row.key_value_pairs[key])
    return float(row.energy) if row.get("energy") is not None else None


def _row_forces(row) -> np.ndarray | None:
    for key in FORCE_KEYS:
        if key in row.data:
            return np.asarray(row.data[key], dtype=np.float64)
    return np.asarray(row.forces) if row.get("forces") is not None else None


def _row_time(row) -> tuple[str, float] | None:
    for key in (*TIME_KEYS, STEP_KEY):
        if key in row.key_value_pairs:
            return key, float(row.key_value_pairs[key])
    return None


def _timing(path: Path, block: list[_Row], dt_fs: float | None, provenance: dict):
    """(dt_fs, frame_steps, spacing_known) of one isomer's rows."""
    if dt_fs is not None:
        provenance["dt_fs_note"] = f"given by the caller ({dt_fs} fs between consecutive rows)"
        return dt_fs, None, True
    keys = {r.time[0] if r.time else None for r in block}
    if len(block) > 1 and len(keys) == 1 and None not in keys:
        key = keys.pop()
        values = np.array([r.time[1] for r in block])
        if key == STEP_KEY:
            provenance["dt_fs_note"] = f"ISO17 sampling step {ISO17_DT_FS} fs x the rows' MD step"
            return ISO17_DT_FS, np.round(values).astype(np.int64), True
        provenance["dt_fs_note"] = f"from the rows' {key!r} (fs)"
        dt, steps = steps_from_times(path, values)
        return dt, steps, True
    provenance["dt_fs_note"] = (f"rows store no time or step: ISO17 samples {ISO17_DT_FS} fs, but its databases "
                                "keep a subset of the steps, so which frames are consecutive is unknown; "
                                "pass --dt-fs if these rows are consecutive")
    return ISO17_DT_FS, None, len(block) == 1


def _read_rows(path: Path) -> list[_Row]:
    import ase.db

    try:
        with ase.db.connect(str(path), type="db") as db:
            return [_Row(r.id, _row_label(r), r.numbers.astype(np.int64), np.asarray(r.positions, dtype=np.float64),
                         _row_energy(r), _row_forces(r), _row_time(r)) for r in db.select(sort="id")]
    except Exception as err:  # noqa: BLE001 - sqlite/ASE raise many types for broken files
        raise TrajectoryError(f"{path.name}: not a readable ASE database ({type(err).__name__}: {err})") from err


def _group(rows: list[_Row], frames_per_molecule: int | None, jump_A: float) -> list[tuple[str | None, list[int]]]:
    """Consecutive row indices per isomer, with the isomer label if the file gives one."""
    if rows and all(r.label is not None for r in rows):
        groups: dict[str, list[int]] = {}
        for i, r in enumerate(rows):
            groups.setdefault(r.label, []).append(i)
        return list(groups.items())
    if frames_per_molecule is not None:
        if frames_per_molecule < 1:
            raise ValueError(f"frames_per_molecule must be >= 1, got {frames_per_molecule}")
        return [(None, list(range(s, min(s + frames_per_molecule, len(rows)))))
                for s in range(0, len(rows), frames_per_molecule)]
    out: list[tuple[str | None, list[int]]] = []
    for i, row in enumerate(rows):
        if i > 0:
            prev = rows[i - 1]
            same = (np.array_equal(row.numbers, prev.numbers)
                    and np.abs(row.positions - prev.positions).max() <= jump_A)
            if same:
                out[-1][1].append(i)
                continue
        out.append((None, [i]))
    return out


def load_iso17(
    path: str | os.PathLike,
    molecule: int | str | None = None,
    *,
    dt_fs: float | None = None,
    frames_per_molecule: int | None = None,
    jump_A: float = 1.0,
) -> list[Trajectory]:
    """All isomer trajectories in an ISO17-layout database, or only ``molecule``.

    ``molecule`` is an index in file order (an int, or a string of digits) or a name: the stored
    label, or ``"<formula>_<index>"`` (e.g. ``"C7H10O2_3"``) when the file has none. ``dt_fs``
    (fs) declares each isomer's rows consecutive and that far apart (see the module docstring).
    """
    p = require_file(path)
    rows = _read_rows(p)
    if not rows:
        raise TrajectoryError(f"{p.name}: the database holds no rows")
    trajs = []
    for k, (label, idx) in enumerate(_group(rows, frames_per_molecule, jump_A)):
        block = [rows[i] for i in idx]
        numbers = block[0].numbers
        for r in block:
            if not np.array_equal(r.numbers, numbers):
                raise TrajectoryError(f"{p.name}: row {r.id} has different atoms than the rest of isomer {k}")
        energies = [r.energy for r in block]
        forces = [r.forces for r in block]
        pos = np.stack([r.positions for r in block])  # (T, N, 3) Å
        probe = Trajectory(positions=pos[:1], numbers=numbers, dt_fs=None)
        name = label if label is not None else f"{probe.formula}_{k}"
        provenance = {"source_file": str(p), "format": "ISO17 ASE db", "isomer_index": k, "first_row_id": block[0].id}
        step, frame_steps, spacing_known = _timing(p, block, dt_fs, provenance)
        trajs.append(build_trajectory(
            p, pos, numbers, step,
            None if any(e is None for e in energies) else np.asarray(energies),
            None if any(f is None for f in forces) else np.stack(forces),
            name, provenance, frame_steps=frame_steps, spacing_known=spacing_known,
        ))
    if molecule is None:
        return trajs
    if isinstance(molecule, str) and molecule.lstrip("-").isdigit() and molecule not in [t.name for t in trajs]:
        molecule = int(molecule)
    if isinstance(molecule, (int, np.integer)):
        if not -len(trajs) <= molecule < len(trajs):
            raise TrajectoryError(f"{p.name}: molecule index {molecule} out of range for {len(trajs)} isomers "
                                  f"(0..{len(trajs) - 1})")
        return [trajs[molecule]]
    hits = [t for t in trajs if t.name == str(molecule)]
    if not hits:
        raise TrajectoryError(f"{p.name}: no isomer named {molecule!r}; names: {[t.name for t in trajs[:10]]}; "
                              f"or give an index 0..{len(trajs) - 1}")
    return hits
