"""DiffMDDynamics, the ASE face of the Stepper: attached observers see every interval, Trajectory
and MDLogger work as with VelocityVerlet, and the atoms carry the frames and implied velocities (a
phase-space model's carried ones)."""
import ase.io
import numpy as np
import pytest
from ase import Atoms, units
from ase.io import Trajectory
from ase.md import MDLogger
from ase.md.md import MolecularDynamics

from diffmd_fast.ase import DiffMDDynamics
from diffmd_fast.data import bundled, load_trajectory


def _ethanol() -> Atoms:
    traj = load_trajectory(bundled("ethanol"))
    return Atoms(numbers=traj.numbers, positions=traj.positions[200])


def test_diffmd_dynamics_runs_like_an_ase_integrator(tiny_run, tmp_path):
    atoms = _ethanol()
    dyn = DiffMDDynamics(atoms, checkpoint=str(tiny_run), temperature_K=500, seed=2)
    assert isinstance(dyn, MolecularDynamics) and dyn.dt == pytest.approx(0.5 * units.fs)
    seen, history = [], []
    dyn.attach(lambda: seen.append(dyn.nsteps), interval=3)
    dyn.attach(lambda: history.append((atoms.get_positions(), atoms.get_velocities())), interval=1)
    dyn.attach(Trajectory(tmp_path / "out.traj", "w", atoms).write, interval=2)
    dyn.attach(MDLogger(dyn, atoms, str(tmp_path / "md.log")), interval=1)
    dyn.run(10)
    assert seen == [0, 3, 6, 9] and dyn.nsteps == 10
    frames = ase.io.read(tmp_path / "out.traj", ":")
    assert len(frames) == 6 and np.allclose(frames[-1].positions, atoms.positions)
    for (x0, _), (x1, v1) in zip(history, history[1:]):  # implied velocity in ASE units
        assert np.allclose(v1, (x1 - x0) / (0.5 * units.fs))
    assert np.allclose(dyn.stepper.start.absolute(dyn.stepper.positions).numpy(), atoms.positions)
    log = (tmp_path / "md.log").read_text().splitlines()
    assert len(log) == 12 and "T[K]" in log[0] and all(np.isfinite(float(r.split()[-1])) for r in log[1:])


def test_velocities_on_the_atoms_start_the_run(tiny_run):
    atoms = _ethanol()
    with pytest.raises(ValueError, match="no velocities; give a temperature"):
        DiffMDDynamics(atoms, checkpoint=str(tiny_run))
    v = np.random.default_rng(0).normal(size=(9, 3)) * 0.01  # Å/fs
    atoms.set_velocities(v / units.fs)
    dyn = DiffMDDynamics(atoms, checkpoint=str(tiny_run))
    assert dyn.velocity_source == "from the structure"
    assert np.allclose(dyn.stepper.frame.velocity.numpy(), v * 0.5)  # Å per 0.5 fs frame
    with pytest.raises(ValueError, match="not trained on"):
        DiffMDDynamics(Atoms("NF3", positions=np.eye(4, 3)), checkpoint=str(tiny_run), temperature_K=300)


def test_a_phase_space_model_writes_its_carried_velocities_to_the_atoms(tiny_phase_run):
    atoms = _ethanol()
    dyn = DiffMDDynamics(atoms, checkpoint=str(tiny_phase_run), temperature_K=500, seed=3)
    assert dyn.dt == pytest.approx(1.0 * units.fs)
    dyn.run(4)
    v = atoms.get_velocities() * units.fs  # Å/fs
    assert np.allclose(v, dyn.stepper.frame.v.numpy()) and np.isfinite(v).all() and np.abs(v).max() > 1e-3
