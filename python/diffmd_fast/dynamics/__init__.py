"""Generating trajectories: the ``Stepper`` (the one rollout loop: state, step(), observers), the
physics applied to every frame (momentum projection, Langevin thermostat), the health checks that
stop a failing molecule, in-memory ``rollout`` built on the stepper, starts from one structure
(start.py) and streamed, resumable output (``FrameSink``, sink.py)."""
from .guards import GuardConfig, RolloutGuard, StopReport
from .physics import LangevinThermostat, MomentumProjection, corrections_from_config, masses_of
from .rollout import RolloutResult, rollout
from .sink import FrameSink
from .start import history_from_velocities, maxwell_boltzmann_velocities
from .stepper import RolloutStopped, Stepper

__all__ = ["FrameSink", "GuardConfig", "LangevinThermostat", "MomentumProjection", "RolloutGuard", "RolloutResult",
           "RolloutStopped", "Stepper", "StopReport", "corrections_from_config", "history_from_velocities", "masses_of",
           "maxwell_boltzmann_velocities", "rollout"]
