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
