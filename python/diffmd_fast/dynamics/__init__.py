"""Generating trajectories: the frame-by-frame rollout of a next-frame model and the guards that
stop a molecule whose rollout fails (NaN, explosion, broken bond)."""
from .guards import GuardConfig, RolloutGuard, StopReport
from .rollout import RolloutResult, RolloutStopped, rollout

__all__ = ["GuardConfig", "RolloutGuard", "RolloutResult", "RolloutStopped", "StopReport", "rollout"]
