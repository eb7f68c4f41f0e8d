"""Forward SDEs: Eq. 6 noise scale, Eq. 9 marginal variance against Monte Carlo, stability at σ -> 1."""
import math

import pytest
import torch

from diffmd_fast.config import SDEConfig
from diffmd_fast.data.batch import FrameBatch
from diffmd_fast.diffusion.sde import ConditionalVESDE, VESDE, expm1_ratio, make_sde


def _euler_maruyama_var(sde, cond, s_end: float, steps: int = 100, paths: int = 20000) -> torch.Tensor:
    """Empirical var of x(s_end) for dx = g(s) dw, x(0) = 0, per condition value."""
    gen = torch.Generator().manual_seed(0)
    ds = s_end / steps
    x = torch.zeros(cond.shape[0], paths, dtype=torch.float64)
    for k in range(steps):
        s_mid = torch.full_like(cond, (k + 0.5) * ds)
        g = sde.diffusion(s_mid, cond)  # (M, 1)
        x = x + g * math.sqrt(ds) * torch.randn(x.shape, generator=gen, dtype=torch.float64)
    return x.var(dim=1)


@pytest.mark.parametrize("s_end", [0.3, 1.0])
def test_conditional_marginal_var_matches_monte_carlo(s_end):
    sde = ConditionalVESDE()
    cond = torch.log(torch.tensor([[0.02], [0.3], [1.0], [1.0 - 1e-7]], dtype=torch.float64))
    mc = _euler_maruyama_var(sde, cond, s_end)
    exact = sde.marginal_var(s_end, cond).squeeze(-1)
    # relative standard error of a variance from 20000 samples is sqrt(2/20000) = 1 %
    assert torch.allclose(mc, exact, rtol=0.05), (mc, exact)


def test_ve_marginal_var_matches_monte_carlo():
    sde = VESDE(sigma_min=0.01, sigma_max=0.5)
    cond = torch.zeros(1, 1, dtype=torch.float64)
    mc = _euler_maruyama_var(sde, cond, 1.0, steps=1000)
    assert torch.allclose(mc, sde.marginal_var(1.0, cond).squeeze(-1), rtol=0.05)
    assert float(sde.marginal_var(0.0, cond)) == 0.0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_marginal_var_stable_as_sigma_to_one(dtype):
    sde = ConditionalVESDE()
    log_sigma = torch.tensor([[-1e-12], [0.0], [1e-12], [-1e-5], [1e-5]], dtype=dtype, requires_grad=True)
    s = torch.tensor(0.7, dtype=dtype)
    var = sde.marginal_var(s, log_sigma)
    assert torch.isfinite(var).all()
    assert torch.allclose(var, torch.full_like(var, 0.7), rtol=1e-4)
    var.sum().backward()
    assert torch.isfinite(log_sigma.grad).all()
    # near σ = 1 the exact formula and its series agree; far away it is the closed form of Eq. 9
    sigma = torch.tensor([[0.1]], dtype=torch.float64)
    closed = (sigma ** (2 * 0.7) - 1) / (2 * torch.log(sigma))
    assert torch.allclose(sde.marginal_var(0.7, torch.log(sigma)), closed, rtol=1e-12)


def test_expm1_ratio_continuous_across_branch():
    u = torch.tensor([-1.01e-4, -0.99e-4, 0.99e-4, 1.01e-4], dtype=torch.float64)
    ref = torch.expm1(u) / u
    assert torch.allclose(expm1_ratio(u), ref, rtol=1e-12)


def _batch_with_acceleration(a: torch.Tensor) -> FrameBatch:
    n = a.shape[0]
    zeros = torch.zeros(n, 3, dtype=torch.float64)
    return FrameBatch(z=torch.ones(n, dtype=torch.int64), x_prev2=zeros, x_prev=zeros, x=a.double(),
                      x_next=a.double(), batch=torch.zeros(n, dtype=torch.int64), num_graphs=1)


def test_eq6_noise_scale_behaviour():
    sde = ConditionalVESDE(sigma_s=0.01, a_bar=1.0, eta_sigma=2.0, clamp_max=1.0)
    # |a|^2 = 4 (above threshold), 1 (at), 0.25, 0 (slowest motion)
    acc = torch.tensor([[2.0, 0, 0], [1.0, 0, 0], [0.5, 0, 0], [0.0, 0, 0]])
    sigma = sde.condition(_batch_with_acceleration(acc)).exp().squeeze(-1)
    assert torch.allclose(sigma[:2], torch.full((2,), 0.01, dtype=torch.float64))
    assert sigma[2] > sigma[1] and sigma[3] > sigma[2]  # slower motion -> more noise
    assert torch.isclose(sigma[3], torch.tensor(0.01 * (1 + 2.0), dtype=torch.float64))
    big = ConditionalVESDE(sigma_s=0.5, a_bar=10.0, eta_sigma=10.0, clamp_max=1.0)
    assert float(big.condition(_batch_with_acceleration(acc)).max()) == 0.0  # σ clamped to 1


def test_make_sde_and_errors():
    assert isinstance(make_sde(SDEConfig(kind="ve")), VESDE)
    assert isinstance(make_sde(SDEConfig()), ConditionalVESDE)
    with pytest.raises(ValueError, match="eps"):
        ConditionalVESDE(eps=0.0)
    with pytest.raises(ValueError, match="sigma_s"):
        ConditionalVESDE(sigma_s=-1.0)
