"""Long-run metrics (stability, h(r), kinetic temperature, VDOS) on hand-made trajectories with values
worked out by hand."""
from __future__ import annotations

import numpy as np
import pytest

from diffmd_fast.evaluation import longrun

DT = 0.5  # fs between frames
H2 = np.array([1, 1])
C3 = np.array([6, 6, 6])
AMU_A2_PER_FS2_IN_EV = 1.66053906660e-27 * 1e10 / 1.602176634e-19  # 1 amu·(1e5 m/s)² / e = 103.6427 eV
KB_EV = 8.617333262e-5  # eV/K
C_CM_PER_S = 2.99792458e10


def _diatomic(bond: np.ndarray) -> np.ndarray:
    """(T, 2, 3) Å: two atoms on the x axis, ``bond`` (T,) Å apart, centred at the origin."""
    pos = np.zeros((len(bond), 2, 3))
    pos[:, 0, 0], pos[:, 1, 0] = -bond / 2, bond / 2
    return pos


def _oscillator(frames: int, f_per_fs: float, dt: float = DT, r0: float = 0.7, amp: float = 0.02) -> np.ndarray:
    return _diatomic(r0 + amp * np.cos(2 * np.pi * f_per_fs * dt * np.arange(frames)))


# ---------------------------------------------------------------------------------------- stability

def test_bond_jump_of_0_6_A_at_frame_k_gives_k_frames_and_k_dt():
    # H-H at 0.7 Å (bonded: 0.7 < 1.2 × 2 × 0.31); from frame 7 on it is 1.3 Å, 0.6 Å off its mean.
    ref = _diatomic(np.full(10, 0.7))
    bond = np.full(20, 0.7)
    bond[7:] = 1.3
    m = longrun.long_run_metrics(_diatomic(bond), ref, H2, DT)
    assert m["stability_frames"] == 7
    assert m["stability_ps"] == pytest.approx(7 * 0.5 / 1000)
    assert m["stable_fraction"] == pytest.approx(7 / 20)
    assert longrun.bond_stability_frames(_diatomic(np.full(20, 1.1)), ref, H2) == 20  # 0.4 Å off: stable


def test_stability_is_measured_from_the_reference_mean_not_its_range():
    # Reference bond alternates 0.6 / 0.8 Å: mean 0.7. At 1.15 Å (0.45 off the mean) the run is stable; at
    # 1.25 Å (0.55 off the mean, though only 0.45 above the reference's maximum) it has collapsed.
    ref = _diatomic(np.tile([0.6, 0.8], 5))
    assert longrun.bond_stability_frames(_diatomic(np.array([0.7, 1.15, 1.15])), ref, H2) == 3
    assert longrun.bond_stability_frames(_diatomic(np.array([0.7, 1.15, 1.25])), ref, H2) == 2


def test_collapsed_run_gives_stability_zero_and_null_distributions():
    ref = _oscillator(40, 0.05)
    gen = _diatomic(np.full(40, 2.0))  # broken from frame 0
    m = longrun.long_run_metrics(gen, ref, H2, DT)
    assert m["stability_frames"] == 0 and m["stability_ps"] == 0.0
    for key in ("h_r_mae", "h_r_jsd", "temperature_mean_K", "temperature_std_K", "vdos_overlap"):
        assert m[key] is None
    assert m["temperature_ref_mean_K"] > 0  # the reference is still described


# ---------------------------------------------------------------------------------------------- h(r)

def _triangle(side: float, frames: int = 4) -> np.ndarray:
    tri = np.array([[0.0, 0.0, 0.0], [side, 0.0, 0.0], [side / 2, side * np.sqrt(3) / 2, 0.0]])
    return np.repeat(tri[None], frames, axis=0)


def test_hr_of_fixed_equilateral_triangle_is_all_in_the_bin_of_its_side():
    # 500 bins on [0, 10] Å are 0.02 Å wide; 1.51 Å lies in bin 75 = [1.50, 1.52), so h there is 1 / 0.02.
    h, edges = longrun.hr_histogram(_triangle(1.51))
    assert edges.shape == (501,) and edges[-1] == 10.0
    assert h[75] == pytest.approx(50.0) and np.delete(h, 75).sum() == 0.0
    assert (h * np.diff(edges)).sum() == pytest.approx(1.0)


def test_hr_errors_of_identical_and_disjoint_histograms():
    h1, edges = longrun.hr_histogram(_triangle(1.51))
    h2, _ = longrun.hr_histogram(_triangle(2.51))
    assert longrun.hr_errors(h1, h1, edges) == (0.0, 0.0)
    mae, jsd = longrun.hr_errors(h1, h2, edges)
    assert mae == pytest.approx((50 + 50) / 500 * 10)  # MDsim: mean |Δh| × r_max = 2, the maximum
    assert jsd == pytest.approx(1.0)  # no bin in common


def test_hr_counted_in_chunks_equals_all_at_once():
    traj = np.random.default_rng(0).normal(scale=2.0, size=(37, 6, 3))
    whole, _ = longrun.hr_histogram(traj, chunk_frames=1000)
    np.testing.assert_array_equal(longrun.hr_histogram(traj, chunk_frames=5)[0], whole)


# ------------------------------------------------------------------------------------- temperature

def test_temperature_of_hand_built_velocities():
    # Three carbons (12.011 amu): +0.01, −0.01 and 0 Å/fs along x (no net momentum).
    # KE = 2 × ½ × 12.011 × 0.01² amu Å²/fs² = 1.2011e-3 × 103.6427 eV = 0.124486 eV; 3N − 6 = 3 degrees of
    # freedom, so T = 2 KE / (3 k_B) = 963.1 K.
    x0 = np.array([[0.0, 0.0, 0.0], [1.5, 0.0, 0.0], [0.75, 1.3, 0.0]])
    v = np.array([[0.01, 0.0, 0.0], [-0.01, 0.0, 0.0], [0.0, 0.0, 0.0]])
    expected = 2 * (12.011 * 0.01 ** 2 * AMU_A2_PER_FS2_IN_EV) / (3 * KB_EV)
    assert expected == pytest.approx(963.1, abs=0.1)
    temps = longrun.temperature_series(np.stack([x0, x0 + v * DT, x0 + 2 * v * DT]), C3, DT)
    np.testing.assert_allclose(temps, [expected, expected], rtol=1e-4)
    drift = np.array([0.02, -0.03, 0.01])  # the same motion on a moving molecule: the drift is removed
    assert longrun.temperature_series(np.stack([x0, x0 + (v + drift) * DT]), C3, DT)[0] == pytest.approx(
        expected, rel=1e-4)


def test_uniformly_translating_molecule_is_at_zero_kelvin():
    x0 = np.array([[0.0, 0.0, 0.0], [1.2, 0.0, 0.0], [0.0, 1.4, 0.3]])
    traj = x0 + 0.05 * np.arange(10)[:, None, None] * np.array([1.0, -2.0, 0.5])
    assert np.abs(longrun.temperature_series(traj, np.array([6, 8, 1]), DT)).max() < 1e-9


def test_time_based_metrics_need_a_time_step():
    traj = _oscillator(40, 0.05)
    with pytest.raises(ValueError, match="time between frames"):
        longrun.temperature_series(traj, H2, None)
    run = longrun.long_run_analysis(traj, traj, H2, None)  # no time step: the rest still works
    assert run.metrics["stability_frames"] == 40 and run.metrics["h_r_jsd"] == 0.0
    assert run.metrics["stability_ps"] is None and run.metrics["temperature_mean_K"] is None
    assert run.metrics["vdos_overlap"] is None and any("no time step" in n for n in run.notes)
    with pytest.raises(ValueError, match="positive"):
        longrun.vdos(traj, H2, 0.0)


# -------------------------------------------------------------------------------------------- VDOS

def test_nyquist_of_half_fs_frames():
    cm1, thz = longrun.nyquist(0.5)  # 1 / (2 × 0.5 fs) = 1 /fs = 1000 THz = 1e15 / c cm^-1
    assert thz == pytest.approx(1000.0) and cm1 == pytest.approx(1e15 / C_CM_PER_S)


def test_harmonic_oscillator_vdos_peaks_at_its_frequency_within_a_bin():
    f = 0.05  # 1/fs = 50 THz = 1667.8 cm^-1; bins are 1 / (1024 × 0.5 fs) = 65.1 cm^-1 wide
    traj = _oscillator(4097, f) + 0.01 * np.arange(4097)[:, None, None]  # plus a drift the COM removal drops
    freq, spec = longrun.vdos(traj, H2, DT, segment=1024)
    width = freq[1] - freq[0]
    assert width == pytest.approx(1e15 / (1024 * 0.5) / C_CM_PER_S)
    assert freq[-1] == pytest.approx(longrun.nyquist(DT)[0]) and spec.sum() == pytest.approx(1.0)
    assert abs(freq[np.argmax(spec)] - f * 1e15 / C_CM_PER_S) <= width


def test_vdos_overlap_by_hand():
    assert longrun.vdos_overlap([1, 0, 0, 1], [0, 0, 1, 1]) == pytest.approx(0.5)  # Σ min(½,0,0,½ ; 0,0,½,½)
    assert longrun.vdos_overlap([2, 0], [0, 3]) == 0.0
    assert longrun.vdos_overlap([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)


def test_vdos_halves_of_a_run_agree_for_one_oscillation_and_not_when_it_changes():
    """A run's two halves: one steady oscillation overlaps itself (~1); a run whose second half oscillates
    at another frequency does not (~0); too few frames for two spectra give NaN."""
    steady = _oscillator(4096, 0.05)
    assert longrun.vdos_halves_overlap(steady, H2, DT, segment=512) > 0.99
    changed = np.concatenate([_oscillator(2048, 0.05), _oscillator(2048, 0.02)])
    assert longrun.vdos_halves_overlap(changed, H2, DT, segment=512) < 0.1
    assert np.isnan(longrun.vdos_halves_overlap(_oscillator(30, 0.05), H2, DT))


def test_identical_runs_overlap_one_and_jsd_zero():
    traj = _oscillator(600, 0.05)
    m = longrun.long_run_metrics(traj, traj, H2, DT)
    assert m["h_r_mae"] == 0.0 and m["h_r_jsd"] == 0.0
    assert m["vdos_overlap"] == pytest.approx(1.0)
    assert m["temperature_mean_K"] == pytest.approx(m["temperature_ref_mean_K"])
    assert m["temperature_std_K"] == pytest.approx(m["temperature_ref_std_K"])
    assert m["vdos_peak_cm1"] == m["vdos_ref_peak_cm1"]
    assert m["vdos_nyquist_cm1"] == pytest.approx(longrun.nyquist(DT)[0])


def test_runs_of_other_lengths_phases_and_frame_times_compare():
    # The same oscillator, out of phase, 300 frames against 2000, then at twice the frame time.
    ref = _oscillator(2000, 0.05)
    gen = _oscillator(307, 0.05)[7:]
    m = longrun.long_run_metrics(gen, ref, H2, DT)
    assert m["stability_frames"] == 300 and m["vdos_overlap"] > 0.9
    assert m["vdos_peak_cm1"] == m["vdos_ref_peak_cm1"]
    slow = longrun.long_run_metrics(ref[::2], ref, H2, 2 * DT, ref_dt_fs=DT)
    assert slow["vdos_nyquist_THz"] == pytest.approx(500.0)
    assert abs(slow["vdos_peak_cm1"] - slow["vdos_ref_peak_cm1"]) <= slow["vdos_resolution_cm1"]


def test_a_finer_reference_is_taken_at_the_generated_frame_time():
    """A mode above the generated frames' Nyquist limit folds into their spectrum; the reference, at a 4x
    finer step, is taken every 4th frame, so that it folds alike: spectra and temperatures agree."""
    ref = _oscillator(4000, 0.3)  # 0.3 /fs, above 1 / (2 × 2 fs) = 0.25 /fs
    m = longrun.long_run_metrics(ref[::4], ref, H2, 4 * DT, ref_dt_fs=DT)
    assert m["vdos_overlap"] == pytest.approx(1.0) and m["vdos_peak_cm1"] == m["vdos_ref_peak_cm1"]
    assert m["vdos_peak_cm1"] <= m["vdos_nyquist_cm1"] == pytest.approx(longrun.nyquist(4 * DT)[0])
    assert m["temperature_ref_mean_K"] == pytest.approx(m["temperature_mean_K"])


def test_small_chunks_give_the_same_metrics(monkeypatch):
    rng = np.random.default_rng(1)
    ref = _oscillator(300, 0.05) + 0.01 * rng.normal(size=(300, 2, 3))
    gen = _oscillator(250, 0.04) + 0.01 * rng.normal(size=(250, 2, 3))
    whole = longrun.long_run_metrics(gen, ref, H2, DT, segment=64)
    monkeypatch.setattr(longrun, "CHUNK_VALUES", 7)  # a frame or one segment per chunk
    chunked = longrun.long_run_metrics(gen, ref, H2, DT, segment=64)
    assert chunked.keys() == whole.keys()
    for key, value in whole.items():
        assert chunked[key] == (None if value is None else pytest.approx(value, rel=1e-12)), key


def test_bad_input_is_a_value_error():
    traj = _oscillator(40, 0.05)
    with pytest.raises(ValueError, match="same atoms"):
        longrun.long_run_metrics(traj, np.zeros((5, 3, 3)), H2, DT)
    with pytest.raises(ValueError, match="atomic numbers"):
        longrun.long_run_metrics(traj, traj, np.array([0, 1]), DT)
    with pytest.raises(ValueError, match="at least 2 atoms"):
        longrun.degrees_of_freedom(1)
    with pytest.raises(ValueError, match="VDOS needs"):
        longrun.vdos(traj[:5], H2, DT)


def _butane_like(phi: np.ndarray) -> np.ndarray:
    """(T, 4, 3) Å: a C-C-C-C chain (1.51 Å bonds, 110° angles) at dihedral angles phi (T,) rad."""
    theta = np.radians(110.0)
    frames = []
    for p in phi:
        a, b = np.array([0.0, 0.0, 0.0]), np.array([1.51, 0.0, 0.0])
        c = b + 1.51 * np.array([-np.cos(theta), np.sin(theta), 0.0])
        bc = (c - b) / 1.51
        n = np.cross(b - a, bc)
        n /= np.linalg.norm(n)
        m = np.cross(n, bc)
        d_local = np.array([-np.cos(theta), np.sin(theta) * np.cos(p), np.sin(theta) * np.sin(p)])
        d = c + 1.51 * (d_local[0] * bc + d_local[1] * m + d_local[2] * n)
        frames.append([a, b, c, d])
    return np.asarray(frames)


def test_hr_by_separation_tells_a_conformer_change_from_a_bond_change():
    rng = np.random.default_rng(0)
    z = np.array([6, 6, 6, 6])
    ref = _butane_like(np.pi + rng.normal(0, 0.2, 400))  # trans
    gauche = _butane_like(np.radians(60) + rng.normal(0, 0.2, 400))
    by = longrun.hr_jsd_by_separation(gauche, ref, z)
    assert set(by) == set(longrun.SEPARATIONS) and by["1_5"] is None  # four atoms: nothing four bonds apart
    assert by["1_2"] < 1e-3 and by["1_3"] < 1e-3 and by["1_4"] > 0.5  # same bonds and angles, other torsion
    same = longrun.hr_jsd_by_separation(ref[::-1], ref, z)
    assert max(v for v in same.values() if v is not None) < 1e-12
    metrics = longrun.long_run_analysis(gauche, ref, z, 2.0).metrics
    assert metrics["h_r_jsd_1_4"] == pytest.approx(by["1_4"]) and metrics["h_r_jsd_1_2"] == pytest.approx(by["1_2"])
    assert {name: (i.tolist(), j.tolist()) for name, (i, j) in longrun.pair_separations(ref[0], z).items()} == {
        "1_2": ([0, 1, 2], [1, 2, 3]), "1_3": ([0, 1], [2, 3]), "1_4": ([0], [3])}


def test_a_linear_molecule_has_3n_minus_5_internal_degrees_of_freedom():
    """CO2 at rest on a line with Maxwell-Boltzmann velocities at T: translation and the two rotations
    removed, the remaining 3N − 5 = 4 degrees of freedom read T (over 3N − 6 they would read 4/3 T).
    Thermal bending keeps it linear; water and a zigzag chain of ten carbons are not."""
    from ase import units

    from diffmd_fast.data.trajectory import Trajectory

    rng = np.random.default_rng(0)
    z = np.array([8, 6, 8])
    m = longrun.masses(z, 3)
    line = np.array([[-1.16, 0.0, 0.0], [0.0, 0.0, 0.0], [1.16, 0.0, 0.0]])
    frames, temp = 4000, 500.0
    v = rng.normal(size=(frames, 3, 3)) * np.sqrt(units.kB * temp / m)[None, :, None] * units.fs  # Å/fs
    traj = Trajectory(np.repeat(line[None], frames, 0), z, 0.5, velocities=v)
    assert longrun.velocity_temperatures(traj).mean() == pytest.approx(temp, rel=0.03)
    bent = line + rng.normal(scale=0.05, size=(200, 3, 3))  # ~5° of thermal bending
    assert longrun.is_linear(bent, m) and longrun.degrees_of_freedom(3, linear=True) == 4
    water = np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]])
    assert not longrun.is_linear(water, longrun.masses(np.array([8, 1, 1]), 3))
    # an alkane chain of 20 carbons: the zigzag and the hydrogens off it
    carbons = [[1.26 * i, 0.42 * (i % 2), 0.0] for i in range(20)]
    hydrogens = [[1.26 * i, 0.42 * (i % 2) + (0.5 if i % 2 else -0.5), s * 0.9] for i in range(20) for s in (-1, 1)]
    z = np.array([6] * 20 + [1] * 40)
    assert not longrun.is_linear(np.array(carbons + hydrogens), longrun.masses(z, 60))
