"""The small reference trajectories shipped inside the package (diffmd_fast/bundled/*.npz).

They let tests, examples and CI train and roll out on real GFN2-xTB dynamics without network
access; scripts/make_bundled_data.sh regenerates them (commands in bundled/COMMANDS.md).
"""
from __future__ import annotations

from pathlib import Path

from .readers import load_trajectory
from .trajectory import Trajectory

BUNDLED_DIR = Path(__file__).resolve().parent.parent / "bundled"


def bundled_names() -> list[str]:
    """Names of the shipped trajectories, e.g. ``["aspirin", "c7o2h10_0", ..., "ethanol"]``."""
    return sorted(p.stem for p in BUNDLED_DIR.glob("*.npz"))


def bundled(name: str) -> Path:
    """Path of the shipped trajectory ``name`` (load it with ``load_trajectory``)."""
    path = BUNDLED_DIR / f"{name.removesuffix('.npz')}.npz"
    if not path.exists():
        raise FileNotFoundError(f"no bundled trajectory {name!r} in {BUNDLED_DIR}; available: {bundled_names()}")
    return path


def load_data(spec: str, *, dt_fs: float | None = None, molecule: int | str | None = None) -> Trajectory:
    """A trajectory from a file path, or from the name of a bundled one when no such file exists.

    ``FILE.db@M`` selects molecule ``M`` (index or name) of a database holding several (ISO17),
    like ``molecule=M``; ``dt_fs`` (fs) gives or overrides the time between frames.
    """
    path, selector = data_source(spec)
    if selector is not None and molecule is not None and str(molecule) != selector:
        raise ValueError(f"{spec}: selects molecule {selector!r} but --molecule says {molecule!r}; give one")
    return load_trajectory(path, dt_fs=dt_fs, molecule=molecule if selector is None else selector)


def data_source(spec: str) -> tuple[Path, str | None]:
    """(the file, the molecule it selects or None) that ``load_data(spec)`` reads: a file path, the
    shipped trajectory of a bundled name when no such file exists, or FILE.db@M's FILE and M. The
    file need not exist (load_trajectory says so)."""
    if spec in bundled_names() and not Path(spec).exists():
        return bundled(spec), None
    path, sep, selector = spec.rpartition("@")
    if sep and not Path(spec).exists() and Path(path).exists():
        return Path(path), selector
    return Path(spec), None
