"""The normal-mode benchmark: its wavenumbers and mode-by-mode comparison on an analytic molecule, and
end to end on bundled ethanol against GFN2-xTB (no timings asserted)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from diffmd_fast.benchmarks import modes


def _springs_hessian(x: np.ndarray, pairs: list[tuple[int, int, float]]) -> np.ndarray:
    """(3N, 3N) eV/Å² of harmonic springs k (eV/Å²) between atom pairs at their rest lengths."""
    h = np.zeros((3 * len(x), 3 * len(x)))
    for i, j, k in pairs:
        u = (x[i] - x[j]) / np.linalg.norm(x[i] - x[j])
        block = k * np.outer(u, u)
        for a, b, s in ((i, i, 1), (j, j, 1), (i, j, -1), (j, i, -1)):
            h[3 * a:3 * a + 3, 3 * b:3 * b + 3] += s * block
    return h


def test_a_spring_has_its_textbook_wavenumber():
    """ν̃ = sqrt(k/μ) / 2πc: H-H at 36 eV/Å² (μ = 0.504 amu) is near 4,400 cm⁻¹; a negative curvature reads negative."""
    mu = 1.008 / 2
    expected = np.sqrt(36.0 * 1.602176634e-19 / 1e-20 / (mu * 1.66053906660e-27)) / (2 * np.pi * 2.99792458e10)
    assert modes.wavenumbers_cm1(np.array([36.0 / mu]))[0] == pytest.approx(expected, rel=1e-6)
    assert 4300 < expected < 4500
    assert modes.wavenumbers_cm1(np.array([-36.0 / mu]))[0] == pytest.approx(-expected, rel=1e-6)


def test_compare_reads_each_reference_mode_in_the_other_hessian():
    """A bent triatomic of three springs: against itself every mode's ratio is 1; with the two X-H
    springs 21 % stiffer, the stretches (high band) read 10 % higher, and the bend less."""
    x = np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]])
    m = np.array([16.0, 1.008, 1.008])
    ref = _springs_hessian(x, [(0, 1, 50.0), (0, 2, 50.0), (1, 2, 5.0)])
    same = modes.compare("water", ref, ref, m, "test")
    assert len(same.xtb_cm1) == 3 and same.mae_cm1 == pytest.approx(0.0, abs=1e-6)
    stiff = modes.compare("water", ref, _springs_hessian(x, [(0, 1, 60.5), (0, 2, 60.5), (1, 2, 5.0)]), m, "test")
    ratio = np.array(stiff.prior_cm1) / np.array(stiff.xtb_cm1)
    assert ratio[1:] == pytest.approx(1.1, abs=0.015)  # the two stretches: sqrt(1.21), less the H-H spring's share
    assert 1.0 < ratio[0] < 1.1


def test_a_linear_molecule_keeps_its_3n_minus_5_modes():
    """A diatomic (one spring) has one vibration, read at its own wavenumber in the same Hessian."""
    x = np.array([[0.0, 0.0, 0.0], [1.1, 0.0, 0.0]])
    h = _springs_hessian(x, [(0, 1, 40.0)])
    row = modes.compare("n2", h, h, np.array([14.007, 14.007]), "test", linear=True)
    assert len(row.xtb_cm1) == 1 and row.mae_cm1 == pytest.approx(0.0, abs=1e-6)
    assert row.xtb_cm1[0] == pytest.approx(modes.wavenumbers_cm1(np.array([40.0 / (14.007 / 2)]))[0], rel=1e-6)


def test_too_short_or_untimed_trajectories_are_refused(tmp_path):
    """One line each: a fit of too few frames, and frames with no time step (the inversion's temperature)."""
    from dataclasses import replace

    from diffmd_fast.config import Config
    from diffmd_fast.data import TrajectoryError, load_data

    cfg = Config.from_toml(None)
    eth = load_data("ethanol")
    with pytest.raises(ValueError, match="needs at least 50"):
        modes.molecule_modes("short", eth.slice(0, 20), cfg)
    with pytest.raises(TrajectoryError, match="pass --dt-fs"):
        modes.molecule_modes("untimed", replace(eth, dt_fs=None), cfg)


def test_benchmark_on_bundled_ethanol(tmp_path, capsys):
    """The force-matched prior of bundled ethanol against GFN2-xTB: 21 modes; its X-H stretches within 5 %
    (force matching fits them), and a JSON and a table row."""
    pytest.importorskip("tblite")
    out = tmp_path / "modes.json"
    (row,) = modes.main(["--molecules", "ethanol", "--json", str(out)])
    assert row.atoms == 9 and len(row.xtb_cm1) == len(row.prior_cm1) == 21 and (row.charge, row.multiplicity) == (0, 1)
    assert "force-matched" in row.fit
    stretches = [b for b in row.bands if b.lo_cm1 == 2500.0][0]
    assert stretches.modes == 6 and 0.95 < stretches.ratio < 1.05
    assert 3400 < max(row.xtb_cm1) < 3900  # the O-H stretch
    saved = json.loads(out.read_text())
    assert saved["molecules"][0]["molecule"] == "ethanol" and len(saved["molecules"][0]["bands"]) == len(row.bands)
    assert "| ethanol | 9 | force-matched" in capsys.readouterr().out
