"""Forward SDEs of the diffusion over the next frame x(t+1), and the one interface the loss and the
samplers use.

Every SDE here has zero drift, dx = g(s) dw with s in [0, 1], so the transition kernel is
N(x(0), var(s) I) and the reverse-time probability flow is dx/ds = -½ g(s)² ∇log p_s(x).
Noise parameters may differ per atom: ``condition(batch)`` turns a FrameBatch into a (N, 1)
tensor ``cond`` that every other method takes, so one batch mixes molecules with different noise.
Times ``s`` are python floats, 0-d tensors or (N, 1) tensors (one time per atom).
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch

from ..config import SDEConfig
from ..data.batch import FrameBatch


def _as_time(s: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(s, dtype=like.dtype, device=like.device)


def expm1_ratio(u: torch.Tensor) -> torch.Tensor:
    """expm1(u) / u with its limit 1 at u = 0, accurate for all u (no 0/0, no cancellation)."""
    small = u.abs() < 1e-4
    safe = u.masked_fill(small, 1.0)
    return torch.where(small, 1.0 + u / 2.0 + u * u / 6.0, torch.expm1(safe) / safe)


class SDE(ABC):
    """dx = g(s) dw on s in [0, 1]: what DSM training and the reverse samplers need to know."""

    eps: float  # smallest training time
    log_time: bool = True  # training times log-uniform on [eps, 1] (else uniform)

    def time_from_uniform(self, u: torch.Tensor) -> torch.Tensor:
        """Map u ~ U[0, 1) to a training time s in [eps, 1].

        Log-uniform by default: with var(s) ≈ s near 0, uniform s puts nearly every sample at the
        largest noise (std ~ 0.3 Å, ≫ one frame's acceleration ~ 1e-3 Å), and a score of x(t+1)
        about x(t) (the paper's parameterisation) never learns the dynamics that only the small
        noise scales resolve. Log-uniform s is Eq. 8 under uniform s with weight λ(s) = std²/s,
        spreading the effort evenly over noise scales like Song et al.'s VE SDE does.
        Uniform s (Eq. 8 literally) suits a one-evaluation sampler with EDM preconditioning about an
        anchor (configs/long.toml's): that sampler uses the denoiser at s = 1 only, where it is the
        regression of the next frame on the window (its skip weight σ_data² / (σ² + σ_data²) ≈ 0),
        and uniform s trains nearly every sample in that regime instead of spreading them over noise
        scales the sampler never visits (benches/results/README.md: a larger one-step gain and a
        closer spectrum, and one amine's N-H stretch driven to break a start)."""
        if self.log_time:
            return self.eps ** (1.0 - u)
        return self.eps + (1.0 - self.eps) * u

    @abstractmethod
    def condition(self, batch: FrameBatch) -> torch.Tensor:
        """(N, 1) per-atom noise parameter derived from the conditioning frames."""

    @abstractmethod
    def diffusion(self, s: float | torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """g(s), (N, 1) Å per sqrt(unit time)."""

    @abstractmethod
    def marginal_var(self, s: float | torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """var(s) of x(s) | x(0), (N, 1) Å²; var(0) = 0."""

    def marginal_std(self, s: float | torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """(N, 1) Å."""
        return self.marginal_var(s, cond).sqrt()

    def sde(self, x: torch.Tensor, s: float | torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(drift (N, 3), diffusion (N, 1)) of the forward SDE at x (N, 3), time s."""
        return torch.zeros_like(x), self.diffusion(s, cond)

    def perturb(self, x0: torch.Tensor, s: float | torch.Tensor, cond: torch.Tensor,
                noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample x(s) | x(0) = x0 with the given standard normal ``noise``: (x_s, std)."""
        std = self.marginal_std(s, cond)
        return x0 + std * noise, std

    def time_grid(self, n: int, end: float, **like) -> torch.Tensor:
        """(n + 1,) decreasing times from 1 to ``end`` for fixed-step reverse samplers: uniform."""
        return torch.linspace(1.0, end, n + 1, **like)

    def prior_sample(self, mean: torch.Tensor, cond: torch.Tensor,
                     generator: torch.Generator | None = None) -> torch.Tensor:
        """x(1) ~ N(mean, var(1)): the diffusion endpoint around a chosen centre (N, 3)."""
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
        return mean + self.marginal_std(1.0, cond) * noise


class ConditionalVESDE(SDE):
    """DiffMD's SDE (Eq. 5): dx = σ_i^s dw with a per-atom σ_i from the previous acceleration.

    Eq. 6 as printed, σ = σ_s η_σ (|a|² - ā)² for |a|² < ā, vanishes at the threshold while Table 3
    calls σ_s "the standard deviation when the acceleration is above the threshold"; read together
    we use the continuous form
        σ_i = σ_s (1 + η_σ relu(ā - |a_i|²)²),
    equal to σ_s at and above the threshold and growing as the motion slows down, which is the
    behaviour the text describes (slow motion -> more noise, GaMD-like). σ is then clamped into
    [sigma_clamp_min, sigma_clamp_max]: σ > 1 makes g(s) = σ^s grow with s and the endpoint std
    explode like σ/sqrt(2 log σ), so by default σ is capped at 1, i.e. at plain Brownian motion
    (var(1) = 1 Å²). ``cond`` holds log σ_i, computed with log1p so σ near 1 stays exact.

    Marginal variance (Eq. 9): var(s) = (σ^{2s} - 1) / (2 log σ) = s · expm1(2 s log σ) / (2 s log σ),
    which is finite for every σ and tends to s as σ -> 1.
    """

    def __init__(self, sigma_s: float = 1e-2, a_bar: float = 1.0, eta_sigma: float = 1.0,
                 clamp_min: float = 1e-6, clamp_max: float = 1.0, eps: float = 1e-5, log_time: bool = True) -> None:
        if not (sigma_s > 0 and a_bar >= 0 and eta_sigma >= 0):
            raise ValueError(f"need sigma_s > 0, a_bar >= 0, eta_sigma >= 0; got {sigma_s}, {a_bar}, {eta_sigma}")
        if not (0 < clamp_min <= clamp_max):
            raise ValueError(f"need 0 < sigma_clamp_min <= sigma_clamp_max, got {clamp_min}, {clamp_max}")
        if not (0 < eps < 1):
            raise ValueError(f"eps must lie in (0, 1), got {eps}")
        self.sigma_s, self.a_bar, self.eta_sigma = sigma_s, a_bar, eta_sigma
        self.log_min, self.log_max = math.log(clamp_min), math.log(clamp_max)
        self.eps, self.log_time = eps, log_time

    def log_sigma(self, acceleration: torch.Tensor) -> torch.Tensor:
        """(N, 1) log σ_i of Eq. 6 from the acceleration (N, 3) in Å/frame²."""
        a2 = (acceleration * acceleration).sum(-1, keepdim=True)  # (N, 1) Å²/frame⁴
        gap = torch.relu(self.a_bar - a2)
        log_sigma = math.log(self.sigma_s) + torch.log1p(self.eta_sigma * gap * gap)
        return log_sigma.clamp(self.log_min, self.log_max)

    def condition(self, batch: FrameBatch) -> torch.Tensor:
        return self.log_sigma(batch.acceleration)

    def time_grid(self, n: int, end: float, **like) -> torch.Tensor:
        """Geometric in s: var(s) ≈ s for small s while, for σ ≪ 1, var saturates by s ≈ 0.3, so
        the noise that is left to remove shrinks geometrically only on a geometric grid."""
        return torch.logspace(0.0, math.log10(end), n + 1, **like)

    def diffusion(self, s: float | torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return torch.exp(_as_time(s, cond) * cond)  # σ^s

    def marginal_var(self, s: float | torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        s = _as_time(s, cond)
        return s * expm1_ratio(2.0 * s * cond)


class VESDE(SDE):
    """Song et al.'s variance-exploding SDE, for comparison: std(s) = σ_min (σ_max/σ_min)^s for every
    atom, g(s) = std(s) sqrt(2 log(σ_max/σ_min)); var(s) = σ_min² ((σ_max/σ_min)^{2s} - 1) so that
    var(0) = 0 exactly like the conditional SDE."""

    def __init__(self, sigma_min: float = 1e-3, sigma_max: float = 0.5, eps: float = 1e-5, log_time: bool = False) -> None:
        if not (0 < sigma_min < sigma_max):
            raise ValueError(f"need 0 < ve_sigma_min < ve_sigma_max, got {sigma_min}, {sigma_max}")
        if not (0 < eps < 1):
            raise ValueError(f"eps must lie in (0, 1), got {eps}")
        self.sigma_min, self.sigma_max, self.eps, self.log_time = sigma_min, sigma_max, eps, log_time
        self.log_ratio = math.log(sigma_max / sigma_min)

    def condition(self, batch: FrameBatch) -> torch.Tensor:
        return torch.zeros(batch.x.shape[0], 1, dtype=batch.x.dtype, device=batch.x.device)

    def diffusion(self, s: float | torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        s = _as_time(s, cond)
        g = self.sigma_min * torch.exp(s * self.log_ratio) * math.sqrt(2.0 * self.log_ratio)
        return g.expand_as(cond) if g.dim() == 0 else g

    def marginal_var(self, s: float | torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        s = _as_time(s, cond)
        var = self.sigma_min**2 * torch.expm1(2.0 * s * self.log_ratio)
        return var.expand_as(cond) if var.dim() == 0 else var


def make_sde(cfg: SDEConfig) -> SDE:
    if cfg.kind == "conditional":
        return ConditionalVESDE(cfg.sigma_s, cfg.a_bar, cfg.eta_sigma, cfg.sigma_clamp_min,
                                cfg.sigma_clamp_max, cfg.eps, cfg.time_sampling == "log_uniform")
    if cfg.kind == "ve":
        return VESDE(cfg.ve_sigma_min, cfg.ve_sigma_max, cfg.eps, cfg.time_sampling == "log_uniform")
    raise ValueError(f"unknown SDE kind {cfg.kind!r}; expected 'conditional' or 've'")
