"""A short real GFN2-xTB Langevin run of ethanol (~300 force evaluations, about a second)."""
import numpy as np
import pytest

from diffmd_fast.data import load_trajectory
from diffmd_fast.data.simulate import omp_threads, simulate

tblite_ase = pytest.importorskip("tblite.ase")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    calls = {"n": 0}
    original = tblite_ase.TBLite.calculate

    def counting(self, *args, **kwargs):
        calls["n"] += 1
        return original(self, *args, **kwargs)

    tblite_ase.TBLite.calculate = counting
    try:
        out = tmp_path_factory.mktemp("sim") / "ethanol.npz"
        traj = simulate("CCO", temperature_K=500, timestep_fs=0.5, frames=100, save_every=2,
                        equilibration_fs=50, seed=3, out=out, progress=False)
    finally:
        tblite_ase.TBLite.calculate = original
    return traj, out, calls["n"]


def test_shapes_and_file(run):
    traj, out, _ = run
    assert traj.formula == "C2H6O" and traj.num_frames == 100 and traj.dt_fs == pytest.approx(1.0)
    back = load_trajectory(out)
    np.testing.assert_array_equal(back.positions, traj.positions)
    assert back.provenance["seed"] == 3 and back.provenance["method"] == "GFN2-xTB"
    assert "simulate('CCO'" in back.provenance["command"]


def test_one_force_call_per_step(run):
    traj, _, calls = run
    steps = 100 + (traj.num_frames - 1) * 2  # equilibration + production
    assert calls == steps + 1  # +1: the forces at the start geometry


def test_recorded_forces_belong_to_recorded_positions(run):
    from ase import Atoms

    traj, _, _ = run
    atoms = Atoms(numbers=traj.numbers, positions=traj.positions[-1])
    atoms.calc = tblite_ase.TBLite(method="GFN2-xTB", verbosity=0)
    with omp_threads(1):
        fresh = atoms.get_forces()  # eV/Å
        energy = atoms.get_potential_energy()  # eV
    # The MD's SCF restarts from the previous step's wavefunction, so agreement is ~1e-4, not exact;
    # forces of the neighbouring frame (stale cache) would be off by far more.
    np.testing.assert_allclose(fresh, traj.forces[-1], atol=1e-3)
    assert np.abs(fresh - traj.forces[-2]).max() > 1e-2
    assert energy == pytest.approx(traj.energies[-1], abs=1e-4)


def test_bonds_intact_and_temperature_plausible(run):
    traj, _, _ = run
    d = np.linalg.norm(traj.positions[:, :, None] - traj.positions[:, None], axis=-1)  # (T, N, N) Å
    bonded = (d[0] < 1.6) & ~np.eye(traj.num_atoms, dtype=bool)
    assert bonded.sum() == 2 * 8  # ethanol: 8 bonds
    assert np.abs(d[:, bonded] - d[0, bonded]).max() < 0.5
    assert np.isfinite(traj.energies).all()
    assert 150 < traj.provenance["mean_temperature_K"] < 1000


def test_bad_input():
    with pytest.raises(ValueError, match="neither an existing file nor a valid SMILES"):
        simulate("not_a_molecule((", frames=2, equilibration_fs=0, progress=False)


def test_structure_file_input(tmp_path):
    import ase.io
    from ase.build import molecule

    path = tmp_path / "water.xyz"
    ase.io.write(path, molecule("H2O"))
    traj = simulate(str(path), temperature_K=300, frames=3, equilibration_fs=1, progress=False)
    assert traj.formula == "H2O" and traj.name == "water" and traj.provenance["source_file"] == str(path)
    with pytest.raises(FileNotFoundError, match="missing.xyz"):
        simulate(tmp_path / "missing.xyz", frames=2, progress=False)
    fused = molecule("H2O")
    fused.positions[1] = fused.positions[0] + 0.05  # an H inside the O
    ase.io.write(tmp_path / "fused.xyz", fused)
    with pytest.raises(ValueError, match="atoms 0 and 1 overlap"):  # before any electronic structure, in one line
        simulate(str(tmp_path / "fused.xyz"), frames=2, equilibration_fs=0, progress=False)


def test_omp_threads_restores_runtime_setting():
    import ctypes

    try:
        lib = ctypes.CDLL("libgomp.so.1")
    except OSError:
        pytest.skip("no GNU OpenMP runtime on this platform")
    before = lib.omp_get_max_threads()
    with omp_threads(1):
        assert lib.omp_get_max_threads() == 1
    assert lib.omp_get_max_threads() == before


def test_records_the_engines_velocities(run):
    """V (Å/fs) is stored, survives the npz round trip, and matches the positions' central difference."""
    traj, out, _ = run
    assert traj.velocities.shape == traj.positions.shape
    np.testing.assert_array_equal(load_trajectory(out).velocities, traj.velocities)
    central = (traj.positions[2:] - traj.positions[:-2]) / (2 * traj.dt_fs)  # Å/fs, 1 fs apart
    err = np.abs(central - traj.velocities[1:-1]).mean() / np.abs(traj.velocities).mean()
    assert err < 0.1  # a wrong unit (ASE time vs fs: x10) or frame would be off by far more


def test_charge_and_spin_come_from_the_smiles_and_can_be_given():
    """A cation's formal charge and a radical's unpaired electron reach GFN2-xTB: the tetramethylammonium
    energy is the +1 ion's, not the neutral's (~8 eV apart); a parity that cannot be is refused."""
    from ase import Atoms

    cation = simulate("C[N+](C)(C)C", frames=1, equilibration_fs=0, progress=False)
    assert cation.provenance["charge"] == 1 and cation.provenance["multiplicity"] == 1
    neutral = Atoms(numbers=cation.numbers, positions=cation.positions[0])
    neutral.calc = tblite_ase.TBLite(method="GFN2-xTB", verbosity=0, charge=0)
    with omp_threads(1):
        assert abs(neutral.get_potential_energy() - cation.energies[0]) > 1.0
    methyl = simulate("[CH3]", frames=1, equilibration_fs=0, progress=False)
    assert methyl.provenance["charge"] == 0 and methyl.provenance["multiplicity"] == 2
    with pytest.raises(ValueError, match="does not fit 9 electrons"):
        simulate("[CH3]", frames=1, equilibration_fs=0, progress=False, multiplicity=1)


def test_a_single_atom_is_refused_in_one_line():
    with pytest.raises(ValueError, match="1 atom; MD of a molecule needs at least 2"):
        simulate("[Ar]", frames=1, equilibration_fs=0, progress=False)


def test_a_stopped_run_keeps_its_state_and_the_same_call_continues_it(tmp_path, monkeypatch):
    """Interrupted mid-run (Ctrl-C), the run leaves OUT.partial.npz; the same call continues from its step,
    with the same thermostat stream, and ends where an uninterrupted run ends (to the SCF's convergence,
    which restarts from another wavefunction), the state file removed. Other settings are refused."""
    from diffmd_fast.data import simulate as sim

    kwargs = dict(temperature_K=500, timestep_fs=0.5, frames=30, save_every=2, equilibration_fs=10, seed=5, progress=False)
    whole = simulate("CCO", out=tmp_path / "whole.npz", **kwargs)
    record, calls = sim._MDRun._record, {"n": 0}

    def interrupted(self):
        calls["n"] += 1
        if calls["n"] == 40:  # recording step 39 (equilibration: 20 steps): 10 frames stored at step 38
            raise KeyboardInterrupt
        record(self)

    monkeypatch.setattr(sim._MDRun, "_record", interrupted)
    out = tmp_path / "cut.npz"
    with pytest.raises(KeyboardInterrupt):
        simulate("CCO", out=out, **kwargs)
    monkeypatch.setattr(sim._MDRun, "_record", record)
    state = out.with_suffix(".partial.npz")
    assert state.exists() and not out.exists()
    with np.load(state) as f:
        assert int(f["step"]) == 38 and int(f["stored"]) == 10
    with pytest.raises(ValueError, match="other settings"):
        simulate("CCO", out=out, **{**kwargs, "seed": 6})
    resumed = simulate("CCO", out=out, **kwargs)
    assert not state.exists() and resumed.provenance["resumed_at_step"] == 38
    np.testing.assert_array_equal(resumed.positions[:10], whole.positions[:10])
    np.testing.assert_allclose(resumed.positions, whole.positions, atol=1e-4)


def test_a_start_structure_is_read_in_angstrom_from_any_file_or_refused_in_one_line(tmp_path):
    """A structure file in Bohr is refused before any dynamics (it would run at ~11,000 K), a trajectory
    npz gives its last frame, and a file no reader understands is a ValueError, not the reader's own type."""
    import ase.io
    from ase import Atoms

    from diffmd_fast.data import bundled
    from diffmd_fast.data.simulate import load_start

    traj = load_trajectory(bundled("ethanol"))
    ase.io.write(tmp_path / "bohr.xyz", Atoms(numbers=traj.numbers, positions=traj.positions[0] * 1.8897))
    with pytest.raises(ValueError, match="Bohr"):
        load_start(tmp_path / "bohr.xyz", 1)
    atoms, name, _ = load_start(bundled("ethanol"), 1)
    np.testing.assert_allclose(atoms.positions, traj.positions[-1])
    assert name == "ethanol" and list(atoms.numbers) == list(traj.numbers)
    (tmp_path / "junk.xyz").write_text("not a structure\n")
    with pytest.raises(ValueError, match="cannot read a structure from junk.xyz"):
        load_start(tmp_path / "junk.xyz", 1)


def test_an_npz_start_gives_its_last_frame_with_its_recorded_charge_whatever_its_time_step(tmp_path):
    """Only the start's structure is used: a trajectory whose time step its forces contradict still starts
    a simulation, with the charge and multiplicity `simulate` recorded in it (tblite sums them over the atoms)."""
    import json

    from diffmd_fast.data import bundled
    from diffmd_fast.data.simulate import load_start

    eth = load_trajectory(bundled("ethanol"))
    path = tmp_path / "sparse.npz"  # every 10th frame, 0.5 fs assumed: a trajectory load refuses it
    np.savez(path, R=eth.positions[::10], z=eth.numbers, F=eth.forces[::10],
             provenance=json.dumps({"charge": 1, "multiplicity": 2}))
    with pytest.raises(ValueError, match="fs apart"):
        load_trajectory(path)
    atoms, name, _ = load_start(path, 1)
    np.testing.assert_allclose(atoms.positions, eth.positions[::10][-1])
    assert name == "sparse" and atoms.get_initial_charges().sum() == 1 and atoms.get_initial_magnetic_moments().sum() == 1
