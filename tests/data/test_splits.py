import numpy as np
import pytest

from diffmd_fast.data import Trajectory, TrajectoryError, drift, one_to_others_split, short_to_long_split


def test_short_to_long_blocks(make_traj):
    traj = make_traj(60)
    s = short_to_long_split(traj, train=30, val=10, test=20)
    assert (s.train.num_frames, s.val.num_frames, s.test.num_frames) == (30, 10, 20)
    np.testing.assert_array_equal(s.val.positions[0], traj.positions[30])
    np.testing.assert_array_equal(s.test.positions[-1], traj.positions[59])
    assert short_to_long_split(traj, train=30, val=0, test=5).val is None


def test_short_to_long_too_short(make_traj):
    with pytest.raises(TrajectoryError, match="needs 40000 frames .* only 12 available"):
        short_to_long_split(make_traj(12))


def test_drift_ignores_translation():
    pos = np.zeros((3, 2, 3))
    pos[:, 1, 0] = 1.0
    pos[1] += 5.0  # translate whole molecule
    pos[2, 1, 0] = 2.0  # stretch: each atom moves 0.5 Å relative to the centroid
    t = Trajectory(positions=pos, numbers=np.array([1, 1]), dt_fs=1.0)
    assert drift(t) == pytest.approx(0.5 / 3)


def test_one_to_others_holds_out_largest_drift(make_traj):
    trajs = [make_traj(50, seed=s, name=f"m{s}") for s in range(6)]
    trajs[4] = Trajectory(positions=trajs[4].positions * np.linspace(1, 2, 50)[:, None, None],
                          numbers=trajs[4].numbers, dt_fs=0.5, name="m4")
    ranked = sorted(trajs, key=drift, reverse=True)
    s = one_to_others_split(trajs, num_test=2, num_val=1)
    assert "m4" in {t.name for t in s.test} and {t.name for t in s.test} == {t.name for t in ranked[:2]}
    assert [t.name for t in s.val] == [ranked[2].name]
    assert len(s.train) == 3 and not {t.name for t in s.train} & {t.name for t in s.test + s.val}
    with pytest.raises(TrajectoryError, match="at least 6 trajectories"):
        one_to_others_split(trajs[:5], num_test=5)


def test_a_single_structure_is_no_training_data():
    import numpy as np

    from diffmd_fast.data import Trajectory
    from diffmd_fast.data.splits import short_to_long_split
    from diffmd_fast.data.trajectory import TrajectoryError

    one = Trajectory(np.zeros((1, 3, 3)), np.array([8, 1, 1]), 0.5, name="mol")
    with pytest.raises(TrajectoryError, match="mol: 1 frame: training needs a trajectory"):
        short_to_long_split(one, train=0, val=0, test=1)
