"""Generating trajectories: the ``Stepper`` (the one rollout loop: state, step(), observers), the
physics applied to every frame (momentum projection, Langevin thermostat), the health checks that
stop a failing molecule, and in-memory ``rollout`` built on the stepper."""
from .guards import GuardConfig, RolloutGuard, StopReport
from .physics import LangevinThermostat, MomentumProjection, kinetic_temperature, masses_of
from .rollout import RolloutResult, rollout
from .stepper import RolloutStopped, Stepper

__all__ = ["GuardConfig", "LangevinThermostat", "MomentumProjection", "RolloutGuard", "RolloutResult",
           "RolloutStopped", "Stepper", "StopReport", "kinetic_temperature", "masses_of", "rollout"]
