"""Shared harness for next-frame baselines: the model interface, invariant inputs, training, rollout.

Every baseline maps a ``FrameBatch`` (frames t-2, t-1, t) to a guess of frame t+1 (N, 3) Å and is
trained with MSE on x(t+1), then rolled out by feeding its own guesses back — the same data, loss,
optimiser (paper: Adam 5e-4, weight decay 1e-10, ReduceLROnPlateau on the training loss, patience 5,
lr floor 1e-7, seed 1) and metrics for all of them, so differences come from the models.

Decisions (the paper leaves them open):
- Graph: the complete graph of each molecule (``diffmd_fast.ops.graph.complete_graph``) instead of the
  paper's bond + 2-hop graph; a "bonded" flag (distance < 1.2 × sum of covalent radii, E(3)-invariant)
  is given as an edge feature in its place.
- Node features: a learned embedding of z plus the speed |x(t) - x(t-1)| divided by a scale fitted
  once from the first batch the model sees (stored as a buffer, so checkpoints carry it). Raw speeds
  are ~1e-2 Å/frame, far from the O(1) inputs MLPs like.
- Output units: coordinate messages are multiplied by that speed scale s (Å/frame), so networks
  emit O(1) numbers and an Adam step (which moves every weight by ~lr) changes positions by a
  fraction of one frame's motion, not by whole Å; without it training diverged or stalled.
- Velocity-variant models start as constant-velocity extrapolation x(t+1) ≈ x(t) + v(t): the scalar
  multiplying v is initialised near 1 (split over layers), and coordinate messages start tiny (as in
  the EGNN code, xavier gain 1e-3). Training then learns the acceleration.
"""
from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

import torch
from ase.data import covalent_radii
from torch import nn
from tqdm.auto import tqdm

from ..config import TrainConfig
from ..data.batch import FrameBatch
from ..data.elements import BOND_SCALE
from ..ops.graph import complete_graph
from ..training.optim import make_optimiser

MAX_Z = 119

REGISTRY: dict[str, Callable[..., "NextFrameModel"]] = {}


def register(name: str) -> Callable[[type], type]:
    """Class decorator: make a baseline constructible by name (CLI, results tables)."""

    def deco(cls: type) -> type:
        if name in REGISTRY:
            raise ValueError(f"baseline {name!r} is registered twice")
        REGISTRY[name] = cls
        return cls

    return deco


def build_baseline(name: str, **kwargs) -> "NextFrameModel":
    """A fresh baseline by registry name, e.g. ``build_baseline("egnn", hidden=64)``."""
    if name not in REGISTRY:
        raise ValueError(f"unknown baseline {name!r}; known: {sorted(REGISTRY)}")
    return REGISTRY[name](**kwargs)


class NextFrameModel(nn.Module):
    """Interface: ``forward(batch) -> x_next_pred`` (N, 3) Å, E(3)-equivariant in the positions."""

    def forward(self, batch: FrameBatch) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass(frozen=True)
class Edges:
    """Directed edges of the complete graph: receiver i, sender j, and their geometry at frame t."""

    recv: torch.Tensor  # (E,) int64
    send: torch.Tensor  # (E,) int64
    rel: torch.Tensor  # (E, 3) Å, x_i - x_j
    dist: torch.Tensor  # (E, 1) Å
    bonded: torch.Tensor  # (E, 1) 0/1 float


def _radii_table() -> torch.Tensor:
    return torch.as_tensor(covalent_radii[:MAX_Z], dtype=torch.float64)  # (MAX_Z,) Å


def make_edges(batch: FrameBatch, x: torch.Tensor | None = None) -> Edges:
    """Edges of the complete graph of ``batch`` with the geometry of ``x`` (default batch.x)."""
    x = batch.x if x is None else x
    graph = complete_graph(batch.batch)
    recv, send = graph.receivers(), graph.col
    rel = x[recv] - x[send]  # (E, 3)
    dist = rel.norm(dim=-1, keepdim=True)  # (E, 1)
    radii = _radii_table().to(device=x.device, dtype=x.dtype)[batch.z]  # (N,)
    bonded = (dist.detach() < BOND_SCALE * (radii[recv] + radii[send])[:, None]).to(x.dtype)
    return Edges(recv, send, rel, dist, bonded)


def scatter_sum(src: torch.Tensor, index: torch.Tensor, n: int) -> torch.Tensor:
    """(n, F): sum of the rows of ``src`` (E, F) per ``index`` (E,)."""
    return src.new_zeros((n, src.shape[1])).index_add_(0, index, src)


def scatter_mean(src: torch.Tensor, index: torch.Tensor, n: int) -> torch.Tensor:
    """(n, F): mean of the rows of ``src`` (E, F) per ``index`` (E,); 0 where a row has no edges."""
    count = torch.bincount(index, minlength=n).clamp(min=1).to(src.dtype)[:, None]
    return scatter_sum(src, index, n) / count


def scatter_softmax(logits: torch.Tensor, index: torch.Tensor, n: int) -> torch.Tensor:
    """(E, H): softmax of ``logits`` (E, H) over the rows that share an ``index`` (E,) value, per column.

    The per-segment maximum is subtracted first (detached: the shift cancels in the ratio), so
    exp never overflows and every denominator is >= 1.
    """
    idx = index[:, None].expand_as(logits)
    top = logits.new_full((n, logits.shape[1]), float("-inf")).scatter_reduce(0, idx, logits.detach(), "amax")
    e = torch.exp(logits - top[index])  # (E, H), each in (0, 1]
    return e / scatter_sum(e, index, n)[index]


def mlp(d_in: int, hidden: int, d_out: int, act: type[nn.Module] = nn.SiLU) -> nn.Sequential:
    """Two-layer perceptron, the building block of every baseline's learned functions."""
    return nn.Sequential(nn.Linear(d_in, hidden), act(), nn.Linear(hidden, d_out))


def unit_dirs(rel: torch.Tensor, d2: torch.Tensor) -> torch.Tensor:
    """(E, 3) dimensionless x_ij / (|x_ij| + 1 Å): EGNN's ``norm_diff``, bounded and smooth at 0."""
    return rel / (torch.sqrt(d2 + 1e-12) + 1.0)


def small_init_(layer: nn.Linear, gain: float = 1e-3) -> nn.Linear:
    """Xavier init with a tiny gain, so coordinate messages start near zero (EGNN code's choice)."""
    nn.init.xavier_uniform_(layer.weight, gain=gain)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


class SpeedScale(nn.Module):
    """(N, 1) invariant speed |x(t) - x(t-1)| divided by a scale (Å/frame) fitted once.

    The scale is the mean speed of the first batch ever seen, stored as a buffer (so checkpoints
    carry it); 0 means "not fitted yet".
    """

    def __init__(self):
        super().__init__()
        self.register_buffer("scale", torch.zeros(()))

    def forward(self, batch: FrameBatch) -> torch.Tensor:
        speed = batch.velocity.norm(dim=-1, keepdim=True)  # (N, 1) Å/frame
        if float(self.scale) == 0.0:
            mean = float(speed.mean())
            self.scale.fill_(mean if mean > 0 else 1.0)
        return speed / self.scale.to(speed.dtype)


class NodeEmbedding(nn.Module):
    """Invariant node features (N, hidden): embedding of z plus an MLP of the scaled speed."""

    def __init__(self, hidden: int):
        super().__init__()
        self.z_emb = nn.Embedding(MAX_Z, hidden)
        self.speed_scale = SpeedScale()
        self.speed = mlp(1, hidden, hidden)

    def forward(self, batch: FrameBatch) -> torch.Tensor:
        return self.z_emb(batch.z) + self.speed(self.speed_scale(batch))


@dataclass
class TrainHistory:
    """Per-epoch mean losses (MSE of x(t+1), Å²) and learning rates."""

    train: list[float] = field(default_factory=list)
    val: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)


def _loss(model: NextFrameModel, batch: FrameBatch) -> torch.Tensor:
    pred = model(batch)
    if not torch.isfinite(pred).all():
        raise FloatingPointError(f"{type(model).__name__} predicted NaN/inf positions")
    loss = torch.nn.functional.mse_loss(pred, batch.x_next)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"{type(model).__name__}: non-finite loss {loss.item()} (NaN/inf in the target frames?)")
    return loss


def _check_grads(model: NextFrameModel, epoch: int, step: int) -> None:
    """Stop before a non-finite gradient reaches the weights (the optimiser would write it in)."""
    bad = [name for name, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    if bad:
        raise FloatingPointError(f"{type(model).__name__}: non-finite gradient at epoch {epoch}, batch {step} "
                                 f"in {bad[:3]}{'...' if len(bad) > 3 else ''}; weights left unchanged")


def _loss_unit(loader: Iterable[FrameBatch], dtype: torch.dtype) -> float:
    """Å²: mean squared frame-to-frame displacement of the first training batch.

    The optimiser sees MSE / this constant. The objective is unchanged, but raw MSEs of ~1e-6 Å²
    give gradients near Adam's eps (1e-8), which silently stalls learning.
    """
    for batch in loader:
        unit = float(((batch.x_next - batch.x).to(dtype) ** 2).mean())
        return unit if unit > 0 else 1.0
    raise ValueError("train_next_frame: the training loader yielded no batches")


def _dtype_of(model: nn.Module) -> torch.dtype | None:
    p = next(model.parameters(), None)
    return None if p is None else p.dtype


@torch.no_grad()
def evaluate_loss(model: NextFrameModel, loader: Iterable[FrameBatch]) -> float:
    """Mean next-frame MSE (Å²) over a loader, in eval mode."""
    model.eval()
    dtype = _dtype_of(model)
    total, count = 0.0, 0
    for batch in loader:
        total += float(_loss(model, batch.to(dtype=dtype))) * batch.num_graphs
        count += batch.num_graphs
    if count == 0:
        raise ValueError("evaluate_loss: the loader yielded no batches")
    return total / count


def train_next_frame(
    model: NextFrameModel,
    train_loader: Iterable[FrameBatch],
    val_loader: Iterable[FrameBatch] | None = None,
    *,
    epochs: int,
    lr: float = 5e-4,
    weight_decay: float = 1e-10,
    seed: int = 1,
    progress: bool = True,
    max_seconds: float = 0.0,
) -> TrainHistory:
    """Adam on the MSE of x(t+1) with ReduceLROnPlateau on the training loss: DiffMD's recipe
    (training.optim.make_optimiser with TrainConfig's plateau settings), at learning rate ``lr``.

    Raises FloatingPointError on a non-finite prediction, loss or gradient, before any weight changes.

    ``max_seconds`` > 0 is a wall-clock budget, checked between optimiser steps: when it is spent the
    current epoch ends early (recorded, validated and kept if best, like a full one) and training stops.

    Keeps the weights of the best validation epoch when ``val_loader`` is given. Models without
    parameters (the static frame) are only evaluated. Batches are cast to the model's dtype.
    """
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    torch.manual_seed(seed)
    hist = TrainHistory()
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        hist.train.append(evaluate_loss(model, train_loader))
        if val_loader is not None:
            hist.val.append(evaluate_loss(model, val_loader))
        return hist
    dtype = params[0].dtype
    loss_unit = _loss_unit(train_loader, dtype)
    opt, sched = make_optimiser(params, replace(TrainConfig(), lr=lr, weight_decay=weight_decay))
    best, best_state = float("inf"), None
    deadline = time.perf_counter() + max_seconds if max_seconds > 0 else float("inf")
    for epoch in tqdm(range(epochs), desc=type(model).__name__, disable=not progress):
        model.train()
        total, count = 0.0, 0
        for step, batch in enumerate(train_loader):
            if time.perf_counter() >= deadline and count:
                break
            loss = _loss(model, batch.to(dtype=dtype))
            opt.zero_grad(set_to_none=True)
            (loss / loss_unit).backward()
            _check_grads(model, epoch, step)
            opt.step()
            total += loss.item() * batch.num_graphs
            count += batch.num_graphs
        if count == 0:
            raise ValueError("train_next_frame: the training loader yielded no batches")
        hist.train.append(total / count)
        hist.lr.append(opt.param_groups[0]["lr"])
        sched.step(hist.train[-1])
        if val_loader is not None:
            hist.val.append(evaluate_loss(model, val_loader))
            if hist.val[-1] < best:
                best, best_state = hist.val[-1], copy.deepcopy(model.state_dict())
        if time.perf_counter() >= deadline:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    return hist


@torch.no_grad()
def rollout_next_frame(model: NextFrameModel, start: FrameBatch, frames: int) -> torch.Tensor:
    """(frames, N, 3) Å: the model's own predictions fed back ``frames`` times (start frame excluded),
    in the start batch's frame (``start.absolute`` puts them where the data is)."""
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    model.eval()
    dtype = _dtype_of(model)
    batch = start.to(dtype=dtype) if dtype is not None else start
    out = []
    for step in range(frames):
        x_new = model(batch)
        if not torch.isfinite(x_new).all():
            raise FloatingPointError(f"{type(model).__name__} rollout produced NaN/inf at frame {step + 1}")
        out.append(x_new)
        batch = batch.advance(x_new)
    return torch.stack(out)
