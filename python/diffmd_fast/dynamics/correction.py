"""What a frame correction is (``FrameCorrection``; the corrections themselves: dynamics/physics.py) and what the corrections share:
the thermal speed, the amplitude of a Langevin kick, per-window caches and the random numbers they draw."""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

import torch
from ase import units

from ..data.batch import FrameBatch
from ..data.elements import masses_of

# sqrt(k_B T / m) for T in K and m in amu, in Å/fs: ASE's velocity unit is sqrt(eV/amu) and one fs
# is units.fs ASE time units.
THERMAL_SPEED = math.sqrt(units.kB) * units.fs


class PerWindow:
    """``derive(frame)`` of the last window, recomputed only when the window's atoms change (a
    molecule stopped): per frame the atoms (``z``, ``batch``) are the same tensors, so are these."""

    def __init__(self, derive: Callable[[FrameBatch], Any]) -> None:
        self._derive = derive
        self._z = self._batch = None  # the window's tensors themselves: held, so never recycled

    def __call__(self, frame: FrameBatch) -> Any:
        if frame.z is not self._z or frame.batch is not self._batch:
            self._z, self._batch, self._value = frame.z, frame.batch, self._derive(frame)
        return self._value

def standard_normal(frame: FrameBatch, generator: torch.Generator | None) -> torch.Tensor:
    """(N, 3) float64 standard normal numbers for ``frame``'s atoms, drawn on the generator's device
    (the stepper's resumable stream) and moved to the frame's."""
    device = generator.device if generator is not None else frame.x.device
    return torch.randn(frame.x.shape, generator=generator, dtype=torch.float64, device=device).to(frame.x.device)

def kick_amplitude(z: torch.Tensor, c: float | torch.Tensor, temperature_K: float) -> torch.Tensor:
    """(N, 1) Å/fs: σ/√2 = sqrt((1 - c²) k_B T / 2m), the amplitude of the velocity kick η of a BAOAB
    O-step that keeps velocity fraction ``c`` per frame (scalar, or (N, 1) per atom) at temperature
    ``temperature_K`` K, for atomic numbers z (N,)."""
    return torch.sqrt((1.0 - torch.as_tensor(c, dtype=torch.float64, device=z.device) ** 2) / 2.0) * (
        THERMAL_SPEED * math.sqrt(temperature_K) / masses_of(z).unsqueeze(-1).sqrt())

class FrameCorrection(Protocol):
    def noise(self, frame: FrameBatch, generator: torch.Generator | None) -> torch.Tensor | None:
        """The random numbers one frame of ``frame``'s atoms needs (None: deterministic), drawn from
        ``generator`` (the stepper's resumable stream)."""

    def __call__(self, frame: FrameBatch, x_new: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        """x(t+1) (N, 3) Å corrected, given the window ``frame`` whose current frame is x(t) and the
        output of ``noise``."""

    def phase(self, frame: FrameBatch, x_new: torch.Tensor, v_new: torch.Tensor,
              noise: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(x(t+1) Å, v(t+1) Å/fs), both (N, 3), corrected for a phase-space model, whose state carries
        the velocity v(t+1) (dynamics.stepper.sample_step): the correction acts on that velocity
        itself, once per frame after the model's step (a thermostat's O-step on momenta), with
        ``noise`` white (no noise memory)."""
