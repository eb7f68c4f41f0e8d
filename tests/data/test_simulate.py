"""A short real GFN2-xTB Langevin run of ethanol (~300 force evaluations, about a second)."""
import numpy as np
import pytest

from diffmd_fast.data import load_trajectory
from diffmd_fast.data.simulate import SimulationError, omp_threads, simulate

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
    with pytest.raises((ValueError, SimulationError), match="GFN2-xTB"):  # errors the CLI prints in one line
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
