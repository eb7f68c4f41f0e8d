"""Denoising score matching (Eq. 8) for the next frame, with λ(s) = std(s)².

x̃ = x(t+1) + std ⊙ z with z ~ N(0, I) per atom; the target score is -z/std, so the weighted loss
per atom is |std·s_θ(x̃) + z|², which is O(1) at every noise level. The loss is averaged over the
atoms of each molecule and then over molecules: a molecule counts once whatever its size, and an
even split of the molecules over DDP ranks averages back to exactly the single-process loss.

The noise (s per molecule, z per atom) is drawn outside the loss so that training can make it a
pure function of (seed, step, position of the sample in the global batch): then a DDP run and a
single-process run see identical noise and end with identical weights.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from ..data.batch import FrameBatch
from ..ops.graph import Graph
from .sde import SDE


class Noise(NamedTuple):
    s: torch.Tensor  # (B,) diffusion time per molecule in [eps, 1] (sde.time_from_uniform)
    z: torch.Tensor  # (N, 3) standard normal per atom
    eta: torch.Tensor | None = None  # (4, N, 3) standard normal: one per conditioning frame, then a shared offset


def _atoms_per_molecule(batch: FrameBatch) -> torch.Tensor:
    return torch.bincount(batch.batch, minlength=batch.num_graphs)  # (B,)


def draw_noise(batch: FrameBatch, sde: SDE, generator: torch.Generator | None = None) -> Noise:
    """Noise for one batch from one generator (single-process convenience)."""
    dev, dt = batch.x.device, batch.x.dtype
    s = sde.time_from_uniform(torch.rand(batch.num_graphs, generator=generator, dtype=dt, device=dev))
    z = torch.randn(batch.x.shape, generator=generator, dtype=dt, device=dev)
    return Noise(s, z)


def draw_noise_keyed(batch: FrameBatch, sde: SDE, keys: list[int], conditioning: bool = False) -> Noise:
    """Noise where molecule b's draws depend only on ``keys[b]`` (an int), not on the batch it sits in;
    with ``conditioning`` also ``eta`` (4, N, 3): one draw for each conditioning frame and one shared
    by all three (drawn after s and z, so the other draws do not change).

    Drawn on the CPU in float64 and cast, so the values are identical on every device and rank.
    """
    if len(keys) != batch.num_graphs:
        raise ValueError(f"need one key per molecule: {batch.num_graphs} molecules, {len(keys)} keys")
    gen = torch.Generator()
    counts = _atoms_per_molecule(batch).tolist()
    s, z, eta = [], [], []
    for key, n in zip(keys, counts):
        gen.manual_seed(int(key))
        s.append(torch.rand(1, generator=gen, dtype=torch.float64))
        z.append(torch.randn(n, 3, generator=gen, dtype=torch.float64))
        if conditioning:
            eta.append(torch.randn(4, n, 3, generator=gen, dtype=torch.float64))
    dev, dt = batch.x.device, batch.x.dtype
    s_t = sde.time_from_uniform(torch.cat(s))
    return Noise(s_t.to(dev, dt), torch.cat(z).to(dev, dt), torch.cat(eta, dim=1).to(dev, dt) if conditioning else None)


def dsm_loss(model: torch.nn.Module, sde: SDE, batch: FrameBatch, noise: Noise,
             graph: Graph | None = None, sigma_data: float = 0.0) -> torch.Tensor:
    """Scalar DSM loss of Eq. 8 with λ = std², mean over atoms per molecule then over molecules.

    ``sigma_data`` > 0 (Å): EDM's weight λ = std² (std² + σ_d²)/σ_d² instead (Karras et al. 2022),
    i.e. the denoising error |D - x(t+1)|² measured in units of σ_d at high noise and of std at low
    noise: O(1) at every level, where λ = std² leaves the high-noise levels weighted (σ_d/std)² ~ 1e-5."""
    cond = sde.condition(batch)  # (N, 1)
    s_atom = noise.s[batch.batch].unsqueeze(-1)  # (N, 1)
    x_noisy, std = sde.perturb(batch.x_next, s_atom, cond, noise.z)
    score = model(batch, x_noisy, std, graph)  # (N, 3) 1/Å
    per_atom = ((std * score + noise.z) ** 2).sum(-1)  # (N,)
    if sigma_data > 0:
        per_atom = per_atom * (1.0 + (std.squeeze(-1) / sigma_data) ** 2)
    return per_molecule_mean(per_atom, batch).mean()


def per_molecule_mean(values: torch.Tensor, batch: FrameBatch) -> torch.Tensor:
    """(B,) mean of the per-atom ``values`` (N,) inside each molecule."""
    total = torch.zeros(batch.num_graphs, dtype=values.dtype, device=values.device)
    total = total.index_add(0, batch.batch, values)
    return total / _atoms_per_molecule(batch).to(values.dtype)
