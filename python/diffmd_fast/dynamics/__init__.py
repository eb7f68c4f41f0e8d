"""Generating trajectories: the ``Stepper`` (the one rollout loop: state, step(), observers), the
physics applied to every frame (momentum projection, Langevin thermostat), the health checks that
stop a failing molecule, and in-memory ``rollout`` built on the stepper."""
from .guards import GuardConfig, RolloutGuard, StopReport
from .physics import LangevinThermostat, MomentumProjection, corrections_from_config, masses_of
from .rollout import RolloutResult, rollout
from .stepper import RolloutStopped, Stepper

__all__ = ["GuardConfig", "LangevinThermostat", "MomentumProjection", "RolloutGuard", "RolloutResult",
           "RolloutStopped", "Stepper", "StopReport", "corrections_from_config", "masses_of", "rollout"]
