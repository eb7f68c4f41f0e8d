"""Training for rollouts: input noise and pushforward (unrolled) conditioning, keyed and resumable."""
from __future__ import annotations

import pytest
import torch

from diffmd_fast.config import Config, ModelConfig, TrainConfig
from diffmd_fast.data import bundled, load_trajectory
from diffmd_fast.data.windows import FrameWindows, collate_windows
from diffmd_fast.diffusion.samplers import HeunSampler
from diffmd_fast.diffusion.sde import ConditionalVESDE
from diffmd_fast.ops.graph import complete_graph
from diffmd_fast.training.conditioning import add_input_noise, pushforward
from diffmd_fast.training.loop import train, unroll_steps

TINY = ModelConfig(num_layers=1, heads=2, hidden=8, ffn=16, dropout=0.1, max_z=10, num_fourier=4)


class ConstantVelocity(torch.nn.Module):
    """Exact score of a narrow Gaussian around x(t) + v(t): samples are the linear extrapolation."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(()))  # a parameter that must get no gradient

    def forward(self, batch, x_noisy, std, graph=None):
        return -self.w * (x_noisy - (2 * batch.x - batch.x_prev)) / (1e-8 + std**2)


def _linear_windows(history: int):
    """Windows of atoms moving at constant velocity: every frame is the extrapolation of the last two."""
    traj = load_trajectory(bundled("ethanol")).slice(0, 1)
    t = torch.arange(12, dtype=torch.float64)[:, None, None]
    pos = torch.from_numpy(traj.positions[0]) + 0.01 * t * torch.linspace(-1, 1, 27, dtype=torch.float64).view(1, 9, 3)
    data = FrameWindows([traj.__class__(positions=pos.numpy(), numbers=traj.numbers, dt_fs=0.5, name="lin")],
                        history=history)
    return collate_windows([data[i] for i in range(len(data))], dtype=torch.float64)


def test_windows_carry_the_history_frames():
    batch = _linear_windows(history=3)
    assert batch.history.shape == (3, batch.x.shape[0], 3)
    assert torch.allclose(batch.x_prev2 - batch.history[-1], batch.x - batch.x_prev)  # consecutive frames
    assert _linear_windows(history=0).history is None


def test_input_noise_perturbs_the_conditioning_frames_only():
    batch = _linear_windows(history=0)
    eta = torch.randn(4, *batch.x.shape, dtype=torch.float64)
    noisy = add_input_noise(batch, eta, 0.01)
    assert torch.allclose(noisy.x - batch.x, 0.01 * eta[2]) and torch.allclose(noisy.x_prev2 - batch.x_prev2, 0.01 * eta[0])
    assert torch.equal(noisy.x_next, batch.x_next)


def test_shared_input_noise_moves_the_geometry_and_keeps_velocity_and_acceleration():
    batch = _linear_windows(history=0)
    eta = torch.randn(4, *batch.x.shape, dtype=torch.float64)
    noisy = add_input_noise(batch, eta, 0.0, 0.02)
    assert torch.allclose(noisy.x - batch.x, 0.02 * eta[3]) and torch.equal(noisy.x_next, batch.x_next)
    torch.testing.assert_close(noisy.x - noisy.x_prev, batch.x - batch.x_prev)  # velocity unchanged
    torch.testing.assert_close(noisy.x_prev - noisy.x_prev2, batch.x_prev - batch.x_prev2)  # and acceleration
    both = add_input_noise(batch, eta, 0.01, 0.02)
    assert torch.allclose(both.x_prev - batch.x_prev, 0.01 * eta[1] + 0.02 * eta[3])


@pytest.mark.parametrize("steps", [1, 3])
def test_pushforward_of_an_exact_model_reproduces_the_real_window_without_gradient(steps):
    batch = _linear_windows(history=3)
    model = ConstantVelocity()
    # eps = 1e-12: the one Heun step lands within σ(eps)/σ(1) ~ 1e-5 of the exact extrapolation
    out = pushforward(model, ConditionalVESDE(), HeunSampler(eps=1e-12, steps=1), batch, steps,
                      complete_graph(batch.batch))
    assert torch.allclose(out.x, batch.x, atol=1e-6) and torch.allclose(out.x_prev, batch.x_prev, atol=1e-6)
    assert not out.x.requires_grad and out.history is None and torch.equal(out.x_next, batch.x_next)
    assert model.training  # put back


def test_pushforward_replaces_frames_by_the_models_and_keeps_real_ones_where_it_fails():
    batch = _linear_windows(history=2)

    class Stop(ConstantVelocity):  # predicts no motion; NaN for molecule 0
        def forward(self, b, x_noisy, std, graph=None):
            score = -(x_noisy - b.x) / (1e-8 + std**2)
            return torch.where((b.batch == 0).unsqueeze(-1), torch.full_like(score, float("nan")), score)

    out = pushforward(Stop(), ConditionalVESDE(), HeunSampler(eps=1e-12, steps=1), batch, 2, complete_graph(batch.batch))
    first = batch.batch == 0
    assert torch.equal(out.x[first], batch.x[first])  # failed molecule: real frames
    assert torch.allclose(out.x[~first], out.x_prev[~first], atol=1e-6)  # frozen by the model
    with pytest.raises(ValueError, match="history"):
        pushforward(Stop(), ConditionalVESDE(), HeunSampler(), _linear_windows(0), 1, complete_graph(batch.batch))


def test_pushforward_of_a_phase_space_model_carries_the_velocity_from_the_unrolled_start():
    """Windows of MD that is the phase-space prior's own (2 fs frames of 2 velocity-Verlet substeps): the
    prior alone unrolled from an earlier window lands on the real frames and velocities."""
    from diffmd_fast.data.trajectory import Trajectory
    from diffmd_fast.nn.score_net import AnchorScore, ScoreNet
    from diffmd_fast.valence.fit import valence_statistics
    from diffmd_fast.valence.topology import topology_graph
    from diffmd_fast.valence.verlet import phase_step

    ethanol = load_trajectory(bundled("ethanol"))
    net = ScoreNet(ModelConfig(num_layers=1, heads=2, hidden=8, ffn=16, max_z=10, num_fourier=4, bond_prior=True,
                               sigma_data=0.02, prior_substeps=2)).double()
    net.bond_prior.set_tables(frame_fs=1.0, **valence_statistics([ethanol], 10))
    z = torch.as_tensor(ethanol.numbers)
    x, v = torch.as_tensor(ethanol.positions[0]), torch.as_tensor(ethanol.velocity_estimates()[0])
    graph = topology_graph(x, z, torch.zeros(9, dtype=torch.int64))
    xs, vs = [x], [v]
    for _ in range(11):
        x, v = phase_step(net.bond_prior, x, v, z, graph, 2)
        xs.append(x), vs.append(v)
    md = Trajectory(positions=torch.stack(xs).numpy(), numbers=ethanol.numbers, dt_fs=2.0,
                    velocities=torch.stack(vs).numpy(), name="prior-md")
    data = FrameWindows([md], history=3, velocities=True)
    batch = collate_windows([data[i] for i in range(len(data))], dtype=torch.float64, centre=False)
    full = topology_graph(batch.x, batch.z, batch.batch)
    out = pushforward(AnchorScore(net), ConditionalVESDE(), HeunSampler(steps=1), batch, 3, full)
    torch.testing.assert_close(out.x, batch.x, rtol=0, atol=1e-9)
    torch.testing.assert_close(out.v, batch.v, rtol=0, atol=1e-9)
    assert out.v_history is None


def test_unroll_steps_is_keyed_and_in_range():
    tc = TrainConfig(unroll_prob=0.5, unroll_steps=3)
    draws = [unroll_steps(tc, e, b) for e in range(5) for b in range(40)]
    assert draws == [unroll_steps(tc, e, b) for e in range(5) for b in range(40)]
    assert set(draws) == {0, 1, 2, 3} and 0.35 < draws.count(0) / len(draws) < 0.65
    assert unroll_steps(TrainConfig(), 0, 0) == 0


def test_training_with_noise_and_unroll_resumes_exactly(tmp_path):
    torch.set_num_threads(1)
    traj = load_trajectory(bundled("ethanol")).slice(0, 44)
    cfg = Config(model=TINY, train=TrainConfig(batch_size=8, epochs=2, val_every=100, val_rollout_frames=0,
                                               dtype="float64", input_noise=0.002, input_noise_shared=0.001,
                                               unroll_prob=0.5, unroll_steps=2))
    cfg = cfg.with_overrides(["sampler.kind=heun", "sampler.steps=1"])
    full = train(cfg, traj, None, tmp_path / "full")
    killed = train(cfg.with_overrides([f"train.max_steps={full.steps - 3}"]), traj, None, tmp_path / "resumed")
    assert killed.steps == full.steps - 3
    resumed = train(cfg, traj, None, tmp_path / "resumed")
    assert resumed.steps == full.steps
    for (name, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    plain = train(cfg.with_overrides(["train.input_noise=0", "train.input_noise_shared=0", "train.unroll_prob=0"]),
                  traj, None, tmp_path / "plain")
    assert plain.history[-1]["train_loss"] != full.history[-1]["train_loss"]  # the options act
