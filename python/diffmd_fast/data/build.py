"""Shared by every reader: the file check, trajectory construction with the file named in errors,
and the sampling steps of the public data sets."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .trajectory import Trajectory, TrajectoryError

MD17_DT_FS = 0.5  # MD17 and revised MD17 were sampled every 0.5 fs (Chmiela et al. 2017)
ISO17_DT_FS = 1.0  # ISO17 trajectories were sampled every 1 fs (Schütt et al. 2017)


def require_file(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"trajectory file {p} does not exist")
    if p.is_dir():
        raise TrajectoryError(f"{p}: is a folder, expected a trajectory file")
    return p


def build_trajectory(path, positions, numbers, dt_fs, energies, forces, name, provenance) -> Trajectory:
    """Construct and validate; errors always carry the file name."""
    try:
        pos = np.asarray(positions, dtype=np.float64)
        if pos.ndim == 2 and pos.shape[1] == 3:  # a single frame
            pos = pos[None]
        return Trajectory(positions=pos, numbers=np.asarray(numbers).ravel(), dt_fs=dt_fs, energies=energies,
                          forces=forces, name=name, provenance=provenance)
    except TrajectoryError as err:
        msg = str(err)  # name the file, not the trajectory, so the user knows what to fix
        msg = f"{path.name}:{msg[len(name) + 1:]}" if msg.startswith(f"{name}:") else f"{path.name}: {msg}"
        raise TrajectoryError(msg) from None
    except (TypeError, ValueError) as err:
        raise TrajectoryError(f"{path.name}: {err}") from err
