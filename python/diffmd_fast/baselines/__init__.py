"""Next-frame baselines (static frame, EGNN, Radial Field, GMN, TFN, SE(3)-Transformer, SCFNN) in one
training/rollout harness.

Importing the package registers every model in ``REGISTRY`` (name -> constructor).
"""
from __future__ import annotations

from .common import REGISTRY, NextFrameModel, TrainHistory, build_baseline, rollout_next_frame, train_next_frame
from .egnn import EGNN
from .gmn import GMN
from .rf import RadialField
from .scfnn import SCFNN
from .se3tr import SE3Transformer
from .static import StaticFrame
from .tfn import TFN

__all__ = [
    "EGNN", "GMN", "REGISTRY", "NextFrameModel", "RadialField", "SCFNN", "SE3Transformer", "StaticFrame", "TFN",
    "TrainHistory", "build_baseline", "rollout_next_frame", "train_next_frame",
]
