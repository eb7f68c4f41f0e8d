"""Helpers shared by the subcommands: data specs, run directories, JSON output."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..data import bundled_names


def add_data_argument(p, *, required=True, flag="--data", help_extra="", append=False):
    """The data file option plus --dt-fs and --molecule, which every command that reads data takes."""
    p.add_argument(flag, required=required, metavar="FILE", action="append" if append else "store",
                   help=f"trajectory: MD17/rMD17/our npz, extxyz, .xyz, .traj, ISO17 .db (FILE.db@M picks "
                        f"molecule M), or a bundled name ({', '.join(bundled_names())}){help_extra}")
    add_data_options(p)


def add_data_options(p):
    p.add_argument("--dt-fs", type=float, metavar="FS",
                   help="fs between stored frames, for files that do not store it (or to override it); "
                        "declares the frames evenly spaced")
    p.add_argument("--molecule", metavar="INDEX|NAME",
                   help="molecule of a database holding several (ISO17), like FILE.db@INDEX")


def load_input(spec: str, args, *, need_dt: bool = False):
    """The trajectory ``spec`` with the command's --dt-fs / --molecule; ``need_dt``: refuse one
    whose time step is unknown (one line naming the file and --dt-fs)."""
    from ..data import load_data

    traj = load_data(spec, dt_fs=getattr(args, "dt_fs", None), molecule=getattr(args, "molecule", None))
    if need_dt and traj.dt_fs is None:
        raise ValueError(f"{spec}: the time between frames is not stored; pass --dt-fs FS")
    note = traj.provenance.get("dt_fs_note")
    if need_dt and note and getattr(args, "dt_fs", None) is None:  # a time step the file does not state
        print(f"note: {spec}: {traj.dt_fs:g} fs between frames ({note}); --dt-fs sets another", file=sys.stderr)
    return traj


def load_structure(spec: str):
    """The one structure (ase.Atoms, momenta and cell kept) in ``spec``: any file ase.io reads, or a
    trajectory file/bundled name of one frame. Raises ValueError when unreadable or not one frame."""
    from pathlib import Path

    import ase.io
    from ase import Atoms

    from ..data import load_data

    path = Path(spec)
    if path.is_file() and path.suffix != ".npz":
        try:
            frames = ase.io.read(path, index=":")
        except Exception as err:  # noqa: BLE001 - ASE raises many types for unreadable files
            raise ValueError(f"{path}: cannot read a structure from it ({type(err).__name__}: {err})") from err
    else:
        traj = load_data(spec)
        frames = [Atoms(numbers=traj.numbers, positions=p) for p in traj.positions[:2]]
    if len(frames) != 1:
        raise ValueError(f"{spec} holds {'several' if frames else 'no'} frames; pick the start frame(s) with --start")
    return frames[0]


def frame_counts(text: str, names: tuple[str, ...], optional: int = 0) -> list[int]:
    """The comma-separated frame counts of ``--split`` (``names``, e.g. ("TRAIN", "VAL", "TEST"); the last
    ``optional`` of them may be left out), as whole numbers >= 0. Raises ValueError in one line naming the
    form otherwise (fractions such as 0.6,0.2,0.2 included)."""
    parts = [p.strip() for p in str(text).split(",")]
    if not len(names) - optional <= len(parts) <= len(names) or not all(p.isdigit() for p in parts):
        raise ValueError(f"--split takes {','.join(names)} frame counts (whole numbers of frames, not fractions), "
                         f"got {text!r}")
    return [int(p) for p in parts]


def write_json(data: dict[str, Any], path: str | Path) -> Path:
    """Atomic JSON write (temp file + rename): a killed run never leaves half a file."""
    from ..data.writers import write_text

    return write_text(path, json.dumps(data, indent=2, default=_jsonable))  # serialised first: a bad value writes nothing


def _jsonable(v):
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, Path):
        return str(v)
    raise TypeError(f"not JSON serialisable: {type(v).__name__}")


def markdown_table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    """rows of dicts -> markdown table with (key, header) columns; floats to 4 significant digits."""
    def fmt(v):
        if v is None:  # a metric that could not be computed (e.g. over a collapsed run)
            return "n/a"
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    head = "| " + " | ".join(h for _, h in columns) + " |"
    sep = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(fmt(r.get(k, "")) for k, _ in columns) + " |" for r in rows]
    return "\n".join([head, sep, *body])
