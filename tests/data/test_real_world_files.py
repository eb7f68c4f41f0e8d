"""Files shaped like the ones MD engines and public data sets write: periodic cells,
stated units, time keys, far-from-origin coordinates, ISO17 databases with held-out steps."""
import ase.db
import numpy as np
import pytest
import torch
from ase import Atoms, units
from ase.io import write

from diffmd_fast.data import FrameWindows, Trajectory, TrajectoryError, load_data, load_iso17
from diffmd_fast.data import load_trajectory, make_loader, save_npz, start_batch

from conftest import WATER_X0, WATER_Z, make_traj


def test_periodic_extxyz_is_made_whole_and_continuous(tmp_path):
    """Water wrapped into a 4 Å box, split across the x = 0 face, one H crossing it mid-run."""
    box, frames = 4.0, 10
    pos = WATER_X0 - WATER_X0[1] + np.array([0.02, 2.0, 2.0])  # H1 just inside x = 0, O and H2 outside
    drift = np.zeros((frames, 3, 3))
    drift[:, 1, 0] = -0.01 * np.arange(frames)  # H1 moves -x through the face at frame 2..3
    truth = pos + drift
    images = [Atoms(numbers=WATER_Z, positions=truth[t], cell=[box] * 3, pbc=True) for t in range(frames)]
    for t, a in enumerate(images):
        a.wrap()
        a.info["time_fs"] = 0.5 * t
    path = tmp_path / "wrapped.extxyz"
    write(path, images, format="extxyz")
    raw = np.stack([a.positions for a in images])
    assert np.abs(np.diff(raw, axis=0)).max() > 3.0  # the file itself jumps by a box length

    traj = load_trajectory(path)
    assert np.abs(np.diff(traj.positions, axis=0)).max() < 0.02  # continuous in time
    bonds = np.linalg.norm(traj.positions[:, 1:] - traj.positions[:, :1], axis=-1)
    np.testing.assert_allclose(bonds, np.linalg.norm(truth[:, 1:] - truth[:, :1], axis=-1), atol=1e-9)
    shift = traj.positions - truth  # the same molecule up to one lattice translation
    np.testing.assert_allclose(shift, np.broadcast_to(shift[0, 0], shift.shape), atol=1e-9)
    assert traj.provenance["cell_A"] == np.diag([box] * 3).tolist() and traj.provenance["pbc"] == [True] * 3
    assert "made whole" in traj.provenance["pbc_note"]


def test_sgdml_units_are_converted_and_lattice_unwrapped(tmp_path):
    ref = make_traj(frames=6)
    bohr_per_A, kcal = 1 / units.Bohr, units.kcal / units.mol
    path = tmp_path / "bohr.npz"
    np.savez(path, R=ref.positions * bohr_per_A, z=ref.numbers, E=ref.energies / kcal,
             F=ref.forces / kcal / bohr_per_A, r_unit="au", e_unit="kcal/mol", lattice=np.eye(3) * 40.0)
    traj = load_trajectory(path)
    np.testing.assert_allclose(traj.positions - traj.positions[0, 0], ref.positions - ref.positions[0, 0], atol=1e-9)
    np.testing.assert_allclose(traj.energies, ref.energies, rtol=1e-12)
    np.testing.assert_allclose(traj.forces, ref.forces, rtol=1e-12)
    assert traj.provenance["units"]["r_unit"] == "au" and traj.provenance["units"]["length_factor"] == units.Bohr
    assert traj.provenance["cell_A"][0][0] == pytest.approx(40.0 * units.Bohr)
    nm = tmp_path / "nm.npz"
    np.savez(nm, R=ref.positions / 10.0, z=ref.numbers, r_unit="nm")
    np.testing.assert_allclose(load_trajectory(nm).positions, ref.positions, atol=1e-12)
    odd = tmp_path / "odd.npz"
    np.savez(odd, R=ref.positions, z=ref.numbers, r_unit="furlong")
    with pytest.raises(TrajectoryError, match="odd.npz: unknown length unit 'furlong'"):
        load_trajectory(odd)


def test_time_key_and_unknown_time_step(tmp_path):
    ref = make_traj(frames=5)
    cp2k = tmp_path / "run-pos-1.xyz"
    with open(cp2k, "w") as fh:  # CP2K's layout: " i = N, time = T (fs), E = E (Hartree)"
        for t in range(ref.num_frames):
            fh.write(f"3\n i = {t + 1:8d}, time = {0.5 * (t + 1):12.3f}, E = {-17.0:20.10f}\n")
            fh.writelines(f"  {s} {x:.10f} {y:.10f} {w:.10f}\n" for s, (x, y, w) in zip("OHH", ref.positions[t]))
    traj = load_trajectory(cp2k)
    assert traj.dt_fs == pytest.approx(0.5) and "'time'" in traj.provenance["dt_fs_note"]
    plain = tmp_path / "plain.xyz"
    write(plain, [Atoms(numbers=WATER_Z, positions=p) for p in ref.positions], format="xyz")
    unknown = load_trajectory(plain)
    assert unknown.dt_fs is None and unknown.duration_fs is None
    assert load_trajectory(plain, dt_fs=2.0).duration_fs == pytest.approx(8.0)
    back = load_trajectory(save_npz(unknown, tmp_path / "unknown.npz"))  # an unknown step stays unknown
    assert back.dt_fs is None


def test_translation_changes_nothing_the_model_sees():
    base = make_traj(frames=12)
    far = Trajectory(positions=base.positions + 1.0e5, numbers=base.numbers, dt_fs=base.dt_fs, name="far")
    for loader_batch in (next(iter(make_loader(far, batch_size=50, shuffle=False))),
                         start_batch(far, 6, dtype=torch.float32, centre=True)):
        near = (next(iter(make_loader(base, batch_size=50, shuffle=False))) if loader_batch.x.shape[0] > 3
                else start_batch(base, 6, dtype=torch.float32, centre=True))
        for got, want in [(loader_batch.x, near.x), (loader_batch.velocity, near.velocity),
                          (loader_batch.acceleration, near.acceleration)]:  # equal to float32 rounding
            torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
        assert loader_batch.origin.dtype == torch.float64
    b = start_batch(far, 6, dtype=torch.float32, centre=True)
    v_true = far.positions[6] - far.positions[5]
    a_true = far.positions[6] - 2 * far.positions[5] + far.positions[4]
    assert np.abs(b.velocity.double().numpy() - v_true).max() < 1e-5 * np.abs(v_true).max()  # float32 rounding of ~1 Å, as without the shift
    assert np.abs(b.acceleration.double().numpy() - a_true).max() < 1e-3 * np.abs(a_true).max()
    np.testing.assert_allclose(b.absolute(b.x).numpy(), far.positions[6], rtol=0, atol=1e-5)
    moved = b.to(dtype=torch.float32).advance(b.x + 0.1)  # the origin survives casts and steps
    assert moved.origin.dtype == torch.float64 and torch.equal(moved.origin, b.origin)


def _iso17_db(path, steps_by_isomer, with_step_key):
    with ase.db.connect(str(path)) as db:
        for k, steps in enumerate(steps_by_isomer):
            rng = np.random.default_rng(k)
            x0 = WATER_X0 + 5.0 * k
            for s in steps:
                kv = {"total_energy": -10.0 - 0.01 * s}
                if with_step_key:
                    kv["step"] = int(s)
                db.write(Atoms(numbers=WATER_Z, positions=x0 + 0.01 * s + 0.001 * rng.standard_normal((3, 3))),
                         key_value_pairs=kv)


def test_iso17_isomer_selection_and_gaps(tmp_path):
    kept = [0, 1, 2, 3, 5, 6, 7, 8, 9, 11]  # steps 4 and 10 held out, as in ISO17's test_within split
    stepped = tmp_path / "stepped.db"
    _iso17_db(stepped, [kept, range(10)], with_step_key=True)
    assert load_data(f"{stepped}@1").num_frames == 10
    traj = load_data(str(stepped), molecule="0")
    assert not traj.evenly_spaced and traj.frame_steps.tolist() == kept and traj.duration_fs == 11.0
    ds = FrameWindows([traj])  # windows (t-2, t-1, t, t+1) only over consecutive steps
    centres = [ds.locate(i)[1] for i in range(len(ds))]
    assert centres == [2, 6, 7]  # frames 3..6 and 6..9 straddle the held-out steps 4 and 10
    for i in range(len(ds)):
        steps = traj.frame_steps[ds.locate(i)[1] - 2: ds.locate(i)[1] + 2]
        assert (np.diff(steps) == 1).all()
    with pytest.raises(TrajectoryError, match="holds 2 molecules; pick one with stepped.db@INDEX or --molecule"):
        load_data(str(stepped))

    silent = tmp_path / "silent.db"  # rows with no time: spacing unknown, never taken as 1 fs steps
    _iso17_db(silent, [kept], with_step_key=False)
    unknown = load_iso17(silent)[0]
    assert not unknown.spacing_known and unknown.duration_fs is None and not unknown.evenly_spaced
    with pytest.raises(TrajectoryError, match="consecutive is not known"):
        FrameWindows([unknown])
    declared = load_iso17(silent, dt_fs=1.0)[0]  # the caller says the rows are consecutive
    assert declared.evenly_spaced and len(FrameWindows([declared])) == len(kept) - 3
