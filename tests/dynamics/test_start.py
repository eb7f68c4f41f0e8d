"""Starting from one structure: the constant-velocity history, Maxwell-Boltzmann velocities with
zero net momentum at the target temperature, velocities read from the structure."""
import numpy as np
import pytest
import torch
from ase import Atoms, units

from diffmd_fast.evaluation.longrun import kinetic_temperature
from diffmd_fast.dynamics.start import history_from_velocities, maxwell_boltzmann_velocities, start_velocities


def test_history_is_the_constant_velocity_past_at_the_frame_time():
    rng = np.random.default_rng(0)
    x, v = rng.normal(size=(5, 3)), rng.normal(size=(5, 3)) * 0.01  # Å, Å/fs
    b = history_from_velocities(x, v, [6, 1, 1, 8, 1], frame_fs=0.5)
    assert b.num_graphs == 1 and b.z.tolist() == [6, 1, 1, 8, 1] and b.x.dtype == torch.float64
    assert torch.allclose(b.absolute(b.x), torch.from_numpy(x))  # centred in float64; origin kept
    assert torch.allclose(b.velocity, torch.from_numpy(v) * 0.5)  # Å per frame
    assert torch.allclose(b.acceleration, torch.zeros(5, 3, dtype=torch.float64), atol=1e-15)


def test_maxwell_boltzmann_has_zero_momentum_and_the_target_temperature():
    rng = np.random.default_rng(1)
    n = 3000  # a large sample: the kinetic temperature of one draw is within ~3 % of the target
    atoms = Atoms(numbers=rng.choice([1, 6, 8], size=n), positions=rng.uniform(0, 30, size=(n, 3)))
    v = maxwell_boltzmann_velocities(atoms, 500.0, seed=3)  # Å/fs
    m = atoms.get_masses()[:, None]
    assert np.abs((m * v).sum(0)).max() < 1e-9
    r = atoms.positions - atoms.get_center_of_mass()
    assert np.abs((m * np.cross(r, v)).sum(0)).max() < 1e-7
    t = kinetic_temperature(v[None], atoms.get_masses())  # (1,) K, 3n - 6 degrees of freedom
    assert abs(float(t[0]) - 500.0) < 25.0
    assert np.array_equal(v, maxwell_boltzmann_velocities(atoms, 500.0, seed=3))  # seeded
    assert not atoms.has("momenta")  # the structure is not modified


def test_velocities_come_from_the_structure_when_it_has_them():
    atoms = Atoms("CO", positions=[[0, 0, 0], [1.13, 0, 0]])
    with pytest.raises(ValueError, match="no velocities; give a temperature"):
        start_velocities(atoms, None, seed=1)
    atoms.set_velocities(np.array([[0.01, 0, 0], [-0.01, 0, 0]]) / units.fs)  # 0.01 Å/fs
    v, source = start_velocities(atoms, 300.0, seed=1)
    assert np.allclose(v, [[0.01, 0, 0], [-0.01, 0, 0]]) and source == "from the structure"
