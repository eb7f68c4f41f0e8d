import json

import ase.io
import numpy as np
import pytest
from ase import Atoms, units
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io.trajectory import Trajectory as AseTrajectory

from diffmd_fast.data import TrajectoryError, load_trajectory, save_npz, write_extxyz



def _same(a, b, with_forces=True):
    np.testing.assert_allclose(a.positions, b.positions, rtol=0, atol=1e-8)  # extxyz keeps 8 decimals
    np.testing.assert_array_equal(a.numbers, b.numbers)
    np.testing.assert_allclose(a.energies, b.energies, atol=1e-8)
    if with_forces:
        np.testing.assert_allclose(a.forces, b.forces, atol=1e-6)


def test_md17_npz(tmp_path, traj):
    path = tmp_path / "md17_water.npz"
    np.savez(path, R=traj.positions, z=traj.numbers, E=traj.energies[:, None], F=traj.forces, name="water")
    out = load_trajectory(path)
    _same(out, traj)
    assert out.dt_fs == 0.5 and "assumed" in out.provenance["dt_fs_note"] and out.name == "water"
    assert load_trajectory(path, dt_fs=2.0, name="w").dt_fs == 2.0


def test_an_assumed_time_step_is_marked_as_assumed(tmp_path, traj):
    """Readers record when the 0.5 fs they report is MD17's assumed step rather than the file's own."""
    path = tmp_path / "md17.npz"
    np.savez(path, R=traj.positions, z=traj.numbers)
    assert load_trajectory(path).provenance["dt_fs_assumed"] is True
    assert "dt_fs_assumed" not in load_trajectory(path, dt_fs=2.0).provenance
    assert "dt_fs_assumed" not in load_trajectory(save_npz(traj, tmp_path / "own.npz")).provenance
    resaved = save_npz(load_trajectory(path), tmp_path / "resaved.npz")  # still an assumption, until stated
    assert load_trajectory(resaved).provenance["dt_fs_assumed"] is True
    assert "dt_fs_assumed" not in load_trajectory(resaved, dt_fs=0.5).provenance


def test_per_frame_atomic_numbers(tmp_path, traj):
    """z stored once per frame (T, N) loads when every frame has the same atoms; otherwise the error
    gives z's shape as stored."""
    path = tmp_path / "z2d.npz"
    np.savez(path, R=traj.positions, z=np.tile(traj.numbers, (traj.num_frames, 1)))
    out = load_trajectory(path)
    np.testing.assert_array_equal(out.numbers, traj.numbers)
    assert "per frame" in out.provenance["z_note"]
    changing = np.tile(traj.numbers, (traj.num_frames, 1))
    changing[4] = [1, 8, 1]
    np.savez(path, R=traj.positions, z=changing)
    with pytest.raises(TrajectoryError, match=r"z2d.npz: z has shape \(12, 3\) .*change between frames"):
        load_trajectory(path)
    np.savez(path, R=traj.positions, z=np.tile(traj.numbers, (2, 2)))
    with pytest.raises(TrajectoryError, match=r"z has shape \(2, 6\) for positions \(12, 3, 3\)"):
        load_trajectory(path)
    np.savez(path, nuclear_charges=np.tile(traj.numbers, (traj.num_frames, 1)), coords=traj.positions)
    np.testing.assert_array_equal(load_trajectory(path).numbers, traj.numbers)


def test_rmd17_npz_restores_time_order_and_converts_kcal_per_mol(tmp_path, traj):
    perm = np.random.default_rng(1).permutation(traj.num_frames)
    path = tmp_path / "rmd17_water.npz"
    kcal = units.kcal / units.mol  # eV: revised MD17 stores kcal/mol and kcal/mol/Å
    np.savez(path, nuclear_charges=traj.numbers, coords=traj.positions[perm], energies=traj.energies[perm] / kcal,
             forces=traj.forces[perm] / kcal, old_indices=10 * perm + 100)
    out = load_trajectory(path)
    _same(out, traj)
    assert out.dt_fs == pytest.approx(5.0)  # MD17 index gap 10 x 0.5 fs


def test_own_npz_round_trip_keeps_provenance(tmp_path, traj):
    path = save_npz(traj, tmp_path / "sub" / "water.npz")
    assert path.exists() and not list(path.parent.glob(".*"))  # no temp file left behind
    out = load_trajectory(path)
    _same(out, traj)
    assert out.dt_fs == traj.dt_fs and out.provenance["test"] is True and out.name == "water"
    with np.load(path) as data:
        assert {"R", "z", "E", "F", "dt_fs"} <= set(data.files)
        assert json.loads(str(data["provenance"]))["test"] is True


def test_extxyz_round_trip(tmp_path, traj):
    path = write_extxyz(traj, tmp_path / "water.extxyz")
    frames = ase.io.read(path, index=":")
    assert len(frames) == traj.num_frames and frames[3].info["time_fs"] == pytest.approx(1.5)
    out = load_trajectory(path)
    _same(out, traj)
    assert out.dt_fs == pytest.approx(0.5)


@pytest.mark.parametrize("suffix", [".npz", ".extxyz"])
def test_velocities_round_trip(tmp_path, traj, suffix):
    """The engine's velocities (Å/fs) survive every format we write; slices keep them aligned."""
    from dataclasses import replace

    # (T, N, 3) Å/fs, as fast as the positions move (their steps are 0.01 Å per 0.5 fs): a reader refuses
    # velocities that disagree with the time step
    v = np.random.default_rng(2).standard_normal(traj.positions.shape) * 0.02
    with_v = replace(traj, velocities=v)
    path = save_npz(with_v, tmp_path / "w.npz") if suffix == ".npz" else write_extxyz(with_v, tmp_path / f"w{suffix}")
    np.testing.assert_allclose(load_trajectory(path).velocities, v, rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(with_v.slice(2, 8, 3).velocities, v[2:8:3])
    assert load_trajectory(save_npz(traj, tmp_path / "plain.npz")).velocities is None
    with pytest.raises(TrajectoryError, match="velocities must have shape"):
        replace(traj, velocities=v[:, :2])


def test_extxyz_from_raw_positions(tmp_path, traj):
    path = write_extxyz(traj.positions, tmp_path / "raw.xyz", traj.numbers, dt_fs=2.0)
    out = load_trajectory(path)
    np.testing.assert_allclose(out.positions, traj.positions, rtol=0, atol=1e-8)
    assert out.dt_fs == pytest.approx(2.0) and out.energies is None


def test_ase_traj_without_time_loads_with_unknown_dt(tmp_path, traj):
    path = tmp_path / "water.traj"
    with AseTrajectory(str(path), "w") as writer:
        for t in range(traj.num_frames):
            atoms = Atoms(numbers=traj.numbers, positions=traj.positions[t])
            atoms.calc = SinglePointCalculator(atoms, energy=traj.energies[t], forces=traj.forces[t])
            writer.write(atoms)
    out = load_trajectory(path)
    assert out.dt_fs is None and out.duration_fs is None and "--dt-fs" in out.provenance["dt_fs_note"]
    np.testing.assert_allclose(out.positions, traj.positions)
    with pytest.raises(TrajectoryError, match="water: the time between frames is not stored; pass --dt-fs"):
        out.require_dt()
    _same(load_trajectory(path, dt_fs=0.5), traj)


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        load_trajectory("/nonexistent/nope.npz")


def test_missing_key(tmp_path, traj):
    path = tmp_path / "nokey.npz"
    np.savez(path, R=traj.positions, E=traj.energies)
    with pytest.raises(TrajectoryError, match=r"nokey.npz: missing key\(s\) \['z'\]"):
        load_trajectory(path)


def test_nan_coordinates(tmp_path, traj):
    pos = traj.positions.copy()
    pos[5, 0, 0] = np.nan
    path = tmp_path / "nan.npz"
    np.savez(path, R=pos, z=traj.numbers)
    with pytest.raises(TrajectoryError, match="nan.npz: positions contain NaN at frame 5"):
        load_trajectory(path)


def test_mismatched_shapes(tmp_path, traj):
    path = tmp_path / "shapes.npz"
    np.savez(path, R=traj.positions, z=traj.numbers, F=traj.forces[:-1])
    with pytest.raises(TrajectoryError, match="shapes.npz: forces must have shape"):
        load_trajectory(path)
    np.savez(path, R=traj.positions, z=traj.numbers[:2])
    with pytest.raises(TrajectoryError, match="shapes.npz: numbers must have shape"):
        load_trajectory(path)


@pytest.mark.parametrize("fname", ["junk.npz", "junk.xyz"])
def test_unreadable_file(tmp_path, fname):
    path = tmp_path / fname
    path.write_bytes(b"\x00\x01 this is not a trajectory \xff")
    with pytest.raises(TrajectoryError, match=fname):
        load_trajectory(path)


def test_extxyz_with_changing_atoms(tmp_path, make_traj):
    a, b = make_traj(2), make_traj(2)
    path = tmp_path / "mixed.extxyz"
    ase.io.write(path, [Atoms(numbers=a.numbers, positions=a.positions[0]),
                        Atoms(numbers=[1, 1, 8], positions=b.positions[1])])
    with pytest.raises(TrajectoryError, match="mixed.extxyz: frame 1 has different atoms"):
        load_trajectory(path, dt_fs=1.0)


@pytest.mark.parametrize("factor, unit", [(1 / units.Bohr, "Bohr"), (0.1, "nm")])
def test_positions_in_another_length_unit_are_refused_in_one_line(tmp_path, factor, unit):
    """Ethanol's positions written in Bohr or nm (an npz has no unit field): every reader refuses them,
    naming the likely unit, where a model would otherwise train on 2x-long or all-bonded molecules;
    the same file in Å loads, and so does a structure of one atom."""
    from diffmd_fast.data import bundled

    ethanol = load_trajectory(bundled("ethanol"))
    np.savez(tmp_path / "eth.npz", R=ethanol.positions[:20] * factor, z=ethanol.numbers)
    with pytest.raises(TrajectoryError, match=f"eth.npz: positions: .* are they in {unit}"):
        load_trajectory(tmp_path / "eth.npz")
    ase.io.write(tmp_path / "eth.xyz", Atoms(numbers=ethanol.numbers, positions=ethanol.positions[0] * factor))
    with pytest.raises(TrajectoryError, match=f"are they in {unit}"):
        load_trajectory(tmp_path / "eth.xyz")
    np.savez(tmp_path / "ok.npz", R=ethanol.positions[:20], z=ethanol.numbers)
    assert load_trajectory(tmp_path / "ok.npz").num_frames == 20
    ase.io.write(tmp_path / "he.xyz", Atoms("He", positions=[[0.0, 0.0, 0.0]]))
    assert load_trajectory(tmp_path / "he.xyz").num_atoms == 1


def test_a_time_step_that_disagrees_with_the_stored_velocities_is_refused(tmp_path):
    """Positions and velocities of a molecule vibrating with periods of 10-100 fs, stored 0.5 fs apart: read
    at 0.5 fs they agree; read at 10 fs (a time step meant for other frames) or at 0.049 fs (an ASE time
    unit taken for a fs) they do not, and the error names the spacing the frames really have."""
    from diffmd_fast.data import load_trajectory, save_npz
    from diffmd_fast.data.trajectory import Trajectory, TrajectoryError

    rng = np.random.default_rng(0)
    t = 0.5 * np.arange(400)[:, None, None]  # fs
    omega = 2 * np.pi / rng.uniform(10, 100, size=(1, 4, 3))  # 1/fs
    amp, phase = rng.uniform(0.02, 0.1, size=(1, 4, 3)), rng.uniform(0, 2 * np.pi, size=(1, 4, 3))
    base = np.array([[0.0, 0.0, 0.0], [1.1, 0.0, 0.0], [-0.4, 1.0, 0.0], [-0.4, -0.5, 0.9]])
    x = base + amp * np.sin(omega * t + phase)
    v = amp * omega * np.cos(omega * t + phase)  # Å/fs
    path = save_npz(Trajectory(x, np.array([6, 1, 1, 1]), 0.5, velocities=v, name="vib"), tmp_path / "vib.npz")
    assert load_trajectory(path).dt_fs == 0.5
    for wrong in (10.0, 0.0491):
        with pytest.raises(TrajectoryError, match=r"likely 0\.5\d* fs apart"):
            load_trajectory(path, dt_fs=wrong)


def test_a_time_step_that_disagrees_with_the_stored_forces_is_refused(tmp_path):
    """Without velocities the forces check the time step: atoms on springs (F = -m ω² displacement, periods
    of 10-100 fs) stored 0.5 fs apart load at 0.5 fs, and are refused at 10 fs, at 0.049 fs, and at MD17's
    assumed 0.5 fs when only every 10th frame is stored; forces that do not move the frames (random ones)
    and frames out of time order cannot tell: they load, with a warning where frames that close would
    follow their forces."""
    from ase import units

    from diffmd_fast.data import load_trajectory, save_npz
    from diffmd_fast.data.elements import ATOMIC_MASSES
    from diffmd_fast.data.trajectory import Trajectory, TrajectoryError

    rng = np.random.default_rng(0)
    t = 0.5 * np.arange(400)[:, None, None]  # fs
    omega = 2 * np.pi / rng.uniform(10, 100, size=(1, 4, 3))  # 1/fs
    amp, phase = rng.uniform(0.02, 0.1, size=(1, 4, 3)), rng.uniform(0, 2 * np.pi, size=(1, 4, 3))
    base = np.array([[0.0, 0.0, 0.0], [1.1, 0.0, 0.0], [-0.4, 1.0, 0.0], [-0.4, -0.5, 0.9]])
    z = np.array([6, 1, 1, 1])
    x = base + amp * np.sin(omega * t + phase)
    mass = np.asarray(ATOMIC_MASSES)[z][None, :, None]  # amu
    f = -mass * omega**2 * (x - base) / units.fs**2  # eV/Å
    path = save_npz(Trajectory(x, z, 0.5, forces=f, name="springs"), tmp_path / "springs.npz")
    assert load_trajectory(path).dt_fs == 0.5
    for wrong in (10.0, 0.0491):
        with pytest.raises(TrajectoryError, match=r"stored forces .* likely 0\.(49|5)\d* fs apart"):
            load_trajectory(path, dt_fs=wrong)
    np.savez(tmp_path / "sparse.npz", R=x[::10], z=z, F=f[::10])  # MD17 keys: 0.5 fs assumed
    with pytest.raises(TrajectoryError, match=r"at 0\.5 fs between frames \(assumed: the file stores none\)"):
        load_trajectory(tmp_path / "sparse.npz")
    assert load_trajectory(tmp_path / "sparse.npz", dt_fs=5.0).dt_fs == 5.0
    np.savez(tmp_path / "gradients.npz", R=x, z=z, F=-f, dt_fs=0.5)
    with pytest.raises(TrajectoryError, match=r"forces point against .* gradients \(dE/dx\) stored as forces"):
        load_trajectory(tmp_path / "gradients.npz")
    np.savez(tmp_path / "random.npz", R=x, z=z, F=rng.standard_normal(x.shape))
    np.savez(tmp_path / "shuffled.npz", R=x[rng.permutation(len(x))], z=z, F=f)
    for name in ("random.npz", "shuffled.npz"):
        assert load_trajectory(tmp_path / name, dt_fs=10.0).num_frames == 400
        with pytest.warns(UserWarning, match=r"accelerations do not follow its stored forces .* out of time order"):
            load_trajectory(tmp_path / name)  # at MD17's 0.5 fs, where MD frames would follow them


def test_a_missing_file_names_a_trajectory_of_the_same_name_beside_it(tmp_path):
    """generate writes a run longer than its npz limit to .extxyz alone: asking for the npz points there."""
    water = np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]])  # Å
    write_extxyz(np.stack([water, water]), tmp_path / "run.extxyz", np.array([8, 1, 1]), dt_fs=1.0)
    with pytest.raises(FileNotFoundError, match=r"run.npz does not exist \(beside it: run.extxyz\)"):
        load_trajectory(tmp_path / "run.npz")
