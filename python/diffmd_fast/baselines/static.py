"""The static-frame baseline: x(t+1) = x(t). No parameters, nothing to train.

Why keep it: at 0.5 fs frames, atoms move ~0.01 Å per frame, so "predict no motion" is a strong
short-horizon reference (the paper picks its hardest ISO17 targets by this very error); every
learned model must beat it to be worth anything.
"""
from __future__ import annotations

import torch

from ..data.batch import FrameBatch
from .common import NextFrameModel, register


@register("static")
class StaticFrame(NextFrameModel):
    """x_next = x: trivially E(3)-equivariant."""

    def forward(self, batch: FrameBatch) -> torch.Tensor:
        return batch.x.clone()
