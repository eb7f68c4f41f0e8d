"""Every plot writes a non-empty PNG and returns its path."""
from __future__ import annotations

import numpy as np
import pytest

from diffmd_fast.evaluation import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def trajs():
    rng = np.random.default_rng(0)
    ref = np.cumsum(0.01 * rng.normal(size=(20, 5, 3)), axis=0) + rng.normal(size=(1, 5, 3))
    named = {"static": np.repeat(ref[:1], 20, axis=0), "noisy": ref + 0.05 * rng.normal(size=ref.shape)}
    return ref, named


def _is_png(path) -> bool:
    data = path.read_bytes()
    return len(data) > 1000 and data[:8] == PNG_MAGIC


def test_rmsd_over_time(tmp_path, trajs):
    ref, named = trajs
    out = plots.plot_rmsd_over_time(named, ref, tmp_path / "sub" / "rmsd.png", dt_fs=0.5)
    assert out == tmp_path / "sub" / "rmsd.png" and _is_png(out)


def test_distance_distributions(tmp_path, trajs):
    ref, named = trajs
    assert _is_png(plots.plot_distance_distributions(named, ref, tmp_path / "dist.png", bins=30))


def test_rmsf(tmp_path, trajs):
    ref, named = trajs
    assert _is_png(plots.plot_rmsf(named, ref, tmp_path / "rmsf.png", numbers=np.array([6, 6, 8, 1, 1])))


def test_plot_errors(tmp_path, trajs):
    ref, named = trajs
    with pytest.raises(ValueError, match="at least one"):
        plots.plot_rmsf({}, ref, tmp_path / "x.png")
    with pytest.raises(ValueError, match="PNG"):
        plots.plot_rmsf(named, ref, tmp_path / "x.pdf")


def test_long_run_plots(tmp_path):
    from diffmd_fast.evaluation import longrun

    t = np.arange(400)
    ref = np.zeros((400, 2, 3))
    ref[:, 1, 0] = 0.7 + 0.02 * np.cos(2 * np.pi * 0.05 * 0.5 * t)
    gen = ref[::-1].copy()
    a = longrun.long_run_analysis(gen, ref, np.array([1, 1]), 0.5, segment=128)
    long_trace = np.random.default_rng(0).normal(500, 50, size=10_001)  # drawn as block means
    assert _is_png(plots.plot_temperature({"gen": long_trace}, a.temperature_ref, tmp_path / "t.png", dt_fs=0.5))
    assert _is_png(plots.plot_hr({"gen": a.hr}, a.hr_ref, a.hr_edges, tmp_path / "hr.png"))
    assert _is_png(plots.plot_vdos({"gen": (a.vdos_cm1, a.vdos)}, (a.vdos_cm1, a.vdos_ref), tmp_path / "v.png",
                                   nyquist_cm1=a.metrics["vdos_nyquist_cm1"]))


def test_vdos_plot_draws_nothing_above_the_nyquist_limit(tmp_path, monkeypatch):
    from matplotlib.axes import Axes

    drawn = []
    for method in ("plot", "fill_between"):
        real = getattr(Axes, method)

        def spy(self, x, *args, _real=real, **kwargs):
            drawn.append(np.asarray(x))
            return _real(self, x, *args, **kwargs)

        monkeypatch.setattr(Axes, method, spy)
    f = np.linspace(0.0, 33356.0, 513)  # a spectrum on 0.5 fs bins, drawn for 2 fs frames
    curve = (f, np.full_like(f, 1.0 / len(f)))
    assert _is_png(plots.plot_vdos({"gen": curve}, curve, tmp_path / "v.png", nyquist_cm1=8339.0))
    assert len(drawn) == 2 and all(0 < len(x) < len(f) and x.max() <= 8339.0 for x in drawn)
