"""Reverse-process samplers: probability-flow ODE (the paper's choice: adaptive dopri5, or a
fixed-step Heun in the noise std for few score evaluations) and predictor-corrector
(Algorithm 1). All integrate diffusion time s from 1 down to ``eps``, start from a given x(1)
(the prior: x(t) as in the paper, or x(t) + v(t)) and count score evaluations (NFE).

A score function is ``score_fn(x (N, 3), s (N, 1), std=None) -> (N, 3)``, ``std`` the marginal std at s
(N, 1) Å when the sampler already has it (else the score function computes it); the rollout closes the network,
the SDE and the conditioning frames over it, so samplers know nothing about molecules except the
``batch`` index (used for the per-molecule Langevin step size).
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable

import torch
from torchdiffeq import odeint

from ..config import SamplerConfig
from ..data.batch import FrameBatch
from .sde import SDE

ADAPTIVE = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")
ScoreFn = Callable[..., torch.Tensor]  # (x (N, 3), s (N, 1), std (N, 1) | None = None) -> score (N, 3)


@dataclass(frozen=True)
class SampleResult:
    x: torch.Tensor  # (N, 3) Å, the sample at s = eps
    nfe: int  # score evaluations used


def prior_mean(batch: FrameBatch, prior: str) -> torch.Tensor:
    """(N, 3) Å start of the reverse process: x(t) ("previous") or x(t) + v(t) ("velocity")."""
    if prior == "previous":
        return batch.x
    if prior == "velocity":
        return 2.0 * batch.x - batch.x_prev
    raise ValueError(f"unknown prior {prior!r}; expected 'previous' or 'velocity'")


class Sampler(ABC):
    def __init__(self, prior: str = "previous", eps: float = 1e-5) -> None:
        if prior not in ("previous", "velocity"):
            raise ValueError(f"unknown prior {prior!r}; expected 'previous' or 'velocity'")
        if not (0 < eps < 1):
            raise ValueError(f"sampler eps must lie in (0, 1), got {eps}")
        self.prior, self.eps = prior, eps
        self._grids: dict[tuple, torch.Tensor] = {}

    def start(self, batch: FrameBatch) -> torch.Tensor:
        return prior_mean(batch, self.prior)

    def time_grid(self, sde: SDE, n: int, like: torch.Tensor) -> torch.Tensor:
        """``sde.time_grid(n, eps)`` (n + 1,) with ``like``'s dtype and device, built once: a
        fixed-step sampler needs the same grid every frame."""
        key = (sde, n, self.eps, like.dtype, like.device)
        if key not in self._grids:
            self._grids[key] = sde.time_grid(n, self.eps, dtype=like.dtype, device=like.device)
        return self._grids[key]

    @abstractmethod
    def sample(self, score_fn: ScoreFn, sde: SDE, cond: torch.Tensor, x_start: torch.Tensor,
               batch_index: torch.Tensor, generator: torch.Generator | None = None) -> SampleResult:
        """Integrate the reverse process from x(1) = x_start (N, 3) to s = eps."""


class ODESampler(Sampler):
    """Probability-flow ODE dx/ds = -½ g(s)² score(x, s), adaptive (dopri5) from s = 1 to eps: a
    sample of the marginal at eps (the data convolved with noise of std σ(eps)), with no pull back
    to the start as a one-step Euler endpoint has (HeunSampler). Deterministic: the same start
    gives the same sample.

    It is integrated in log-time τ = log s (dx/dτ = s dx/ds), the same ODE on a better clock: near
    s = 0 the SDEs here have var(s) ≈ s, so in s the flow is stiff (Jacobian ~ 1/s, hundreds of
    dopri5 steps to reach eps = 1e-3) while in τ its Jacobian stays O(1) and a few dozen suffice.
    With rtol > 0 the step sizes depend on |x| per coordinate, i.e. on the frame of reference, so a
    rotated start gives the rotated sample only up to the tolerance; with rtol = 0 exactly.
    """

    def __init__(self, prior: str = "previous", eps: float = 1e-5, atol: float = 1e-5, rtol: float = 1e-5,
                 method: str = "dopri5") -> None:
        super().__init__(prior, eps)
        self.atol, self.rtol, self.method = atol, rtol, method

    def sample(self, score_fn, sde, cond, x_start, batch_index, generator=None) -> SampleResult:
        nfe = 0

        def drift(tau: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
            nonlocal nfe
            nfe += 1
            s_atom = tau.exp().to(x.dtype).expand(x.shape[0], 1)  # (N, 1)
            g = sde.diffusion(s_atom, cond)
            return -0.5 * s_atom * g * g * score_fn(x, s_atom)

        times = torch.tensor([0.0, math.log(self.eps)], dtype=x_start.dtype, device=x_start.device)
        # step_t: the adaptive solver must land on eps instead of stepping past it (to s < 0, where
        # the marginal variance is negative) and interpolating back.
        options = {"step_t": times[1:]} if self.method in ADAPTIVE else None
        path = odeint(drift, x_start, times, atol=self.atol, rtol=self.rtol, method=self.method, options=options)
        return SampleResult(path[-1], nfe)


class PCSampler(Sampler):
    """Algorithm 1: n_predictor reverse-diffusion predictor steps on the SDE's grid from s = 1 to eps,
    each followed by n_corrector Langevin corrector steps (Song et al. 2021, signal-to-noise ``snr``).

    The predictor uses the exact variance increments of the SDE, G² = var(s_i) - var(s_{i+1}), so it
    is right for per-atom σ. The Langevin step size is set per molecule from the norms of its noise
    and score. The last step returns the noise-free mean, as in Song et al.
    """

    def __init__(self, prior: str = "previous", eps: float = 1e-5, n_predictor: int = 100, n_corrector: int = 1,
                 snr: float = 0.16) -> None:
        super().__init__(prior, eps)
        if n_predictor < 1 or n_corrector < 0:
            raise ValueError(f"need n_predictor >= 1 and n_corrector >= 0, got {n_predictor}, {n_corrector}")
        self.n_predictor, self.n_corrector, self.snr = n_predictor, n_corrector, snr

    @staticmethod
    def _molecule_norm(v: torch.Tensor, batch_index: torch.Tensor) -> torch.Tensor:
        """(N, 1) Euclidean norm of v (N, 3) over the atoms of each atom's molecule."""
        sq = torch.zeros(int(batch_index.max()) + 1, dtype=v.dtype, device=v.device)
        sq = sq.index_add(0, batch_index, (v * v).sum(-1))
        return sq.sqrt()[batch_index].unsqueeze(-1)

    def sample(self, score_fn, sde, cond, x_start, batch_index, generator=None) -> SampleResult:
        grid = self.time_grid(sde, self.n_predictor, x_start)
        n = x_start.shape[0]
        x = x_mean = x_start
        nfe = 0

        def randn() -> torch.Tensor:
            return torch.randn(x_start.shape, generator=generator, dtype=x_start.dtype, device=x_start.device)

        for i in range(self.n_predictor):
            s, s_next = grid[i].expand(n, 1), grid[i + 1].expand(n, 1)
            g2 = (sde.marginal_var(s, cond) - sde.marginal_var(s_next, cond)).clamp_min(0.0)  # (N, 1)
            x_mean = x + g2 * score_fn(x, s)
            nfe += 1
            x = x_mean + g2.sqrt() * randn()
            for _ in range(self.n_corrector):
                grad = score_fn(x, s_next)
                nfe += 1
                z = randn()
                ratio = self.snr * self._molecule_norm(z, batch_index) / self._molecule_norm(grad, batch_index).clamp_min(1e-12)
                step = 2.0 * ratio * ratio  # (N, 1) Å²
                x_mean = x + step * grad
                x = x_mean + (2.0 * step).sqrt() * z
        return SampleResult(x_mean, nfe)


class HeunSampler(Sampler):
    """Fixed-step deterministic sampler of the probability-flow ODE, written in the per-atom noise
    std σ_i(s) (Karras et al. 2022, "Elucidating the design space...", Algorithm 1 without churn):
    dx_i/dσ_i = -σ_i · score_i, because g² ds = d var = 2σ dσ for these zero-drift SDEs.

    ``steps`` intervals of the SDE's time grid from s = 1 to eps; Heun's second-order step on each
    but the last, which is an Euler step to σ = 0 (not to σ(eps)): Tweedie's posterior mean
    x + σ² score, the denoiser's output, exact for a Gaussian. Stopping the Euler step at σ(eps)
    instead would return D + (σ(eps)/σ) (x - D), a fraction σ(eps)/σ of the way back to the start
    x(t) (0.9 % a frame for configs/long.toml): a friction on every frame with no noise to balance it.
    NFE = 2·steps - 1, so steps = 1 is one score evaluation: the network's estimate of
    E[x(t+1) | the conditioning frames] from the prior centre. The next frame of MD given three frames is nearly deterministic, which is why so
    few steps can hold the quality of the adaptive solver; as steps grows the sample converges to
    the ODE solution (tests/diffusion/test_samplers.py).
    """

    def __init__(self, prior: str = "previous", eps: float = 1e-5, steps: int = 1) -> None:
        super().__init__(prior, eps)
        if steps < 1:
            raise ValueError(f"sampler.steps must be >= 1, got {steps}")
        self.steps = steps

    def sample(self, score_fn, sde, cond, x_start, batch_index, generator=None) -> SampleResult:
        grid = self.time_grid(sde, self.steps, x_start)
        n = x_start.shape[0]
        # every grid point's std in one pass (few ops matter at batch 1): (steps + 1, N, 1) Å
        stds = sde.marginal_std(grid.view(-1, 1, 1), cond).expand(-1, n, 1)
        x, nfe = x_start, 0
        s, std = grid[0].expand(n, 1), stds[0]
        d = -std * score_fn(x, s, std)  # (N, 3) dx/dσ
        nfe += 1
        for i in range(self.steps):
            s_next, std_next = grid[i + 1].expand(n, 1), stds[i + 1]
            if i == self.steps - 1:  # to σ = 0: x + σ² score (class docstring)
                x = x - std * d
                break
            x_euler = x + (std_next - std) * d
            d_next = -std_next * score_fn(x_euler, s_next, std_next)
            x = x + (std_next - std) * 0.5 * (d + d_next)
            s, std = s_next, std_next
            d = -std * score_fn(x, s, std)  # the derivative at the accepted point opens the next step
            nfe += 2
        return SampleResult(x, nfe)


def make_sampler(cfg: SamplerConfig) -> Sampler:
    if cfg.kind == "ode":
        return ODESampler(cfg.prior, cfg.eps, cfg.atol, cfg.rtol, cfg.method)
    if cfg.kind == "pc":
        return PCSampler(cfg.prior, cfg.eps, cfg.n_predictor, cfg.n_corrector, cfg.snr)
    if cfg.kind == "heun":
        return HeunSampler(cfg.prior, cfg.eps, cfg.steps)
    raise ValueError(f"unknown sampler kind {cfg.kind!r}; expected 'ode', 'pc' or 'heun'")
