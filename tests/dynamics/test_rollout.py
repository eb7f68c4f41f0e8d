"""Rollout: E(3) equivariance of a whole generated trajectory, NFE bookkeeping, NaN detection, and a
tiny model trained on a short real trajectory beating the static frame."""
import math
import shutil

import pytest
import torch

from diffmd_fast.dynamics.guards import GuardConfig
from diffmd_fast.config import Config, ModelConfig, SamplerConfig, TrainConfig
from diffmd_fast.data import bundled, load_trajectory
from diffmd_fast.dynamics.rollout import evenly_spaced_starts, rollout, rollout_armse
from diffmd_fast.diffusion.samplers import ODESampler, PCSampler, make_sampler
from diffmd_fast.diffusion.sde import ConditionalVESDE, make_sde
from diffmd_fast.training.loop import train
from model_helpers import make_net, orthogonal, random_batch, transform


def test_rollout_of_rotated_start_is_rotated_rollout():
    """rtol = 0: the solver's error norm is then E(3)-invariant, so both runs take the same steps
    (with rtol > 0 the per-coordinate tolerance rtol·|x| depends on the frame of reference)."""
    net = make_net()
    with torch.no_grad():
        net.delta_scale.fill_(0.05)  # EGL stack active but smooth (a random net at full scale is chaotic)
    sde = ConditionalVESDE()
    sampler = ODESampler(eps=1e-2, atol=1e-5, rtol=0.0)
    start = random_batch(sizes=(4, 3))
    q, t = orthogonal(11, reflect=True), torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64)
    free = GuardConfig.finite_only()  # random atoms: the pair checks would stop them, equivariance is the point
    base = rollout(net, sde, sampler, start, frames=2, guard=free)
    moved = rollout(net, sde, sampler, transform(start, q, t), frames=2, guard=free)
    assert base.positions.shape == (2, 7, 3)
    assert (base.positions[-1] - start.x).abs().max() > 1e-2  # it moved
    assert torch.equal(base.nfe_per_frame, moved.nfe_per_frame)
    assert torch.allclose(moved.positions, base.positions @ q.T + t, atol=1e-10)
    assert (base.nfe_per_frame > 0).all() and base.frames_per_s > 0


def test_pc_rollout_counts_nfe_and_restores_training_mode():
    net = make_net()
    net.train()
    sampler = PCSampler(eps=1e-3, n_predictor=5, n_corrector=2)
    # an untrained random net moves atoms ~2.6 Å per frame: only the NaN guard stays on here
    res = rollout(net, ConditionalVESDE(), sampler, random_batch(), frames=2,
                  generator=torch.Generator().manual_seed(0), guard=GuardConfig.finite_only())
    assert res.nfe_per_frame.tolist() == [15, 15]
    assert torch.isfinite(res.positions).all()
    assert net.training
    assert res.molecule(1).shape == (2, 4, 3)


class _NaNScore(torch.nn.Module):
    def forward(self, batch, x, std, graph=None):
        return torch.full_like(x, math.nan)


def test_rollout_raises_on_non_finite_positions():
    sampler = PCSampler(n_predictor=2, n_corrector=0)
    with pytest.raises(FloatingPointError, match="frame 1"):
        rollout(_NaNScore(), ConditionalVESDE(), sampler, random_batch(), frames=2, strict=True)


def test_evenly_spaced_starts():
    assert evenly_spaced_starts(100, 10, 2, 3) == [4, 42, 79]
    assert evenly_spaced_starts(10, 10, 1, 3) == []


def test_tiny_model_trained_on_real_trajectory_beats_static_frame(tmp_path):
    """Overfit 117 windows of GFN2-xTB ethanol (500 K, 0.5 fs), roll out 5 frames from 3 starts."""
    torch.set_num_threads(1)
    traj = load_trajectory(bundled("ethanol")).slice(0, 120)
    cfg = Config(model=ModelConfig(num_layers=2, hidden=32, heads=4, ffn=64, dropout=0.0),
                 sampler=SamplerConfig(atol=1e-4, rtol=1e-4),
                 train=TrainConfig(lr=2e-3, batch_size=32, epochs=1000, max_steps=100, val_every=1000))
    res = train(cfg, traj, None, tmp_path / "run")
    losses = [h["train_loss"] for h in res.history]
    assert min(losses[-5:]) < 0.7 * losses[0]
    sde, sampler = make_sde(cfg.sde), make_sampler(cfg.sampler)
    score = rollout_armse(res.model, sde, sampler, [traj], 5, starts_per_traj=3)
    assert score.armse < 0.7 * score.armse_static, score
    shutil.rmtree(tmp_path / "run")
