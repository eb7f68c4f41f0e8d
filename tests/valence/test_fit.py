"""The temperature of the Boltzmann inversion (valence.fit._fit_temperature): the rigid rotation's energy
counted over the internal degrees of freedom, by at most ethanol's (3N - 3)/(3N - 6); a diatomic
would otherwise read 3x its thermal temperature and get bonds several times too stiff."""
from dataclasses import replace

import numpy as np
import pytest
from ase import units

from diffmd_fast.data import bundled, load_trajectory
from diffmd_fast.evaluation.longrun import implied_velocities, masses
from diffmd_fast.valence.fit import MAX_ROTATION_FACTOR, _fit_temperature


def _thermal(traj) -> float:
    """K: 2 KE / ((3N - 3) k_B) of the implied velocities, the centre of mass removed."""
    v = implied_velocities(np.asarray(traj.positions, dtype=np.float64), traj.dt_fs)  # (T-1, N, 3) Å/fs
    m = masses(traj.numbers, v.shape[1])
    v = v - (m[None, :, None] * v).sum(1, keepdims=True) / m.sum()
    ke = 0.5 * np.einsum("n,tnc->t", m, (v / units.fs) ** 2)  # eV
    return float((2.0 * ke / ((3 * v.shape[1] - 3) * units.kB)).mean())


def test_the_fit_temperature_counts_rotation_by_at_most_ethanols_factor():
    ethanol = load_trajectory(bundled("ethanol")).slice(0, 2000)
    assert _fit_temperature(ethanol) == pytest.approx(_thermal(ethanol) * 24 / 21, rel=1e-9)  # N = 9: the full factor
    hydroxyl = replace(ethanol, positions=ethanol.positions[:, [2, 8]], numbers=ethanol.numbers[[2, 8]], forces=None)
    assert list(hydroxyl.numbers) == [8, 1]
    assert _fit_temperature(hydroxyl) == pytest.approx(_thermal(hydroxyl) * MAX_ROTATION_FACTOR, rel=1e-9)  # not 3x
