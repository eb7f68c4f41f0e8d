"""Data layer: reference trajectories (load, save, simulate elsewhere), frame windows, task splits.

Everything trains on ``Trajectory`` objects; every reader returns them and validates on the
way in, so malformed files fail at load time with the file's name in the error.
"""
from .batch import FrameBatch
from .iso17 import load_iso17
from .readers import load_trajectory
from .shipped import bundled, bundled_names, load_data
from .splits import Split, drift, one_to_others_split, short_to_long_split
from .trajectory import Trajectory, TrajectoryError
from .windows import FrameWindows, Window, collate_windows, make_loader, start_batch
from .writers import save_npz, write_extxyz

__all__ = [
    "FrameBatch", "FrameWindows", "Split", "Trajectory", "TrajectoryError", "Window", "bundled", "bundled_names",
    "collate_windows", "drift", "load_data", "load_iso17", "load_trajectory", "make_loader", "one_to_others_split", "save_npz",
    "short_to_long_split", "start_batch", "write_extxyz",
]
