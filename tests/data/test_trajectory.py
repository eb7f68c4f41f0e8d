import numpy as np
import pytest

from diffmd_fast.data import Trajectory, TrajectoryError



def test_properties_and_slice(traj):
    assert traj.num_frames == 12 and traj.num_atoms == 3 and traj.formula == "H2O"
    sub = traj.slice(2, 10, 2)
    assert sub.num_frames == 4 and sub.dt_fs == pytest.approx(1.0)
    np.testing.assert_array_equal(sub.positions[1], traj.positions[4])
    np.testing.assert_array_equal(sub.forces[1], traj.forces[4])
    assert sub.energies[3] == traj.energies[8]


def test_formula_is_hill_order():
    t = Trajectory(positions=np.zeros((1, 9, 3)), numbers=np.array([6, 6, 8, 1, 1, 1, 1, 1, 1]), dt_fs=0.5)
    assert t.formula == "C2H6O"


def test_nan_names_source_and_frame(make_traj):
    pos = make_traj().positions.copy()
    pos[7, 1, 2] = np.nan
    with pytest.raises(TrajectoryError, match=r"ethanol.npz: positions contain NaN at frame 7"):
        Trajectory(positions=pos, numbers=np.array([8, 1, 1]), dt_fs=0.5, name="ethanol.npz")


@pytest.mark.parametrize(
    "kwargs, msg",
    [
        (dict(positions=np.zeros((4, 3))), "shape"),
        (dict(numbers=np.array([8, 1])), "numbers must have shape"),
        (dict(energies=np.zeros(5)), "energies must have shape"),
        (dict(forces=np.zeros((4, 2, 3))), "forces must have shape"),
        (dict(dt_fs=0.0), "dt_fs"),
        (dict(numbers=np.array([0, 1, 1])), "atomic numbers"),
    ],
)
def test_inconsistent_inputs_raise(kwargs, msg):
    base = dict(positions=np.zeros((4, 3, 3)), numbers=np.array([8, 1, 1]), dt_fs=0.5, name="bad")
    with pytest.raises(TrajectoryError, match=msg):
        Trajectory(**{**base, **kwargs})


def test_empty_slice_raises(traj):
    with pytest.raises(TrajectoryError, match="selects no frames"):
        traj.slice(20)
