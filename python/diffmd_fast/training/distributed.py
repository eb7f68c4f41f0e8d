"""Data-parallel plumbing: process group set-up from torchrun's environment and a batch sampler
that makes a DDP run step-for-step equal to a single-process run.

Why a custom sampler (not DistributedSampler): DistributedSampler deals indices round-robin, so a
rank's batch is not a slice of the single-process batch. Here every rank draws the same global
permutation (seed, epoch), cuts it into global batches of ``global_batch`` windows and takes its
contiguous 1/world share of each. With a per-molecule mean loss and DDP's gradient averaging, the
gradient of every step equals the single-process gradient of the same global batch.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Sampler


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    initialized_here: bool  # we created the process group, so we tear it down

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ValueError(f"device {name!r} is not a device: give cpu, cuda, cuda:N or auto") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device {name!r}: diffmd_fast runs on cpu or cuda (cuda:N), or auto")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was asked for but no GPU is available")
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device(f"cuda:{local_rank}")
    return dev


def init_distributed(device: str = "auto", *, join: bool = True) -> DistInfo:
    """Join the process group when launched by torchrun (RANK / WORLD_SIZE set), else run alone.

    ``join=False`` runs alone even under torchrun (on this rank's GPU): each rank then trains its
    own model, e.g. one experiment cell per rank. Backend: nccl on GPU, gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    dev = resolve_device(device, local_rank)
    if world <= 1 or not join:
        return DistInfo(0, 1, 0, dev, False)
    created = False
    if not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo", rank=rank, world_size=world)
        created = True
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, dev, created)


def shutdown(info: DistInfo) -> None:
    """Leave the process group this process created: every rank meets first, so that none tears down
    its gloo connections while a peer is still in a collective (the peer then waits on a closed socket)."""
    if info.initialized_here and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def all_mean(value: float, info: DistInfo) -> float:
    """Mean of a python float over ranks (identity when alone)."""
    if not info.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=info.device)
    dist.all_reduce(t)
    return float(t) / info.world_size


def any_rank(flag: bool, info: DistInfo) -> bool:
    """True when ``flag`` is true on any rank (identity when alone): one decision every rank shares."""
    if not info.enabled:
        return flag
    t = torch.tensor([float(flag)], dtype=torch.float64, device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


class GlobalBatchSampler(Sampler[int]):
    """Indices of this rank's share of each global batch, epoch by epoch.

    The effective global batch is ``min(global_batch, n)`` rounded down to a multiple of the world
    size; an incomplete last global batch is dropped (so every step has the same size everywhere).
    ``position(i)`` gives the position in the global batch of the i-th index this rank yields in a
    batch, the key of its diffusion noise.
    """

    def __init__(self, n: int, global_batch: int, *, rank: int = 0, world_size: int = 1, seed: int = 1,
                 shuffle: bool = True) -> None:
        gb = min(global_batch, n) // world_size * world_size
        if gb < world_size or gb == 0:
            raise ValueError(f"{n} windows cannot fill a batch for {world_size} ranks (batch {global_batch})")
        self.n, self.global_batch, self.rank, self.world = n, gb, rank, world_size
        self.per_rank = gb // world_size
        self.seed, self.shuffle = seed, shuffle
        self.epoch, self.skip = 0, 0

    @property
    def batches_per_epoch(self) -> int:
        return self.n // self.global_batch

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        """Select the epoch's permutation; ``skip_batches`` resumes in the middle of it."""
        self.epoch, self.skip = epoch, skip_batches

    def global_order(self) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.n)
        return np.random.default_rng([self.seed, self.epoch]).permutation(self.n)

    def __iter__(self) -> Iterator[int]:
        order = self.global_order()
        lo, hi = self.rank * self.per_rank, (self.rank + 1) * self.per_rank
        for b in range(self.skip, self.batches_per_epoch):
            chunk = order[b * self.global_batch:(b + 1) * self.global_batch]
            yield from chunk[lo:hi].tolist()

    def __len__(self) -> int:
        return (self.batches_per_epoch - self.skip) * self.per_rank

    def positions(self) -> list[int]:
        """Global-batch positions of this rank's molecules, in the order they are batched."""
        return list(range(self.rank * self.per_rank, (self.rank + 1) * self.per_rank))
