"""Samplers and DSM loss on a Gaussian toy target whose score is known exactly.

Target: every coordinate of x(t+1) ~ N(μ, τ²). Under dx = σ^s dw the marginal at time s is
N(μ, τ² + var(s)), so the exact score is -(x - μ)/(τ² + var(s)).
"""
import pytest
import torch

from diffmd_fast.data.batch import FrameBatch
from diffmd_fast.diffusion.losses import draw_noise, draw_noise_keyed, dsm_loss
from diffmd_fast.diffusion.samplers import HeunSampler, ODESampler, PCSampler, make_sampler, prior_mean
from diffmd_fast.config import SamplerConfig
from diffmd_fast.diffusion.sde import ConditionalVESDE

TAU = 0.05  # Å


def _toy(n_mol=200, atoms=10, seed=0):
    gen = torch.Generator().manual_seed(seed)
    n = n_mol * atoms
    mu = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    batch = torch.repeat_interleave(torch.arange(n_mol), atoms)
    # per-atom σ spread over [0.02, 1] (log σ in [log 0.02, 0])
    cond = torch.log(0.02 + 0.98 * torch.rand(n, 1, generator=gen, dtype=torch.float64))
    return mu, batch, cond, gen


def _exact_score(mu, sde, cond):
    return lambda x, s, std=None: -(x - mu) / (TAU**2 + (sde.marginal_var(s, cond) if std is None else std * std))


@pytest.mark.parametrize("sampler", [ODESampler(eps=1e-4), PCSampler(eps=1e-4, n_predictor=200, n_corrector=1)])
def test_sampler_recovers_gaussian(sampler):
    sde = ConditionalVESDE()
    mu, batch, cond, gen = _toy()
    std1 = torch.sqrt(TAU**2 + sde.marginal_var(1.0, cond))
    x1 = mu + std1 * torch.randn(mu.shape, generator=gen, dtype=torch.float64)
    res = sampler.sample(_exact_score(mu, sde, cond), sde, cond, x1, batch, generator=gen)
    target_std = torch.sqrt(TAU**2 + sde.marginal_var(sampler.eps, cond))  # (N, 1)
    z = (res.x - mu) / target_std  # should be standard normal
    assert abs(float(z.mean())) < 0.05
    assert abs(float(z.std()) - 1.0) < 0.05
    assert res.nfe > 0
    if isinstance(sampler, PCSampler):
        assert res.nfe == 200 * 2


def test_ode_sampler_is_deterministic_and_maps_prior_to_mean():
    sde = ConditionalVESDE()
    mu, batch, cond, _ = _toy(n_mol=4, atoms=3)
    start = mu + 0.3
    sampler = ODESampler(eps=1e-4)
    a = sampler.sample(_exact_score(mu, sde, cond), sde, cond, start, batch)
    b = sampler.sample(_exact_score(mu, sde, cond), sde, cond, start, batch)
    assert torch.equal(a.x, b.x)
    # Gaussian flow: x(eps) - μ = (x(1) - μ) · std(eps)/std(1)
    ratio = torch.sqrt((TAU**2 + sde.marginal_var(1e-4, cond)) / (TAU**2 + sde.marginal_var(1.0, cond)))
    assert torch.allclose(a.x - mu, 0.3 * ratio.expand(-1, 3), atol=1e-4)


def test_heun_sampler_converges_to_the_adaptive_ode_solution():
    """A non-Gaussian target (mixture of two Gaussians per coordinate) so that low orders are wrong."""
    sde = ConditionalVESDE()
    mu, batch, cond, gen = _toy(n_mol=8, atoms=4)
    def score(x, s, std=None):  # exact score of ½N(μ-δ, τ²) + ½N(μ+δ, τ²) convolved with the SDE's kernel
        var = TAU**2 + sde.marginal_var(s, cond)
        a, b = -((x - mu + 0.1) ** 2) / (2 * var), -((x - mu - 0.1) ** 2) / (2 * var)
        w = torch.sigmoid(b - a)
        return (-(x - mu + 0.1) * (1 - w) - (x - mu - 0.1) * w) / var
    start = mu + 0.05 * torch.randn(mu.shape, generator=gen, dtype=torch.float64)
    exact = ODESampler(eps=1e-4, atol=1e-9, rtol=1e-9).sample(score, sde, cond, start, batch).x
    s_eps = torch.full((mu.shape[0], 1), 1e-4, dtype=torch.float64)
    exact = exact + sde.marginal_var(s_eps, cond) * score(exact, s_eps)  # Heun ends at σ = 0: the ODE's last bit as Tweedie
    errors = []
    for steps in (1, 2, 4, 8, 16, 32):
        res = HeunSampler(eps=1e-4, steps=steps).sample(score, sde, cond, start, batch)
        assert res.nfe == 2 * steps - 1
        errors.append(float((res.x - exact).abs().max()))
    assert errors[-1] < 0.1 * errors[0] and errors[-1] < 2e-3, errors
    assert all(b <= a * 1.05 for a, b in zip(errors[2:], errors[3:])), errors  # monotone once resolved


@pytest.mark.parametrize("eps", [1e-10, 1e-3, 0.1])
def test_one_heun_step_is_the_posterior_mean(eps):
    """steps=1 is Tweedie's formula x + σ(1)² score(x, 1), exact for a Gaussian target, whatever eps:
    the last step goes to σ = 0, so nothing of the start x(1) is kept (an Euler step to σ(eps) would
    keep the fraction σ(eps)/σ(1) of x(1) - E[x], a friction on every rollout frame)."""
    sde = ConditionalVESDE()
    mu, batch, cond, gen = _toy(n_mol=4, atoms=3)
    start = mu + 0.2 * torch.randn(mu.shape, generator=gen, dtype=torch.float64)
    res = HeunSampler(eps=eps, steps=1).sample(_exact_score(mu, sde, cond), sde, cond, start, batch)
    var1 = sde.marginal_var(1.0, cond)
    posterior_mean = mu + (start - mu) * TAU**2 / (TAU**2 + var1)
    assert res.nfe == 1
    assert torch.allclose(res.x, posterior_mean, atol=1e-12)


def _toy_batch(n_mol=64, atoms=6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    n = n_mol * atoms
    x = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    v = 0.05 * torch.randn(n, 3, generator=gen, dtype=torch.float64)
    x_next = x + v + TAU * torch.randn(n, 3, generator=gen, dtype=torch.float64)
    return FrameBatch(z=torch.ones(n, dtype=torch.int64), x_prev2=x - 2 * v, x_prev=x - v, x=x, x_next=x_next,
                      batch=torch.repeat_interleave(torch.arange(n_mol), atoms), num_graphs=n_mol)


class _GaussianScore(torch.nn.Module):
    """Exact score of N(x + v, τ²), optionally scaled or shifted to make it wrong."""

    def __init__(self, scale=1.0, shift=0.0):
        super().__init__()
        self.scale, self.shift = scale, shift

    def forward(self, batch, x_noisy, std, graph=None):
        mean = 2 * batch.x - batch.x_prev
        return self.scale * (-(x_noisy - mean) / (TAU**2 + std**2)) + self.shift


def test_dsm_loss_is_minimal_at_exact_score():
    sde = ConditionalVESDE(sigma_s=0.05)
    b = _toy_batch()
    gen = torch.Generator().manual_seed(1)
    noises = [draw_noise(b, sde, gen) for _ in range(20)]

    def loss(model):
        return sum(float(dsm_loss(model, sde, b, n)) for n in noises) / len(noises)

    best = loss(_GaussianScore())
    for wrong in (_GaussianScore(scale=0.9), _GaussianScore(scale=1.1), _GaussianScore(shift=0.5),
                  _GaussianScore(shift=-0.5)):
        assert loss(wrong) > best + 1e-3
    # the minimum of DSM is the Fisher divergence floor, not zero: E|std s + z|^2 = 3 τ²/(τ² + std²) per atom
    assert 0 < best < 3.0


def test_keyed_noise_depends_only_on_key():
    b = _toy_batch(n_mol=4, atoms=3)
    sde = ConditionalVESDE(eps=1e-3)
    n1 = draw_noise_keyed(b, sde, [10, 11, 12, 13])
    n2 = draw_noise_keyed(b, sde, [12, 99, 98, 97])
    assert torch.equal(n1.z[6:9], n2.z[0:3]) and n1.s[2] == n2.s[0]
    assert not torch.equal(n1.z[0:3], n2.z[0:3])
    assert ((n1.s >= 1e-3) & (n1.s <= 1)).all()


def test_priors_and_factory():
    b = _toy_batch(n_mol=1, atoms=2)
    assert torch.equal(prior_mean(b, "previous"), b.x)
    assert torch.allclose(prior_mean(b, "velocity"), b.x + b.velocity)
    assert isinstance(make_sampler(SamplerConfig(kind="pc")), PCSampler)
    assert make_sampler(SamplerConfig(prior="velocity")).prior == "velocity"
    with pytest.raises(ValueError, match="prior"):
        ODESampler(prior="gaussian")
