"""Shared by the frame-correction tests (tests/dynamics): ethanol windows and the noise memory of the Stepper."""
from __future__ import annotations

import torch

from diffmd_fast.data import bundled, load_trajectory, start_batch


def ethanol_frames(molecules=3):
    """Windows of the bundled ethanol, one per molecule (up to 3), float64."""
    traj = load_trajectory(bundled("ethanol"))
    return start_batch([traj] * molecules, [10, 200, 400][:molecules], dtype=torch.float64)


class NoiseMemory:
    """The noise the Stepper hands a correction: (ξ(t-1) + ξ(t)) / √2 for one with noise_memory."""

    def __init__(self):
        self.last = {}

    def __call__(self, i, correction, xi):
        prev, self.last[i] = self.last.get(i), xi
        if xi is None or prev is None or not getattr(correction, "noise_memory", False):
            return xi
        return (prev + xi) * 0.5**0.5
