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


def _verlet_spring(frames=40, dt=0.5) -> Trajectory:
    """Velocity-Verlet MD of one O-H spring (k 30 eV/Å², r0 1 Å) with its forces and velocities (Å/fs)."""
    from ase import units
    from ase.data import atomic_masses

    m = atomic_masses[[8, 1]][:, None]
    x = np.array([[0.0, 0.0, 0.0], [1.08, 0.0, 0.0]])
    v = np.array([[0.001, 0.002, 0.0], [-0.01, 0.0, 0.003]])

    def force(x):
        d = x[1] - x[0]
        r = np.linalg.norm(d)
        f1 = -30.0 * (r - 1.0) * d / r
        return np.stack([-f1, f1])

    xs, vs, fs = [], [], []
    f = force(x)
    for _ in range(frames):
        xs.append(x.copy()), vs.append(v.copy()), fs.append(f.copy())
        v = v + 0.5 * dt * f / m * units.fs**2
        x = x + dt * v
        f = force(x)
        v = v + 0.5 * dt * f / m * units.fs**2
    return Trajectory(positions=np.array(xs), numbers=np.array([8, 1]), dt_fs=dt, forces=np.array(fs),
                      velocities=np.array(vs), name="spring")


def test_velocity_estimates_are_the_engines_else_read_from_the_past_frames_only():
    from dataclasses import replace

    traj = _verlet_spring()
    assert traj.velocity_estimates() is traj.velocities  # the engine's own, Å/fs
    # with forces, the velocity-Verlet identity: exact for velocity-Verlet data, frame 0 included
    np.testing.assert_allclose(replace(traj, velocities=None).velocity_estimates(), traj.velocities, rtol=0, atol=1e-12)
    for source in (replace(traj, velocities=None), replace(traj, velocities=None, forces=None)):  # only the frames asked
        np.testing.assert_array_equal(source.velocity_estimates([0, 1, 2, 17]), source.velocity_estimates()[[0, 1, 2, 17]])
    # without forces, second-order backward differences: exact for uniformly accelerated atoms, and a
    # frame's estimate never reads a later frame
    ball = _ballistic(12)
    t = np.arange(12)[:, None, None] * ball.dt_fs
    v_true = 0.1 / ball.dt_fs + 0.02 * np.arange(1, 4)[:, None] / ball.dt_fs**2 * t
    np.testing.assert_allclose(ball.velocity_estimates(), np.broadcast_to(v_true, (12, 3, 3)), rtol=0, atol=1e-12)
    moved = ball.positions.copy()
    moved[7:] += 5.0
    np.testing.assert_array_equal(replace(ball, positions=moved).velocity_estimates()[:7], ball.velocity_estimates()[:7])
    with pytest.raises(TrajectoryError, match="evenly spaced"):
        Trajectory(positions=ball.positions, numbers=ball.numbers, dt_fs=0.5,
                   frame_steps=np.r_[0:6, 8:14]).velocity_estimates()
    with pytest.raises(TrajectoryError, match="--dt-fs"):
        Trajectory(positions=ball.positions, numbers=ball.numbers, dt_fs=None).velocity_estimates()


def test_windows_with_velocities_carry_them_at_every_frame_and_collate_v_and_its_history():
    traj = _verlet_spring()
    ds = FrameWindows([traj, traj], stride=3, history=2, velocities=True)
    w = ds[4]
    k, t = ds.locate(4)
    assert w.velocities.shape == w.positions.shape == (6, 2, 3)
    np.testing.assert_array_equal(w.velocities.numpy(), traj.velocities[t - 12: t + 4: 3])
    batch = collate_windows([ds[0], ds[5]], dtype=torch.float32)
    assert batch.v.shape == batch.x.shape == (4, 3) and batch.v.dtype == torch.float32
    assert batch.v_history.shape == (4, 4, 3)
    t0 = ds.locate(0)[1]
    np.testing.assert_allclose(batch.v[:2].numpy(), traj.velocities[t0], rtol=1e-6)
    np.testing.assert_allclose(batch.v_history[-1, :2].numpy(), traj.velocities[t0 - 3], rtol=1e-6)
    assert collate_windows([FrameWindows([traj])[0]]).v is None  # only when asked
    advanced = batch.advance(batch.x, torch.zeros_like(batch.v))
    assert advanced.v_history is None and not advanced.v.any()


def test_start_batches_carry_velocities_when_the_data_can_give_them():
    traj = _verlet_spring()
    sb = start_batch(traj, 10, stride=2, dtype=torch.float64)
    np.testing.assert_array_equal(sb.v.numpy(), traj.velocities[10])
    assert start_batch(traj, 10, stride=2, velocities=False).v is None
    undated = Trajectory(positions=traj.positions, numbers=traj.numbers, dt_fs=None, name="undated")
    assert start_batch(undated, 10, stride=2).v is None  # auto: left out, not an error
    with pytest.raises(TrajectoryError, match="--dt-fs"):
        start_batch(undated, 10, stride=2, velocities=True)


def test_windows_carry_their_trajectorys_bonds_offset_to_the_batchs_atoms():
    """Every window carries its trajectory's covalent bonds (data.elements.covalent_pairs, at the median of
    its frames); collated, each molecule's bonds index its own atoms of the batch, both ways."""
    from diffmd_fast.data import load_data
    from diffmd_fast.data.elements import covalent_pairs

    eth, asp = load_data("ethanol").slice(0, 40), load_data("aspirin").slice(0, 40)
    ds = FrameWindows([eth, asp], stride=2)
    batch = collate_windows([ds[0], ds[len(ds) - 1]])
    want = [(int(i), int(j)) for i, j in covalent_pairs(eth.positions, eth.numbers)]
    want += [(int(i) + 9, int(j) + 9) for i, j in covalent_pairs(asp.positions, asp.numbers)]
    got = batch.bonds.T.tolist()
    assert sorted(map(tuple, got)) == sorted(want + [(j, i) for i, j in want])
    assert (batch.batch[batch.bonds[0]] == batch.batch[batch.bonds[1]]).all()  # never across molecules
    assert start_batch([eth, asp], 10, stride=2).bonds.shape == batch.bonds.shape


def test_force_continuations_are_the_frames_of_noiseless_md_and_drop_a_thermostats_kicks():
    """Continued by the data's own forces, Verlet MD returns its own frames; a spring kicked at every step
    (Langevin-like noise, the forces recorded along the kicked path) returns the path without the kicks
    of the frame's steps, to first order: an order of magnitude closer to the noiseless continuation."""
    from dataclasses import replace

    from ase import units

    from diffmd_fast.data.windows import force_continuations

    clean = _verlet_spring(frames=60)
    np.testing.assert_allclose(force_continuations(clean, 4)[5:], clean.positions[5:], rtol=0, atol=1e-12)
    m = np.array([15.999, 1.008])[:, None]
    rng = np.random.default_rng(0)
    x, prev, xs, fs = clean.positions[1], clean.positions[0], [clean.positions[0]], [clean.forces[0]]
    force = lambda p: (lambda d: np.stack([30.0 * (np.linalg.norm(d) - 1.0) * d / np.linalg.norm(d),
                                           -30.0 * (np.linalg.norm(d) - 1.0) * d / np.linalg.norm(d)]))(p[1] - p[0])
    kicks = 2e-4 * rng.standard_normal((60, 2, 3))  # Å per step
    for k in range(59):
        xs.append(x), fs.append(force(x))
        x, prev = 2 * x - prev + 0.25 * force(x) / m * units.fs**2 + kicks[k], x
    kicked = replace(clean, positions=np.array(xs), forces=np.array(fs), velocities=None)
    cont = force_continuations(kicked, 4)
    u = np.arange(5, 60)
    noiseless = []
    for t in u:  # the same steps from x(t-5), x(t-4) without their kicks (forces where they land)
        p, c = kicked.positions[t - 5], kicked.positions[t - 4]
        for _ in range(4):
            p, c = c, 2 * c - p + 0.25 * force(c) / m * units.fs**2
        noiseless.append(c)
    noiseless = np.array(noiseless)
    off = lambda a: np.sqrt(((a - noiseless) ** 2).sum(-1).mean())
    assert off(cont[u]) < 0.15 * off(kicked.positions[u])  # the stiff O-H spring responds to a kick within 2 fs
    windows = FrameWindows(kicked, stride=4, force_targets=True)
    t = windows.locate(3)[1]
    np.testing.assert_array_equal(windows[3].positions[-1].numpy(), cont[t + 4])
    np.testing.assert_array_equal(windows[3].positions[:-1].numpy(), kicked.positions[t - 8:t + 1:4])
    assert force_continuations(replace(kicked, forces=None), 4) is None
    assert windows.force_targeted == 1
    assert FrameWindows([kicked, replace(kicked, forces=None)], stride=4, force_targets=True).force_targeted == 1
