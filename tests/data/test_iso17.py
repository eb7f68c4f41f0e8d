import ase.db
import numpy as np
import pytest
from ase import Atoms

from diffmd_fast.data import TrajectoryError, load_iso17, load_trajectory

C7O2H10 = np.array([6] * 7 + [8] * 2 + [1] * 10)


def _isomer(k: int, frames: int) -> np.ndarray:
    """Frames (T, 19, 3) Å of one fake isomer: a distinct random geometry plus small MD-like steps."""
    rng = np.random.default_rng(k)
    x0 = 1.3 * rng.standard_normal((19, 3))  # atoms about a bond length from their nearest neighbours, as in Å
    return x0 + 0.02 * rng.standard_normal((frames, 19, 3)).cumsum(axis=0)


def _write_iso17_db(path, frames=(6, 8, 5), label=False):
    """ISO17 layout: consecutive rows per isomer, total_energy in key_value_pairs, atomic_forces in data."""
    truth = []
    with ase.db.connect(str(path)) as db:
        for k, n in enumerate(frames):
            pos = _isomer(k, n)
            energies = -1000.0 - k - 0.01 * np.arange(n)
            forces = np.random.default_rng(100 + k).standard_normal((n, 19, 3))
            for t in range(n):
                kv = {"total_energy": float(energies[t])}
                if label:
                    kv["molecule"] = f"iso{k}"
                db.write(Atoms(numbers=C7O2H10, positions=pos[t]), key_value_pairs=kv,
                         data={"atomic_forces": forces[t]})
            truth.append((pos, energies, forces))
    return truth


def test_groups_isomers_by_geometry_jump(tmp_path):
    path = tmp_path / "reference.db"
    truth = _write_iso17_db(path)
    trajs = load_iso17(path)
    assert [t.num_frames for t in trajs] == [6, 8, 5]
    assert [t.name for t in trajs] == ["C7H10O2_0", "C7H10O2_1", "C7H10O2_2"]
    for traj, (pos, energies, forces) in zip(trajs, truth):
        np.testing.assert_allclose(traj.positions, pos)
        np.testing.assert_allclose(traj.energies, energies)
        np.testing.assert_allclose(traj.forces, forces)
        assert traj.dt_fs == 1.0 and traj.formula == "C7H10O2"


def test_labels_index_and_name_selection(tmp_path):
    path = tmp_path / "labelled.db"
    _write_iso17_db(path, label=True)
    assert [t.name for t in load_iso17(path)] == ["iso0", "iso1", "iso2"]
    assert load_iso17(path, molecule="iso1")[0].num_frames == 8
    assert load_iso17(path, molecule=-1)[0].name == "iso2"
    assert load_iso17(path, molecule="2")[0].name == "iso2"  # an index as the command line gives it
    with pytest.raises(TrajectoryError, match="no isomer named 'iso9'"):
        load_iso17(path, molecule="iso9")
    with pytest.raises(TrajectoryError, match="index 3 out of range"):
        load_iso17(path, molecule=3)


def test_fixed_block_size(tmp_path):
    path = tmp_path / "blocks.db"
    _write_iso17_db(path, frames=(4, 4, 4))
    assert [t.num_frames for t in load_iso17(path, frames_per_molecule=6)] == [6, 6]


def test_load_trajectory_on_db(tmp_path):
    multi = tmp_path / "multi.db"
    _write_iso17_db(multi)
    with pytest.raises(TrajectoryError, match="multi.db: holds 3 molecules; pick one with multi.db@INDEX or --molecule"):
        load_trajectory(multi)
    assert load_trajectory(multi, molecule=1).num_frames == 8
    single = tmp_path / "single.db"
    _write_iso17_db(single, frames=(7,))
    assert load_trajectory(single, name="one").num_frames == 7


def test_broken_db(tmp_path):
    path = tmp_path / "broken.db"
    path.write_bytes(b"not sqlite at all" * 10)
    with pytest.raises(TrajectoryError, match="broken.db"):
        load_iso17(path)


def test_a_database_molecule_has_its_time_step_checked(tmp_path):
    """A molecule's rows whose forces move it (F = -m ω² displacement) load at their own 1 fs, and are refused
    at a time step ten times too small, as any trajectory file is (data.readers.check_time_step)."""
    from ase import units

    from diffmd_fast.data.elements import ATOMIC_MASSES

    t = np.arange(60)[:, None, None]  # fs
    omega = 2 * np.pi / np.random.default_rng(3).uniform(20, 100, size=(1, 19, 3))
    x0 = _isomer(0, 1)[0]
    pos = x0 + 0.05 * np.sin(omega * t)
    forces = -np.asarray(ATOMIC_MASSES)[C7O2H10][None, :, None] * omega**2 * (pos - x0) / units.fs**2
    path = tmp_path / "springs.db"
    with ase.db.connect(str(path)) as db:
        for k in range(len(pos)):
            db.write(Atoms(numbers=C7O2H10, positions=pos[k]), key_value_pairs={"total_energy": 0.0},
                     data={"atomic_forces": forces[k]})
    assert load_trajectory(path, dt_fs=1.0).num_frames == 60
    with pytest.raises(TrajectoryError, match=r"likely (0\.99|1\.0)\d* fs apart"):
        load_trajectory(path, dt_fs=0.1)
