import numpy as np
import pytest
import torch

from diffmd_fast.data import FrameBatch, FrameWindows, Trajectory, TrajectoryError, collate_windows, make_loader, start_batch


def _ballistic(frames=20, atoms=3, offset=0.0, name="ball") -> Trajectory:
    """x_i(t) = x_i0 + v_i t + a_i t^2 / 2 (Å, t in frames): known velocity and acceleration."""
    t = np.arange(frames, dtype=np.float64)[:, None, None]
    x0 = np.arange(atoms * 3, dtype=np.float64).reshape(atoms, 3) + offset
    v = 0.1 * np.ones((atoms, 3))
    a = 0.02 * np.arange(1, atoms + 1)[:, None] * np.ones((atoms, 3))
    return Trajectory(positions=x0 + v * t + 0.5 * a * t**2, numbers=np.full(atoms, 6), dt_fs=0.5, name=name)


def test_window_count_and_values():
    traj = _ballistic(20)
    ds = FrameWindows([traj], stride=2)
    assert len(ds) == 20 - 3 * 2  # t in [4, 17]
    assert ds.locate(0) == (0, 4)
    w = ds[3]  # t = 7: frames 3, 5, 7, 9
    np.testing.assert_array_equal(w.positions.numpy(), traj.positions[[3, 5, 7, 9]])


def test_collate_velocity_acceleration():
    a, b = _ballistic(10, atoms=3), _ballistic(10, atoms=5, offset=100.0)
    ds = FrameWindows([a, b])
    batch = collate_windows([ds[0], ds[len(ds) - 1]], dtype=torch.float64)
    assert isinstance(batch, FrameBatch) and batch.num_graphs == 2
    assert batch.x.shape == (8, 3) and batch.x.dtype == torch.float64
    assert batch.batch.tolist() == [0] * 3 + [1] * 5
    acc = 0.02 * np.arange(1, 6)[:, None] * np.ones((5, 3))
    np.testing.assert_allclose(batch.acceleration[3:].numpy(), acc, atol=1e-9)
    t = 8  # last window of b: x(t) - x(t-1) = v + a (t - 1/2)
    np.testing.assert_allclose(batch.velocity[3:].numpy(), 0.1 + acc * (t - 0.5), atol=1e-9)
    np.testing.assert_allclose((batch.x_next - batch.x)[3:].numpy(), 0.1 + acc * (t + 0.5), atol=1e-9)
    assert collate_windows([ds[0]]).x.dtype == torch.float32


def test_frame_ranges_bound_and_thin():
    traj = _ballistic(30)
    ds = FrameWindows([traj], frames=[range(10, 20, 3)])
    assert [ds.locate(i)[1] for i in range(len(ds))] == [13, 16]  # 10 lacks t-2 in range; 19 lacks t+1
    with pytest.raises(TrajectoryError, match="no complete window"):
        FrameWindows([traj.slice(0, 3)])
    with pytest.raises(ValueError, match="frame ranges"):
        FrameWindows([traj], frames=[range(5), range(5)])


def test_make_loader_covers_everything_once():
    trajs = [_ballistic(12, atoms=3), _ballistic(9, atoms=4)]
    loader = make_loader(trajs, batch_size=4, seed=3)
    batches = list(loader)
    assert sum(b.num_graphs for b in batches) == (12 - 3) + (9 - 3)
    assert sum(b.z.numel() for b in batches) == 9 * 3 + 6 * 4
    assert all(b.x.dtype == torch.float32 for b in batches)
    again = [b.x for b in make_loader(trajs, batch_size=4, seed=3)]
    assert all(torch.equal(x, y.x) for x, y in zip(again, batches))  # seeded shuffle is reproducible


def test_start_batch():
    a, b = _ballistic(10), _ballistic(10, atoms=4)
    sb = start_batch([a, b], 5, stride=2, dtype=torch.float64, centre=True)
    np.testing.assert_allclose(sb.absolute(sb.x_prev2)[:3].numpy(), a.positions[1], rtol=0, atol=1e-12)
    np.testing.assert_allclose(sb.absolute(sb.x_next)[3:].numpy(), b.positions[7], rtol=0, atol=1e-12)
    np.testing.assert_allclose(sb.x[:3].mean(0).numpy(), 0.0, atol=1e-12)
    end = start_batch(a, 9)
    assert torch.equal(end.x_next, end.x)  # no reference frame after the last one
    with pytest.raises(TrajectoryError, match="start frame 1"):
        start_batch(a, 1)
