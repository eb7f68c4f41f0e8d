"""The unit of training and rollout: a batch of frame windows of several molecules.

A window at frame t of one trajectory is (x(t-2), x(t-1), x(t), x(t+1)) with a frame stride s
(so x(t+1) is s MD steps after x(t)). Molecules are concatenated along the atom axis; ``batch``
says which molecule each atom belongs to (0..num_graphs-1, sorted, contiguous blocks).

Positions are in Å relative to a per-molecule ``origin`` (float64, (num_graphs, 3) Å): batches
built from data are centred in float64 before the cast to the model's dtype, so the model sees
the same numbers wherever the molecule sits. ``absolute(x)`` adds the origin back (float64).
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch


@dataclass(frozen=True)
class FrameBatch:
    z: torch.Tensor  # (N,) int64 atomic numbers
    x_prev2: torch.Tensor  # (N, 3) Å, frame t-2
    x_prev: torch.Tensor  # (N, 3) Å, frame t-1
    x: torch.Tensor  # (N, 3) Å, frame t (the conditioning frame)
    x_next: torch.Tensor  # (N, 3) Å, frame t+1 (the target; equals x where unknown)
    batch: torch.Tensor  # (N,) int64 molecule index, sorted
    num_graphs: int
    history: torch.Tensor | None = None  # (K, N, 3) Å, frames t-2-K .. t-3 (oldest first), for unrolled training
    origin: torch.Tensor | None = None  # (num_graphs, 3) float64 Å added back by absolute(); None: zero
    # phase-space models (model.prior_substeps > 0): each atom's velocity at frame t, and at the frames
    # before it (history..., t-2, t-1; training only, for unrolled windows)
    v: torch.Tensor | None = None  # (N, 3) Å/fs
    v_history: torch.Tensor | None = None  # (K + 2, N, 3) Å/fs
    # each molecule's covalent bonds, (2, M) int64 receiver, sender (both ways, atom indices of this batch): its
    # trajectory's at the median (data.elements.covalent_pairs), not this window's frame, which a stretch
    # can carry past the cutoff; None: perceived on x (valence.topology.window_graph)
    bonds: torch.Tensor | None = None

    @property
    def velocity(self) -> torch.Tensor:
        """(N, 3) Å/frame: x(t) - x(t-1)."""
        return self.x - self.x_prev

    @property
    def acceleration(self) -> torch.Tensor:
        """(N, 3) Å/frame²: x(t) - 2 x(t-1) + x(t-2)."""
        return self.x - 2.0 * self.x_prev + self.x_prev2

    def absolute(self, x: torch.Tensor) -> torch.Tensor:
        """(..., N, 3) float64 Å: positions ``x`` of this batch's frame (e.g. rollout output) put back
        in the data's frame by adding each molecule's ``origin``."""
        x = x.to(torch.float64)
        return x if self.origin is None else x + self.origin.to(x.device)[self.batch.to(x.device)]

    def to(self, device=None, dtype=None) -> "FrameBatch":
        """Moved and cast; ``origin`` keeps float64 (it may be ~1e5 Å: a cast would lose the motion)."""
        out = {}
        for f in fields(self):
            val = getattr(self, f.name)
            if f.name == "origin" and val is not None:
                val = val.to(device=device)
            elif isinstance(val, torch.Tensor):
                if val.is_floating_point():
                    val = val.to(device=device, dtype=dtype or val.dtype)
                else:
                    val = val.to(device=device)
            out[f.name] = val
        return FrameBatch(**out)

    def advance(self, x_new: torch.Tensor, v_new: torch.Tensor | None = None) -> "FrameBatch":
        """The window one frame later, with ``x_new`` (N, 3) Å as the new current frame (same origin) and
        ``v_new`` (N, 3) Å/fs its velocity (phase-space windows)."""
        return replace(self, x_prev2=self.x_prev, x_prev=self.x, x=x_new, x_next=x_new, history=None, v=v_new,
                       v_history=None)
