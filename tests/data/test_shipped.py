import numpy as np
import pytest

from diffmd_fast.data import bundled, bundled_names, load_trajectory

EXPECTED = {  # name: (formula, temperature K, dt fs, at least this many frames)
    "ethanol": ("C2H6O", 500, 0.5, 6000),
    "aspirin": ("C9H8O4", 500, 0.5, 3000),
    "c7o2h10_0": ("C7H10O2", 100, 1.0, 1500),
    "c7o2h10_1": ("C7H10O2", 100, 1.0, 1500),
    "c7o2h10_2": ("C7H10O2", 100, 1.0, 1500),
}


def test_names():
    assert set(EXPECTED) <= set(bundled_names())
    with pytest.raises(FileNotFoundError, match="no bundled trajectory 'benzene'"):
        bundled("benzene")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bundled_file_loads_with_provenance(name):
    formula, temp, dt, frames = EXPECTED[name]
    traj = load_trajectory(bundled(name))
    assert traj.formula == formula and traj.dt_fs == dt and traj.num_frames >= frames
    prov = traj.provenance
    assert prov["method"] == "GFN2-xTB" and prov["temperature_K"] == temp and prov["timestep_fs"] == dt
    assert prov["command"].split("(")[0].endswith(".simulate") and "seed=" in prov["command"]
    # shipped files are made by the project's own command line (non-negotiable), recorded as argv
    assert "diffmd simulate" in prov["argv"].replace("/", " ") or " -m diffmd_fast.cli simulate" in prov["argv"]
    assert abs(prov["mean_temperature_K"] - temp) < 0.15 * temp
    assert traj.energies is not None and traj.forces is not None
    step = np.linalg.norm(np.diff(traj.positions[:200], axis=0), axis=-1)  # Å per frame
    assert 1e-4 < step.mean() < 0.1  # atoms keep moving, and smoothly
