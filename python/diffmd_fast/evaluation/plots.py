"""PNG figures comparing rollouts with the reference: RMSD over time, distance distributions, RMSF, and
for long runs temperature over time, h(r) and the vibrational density of states.

Why ``Figure`` + ``FigureCanvasAgg`` instead of pyplot: no global backend switch and no figure
registry, so plotting is safe in tests, in headless jobs and inside other people's notebooks.
Each function writes one PNG and returns its path; inputs are positions in Å, (T, N, 3), except the
long-run plots, which take the curves evaluation.longrun computed (a 10^6-frame run is read once).
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from . import metrics

DPI = 120


def _check_named(named: Mapping[str, np.ndarray]) -> None:
    if not named:
        raise ValueError("need at least one named trajectory to plot")


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as PNG to ``path`` (creating parent folders) and return the path."""
    out = Path(path)
    if out.suffix.lower() != ".png":
        raise ValueError(f"{out}: plots are written as PNG; give a path ending in .png")
    out.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(out, dpi=DPI)
    return out


def plot_rmsd_over_time(
    named: Mapping[str, np.ndarray], ref: np.ndarray, path: str | Path, *, dt_fs: float | None = None
) -> Path:
    """Per-frame RMSD to the reference (Å) against time for several named rollouts, ARMSE in the legend.

    With ``dt_fs`` (fs between frames) the x axis is time in fs, otherwise the frame index.
    """
    _check_named(named)
    curves = {name: metrics.per_frame_rmsd(traj, ref) for name, traj in named.items()}  # (T,) Å each
    return plot_rmsd_curves(curves, path, dt_fs=dt_fs)


def plot_rmsd_curves(curves: Mapping[str, np.ndarray], path: str | Path, *, dt_fs: float | None = None,
                     title: str | None = None) -> Path:
    """Given per-frame RMSD curves (T,) in Å (e.g. means over several rollouts), plot them against
    time with their mean (the ARMSE) in the legend."""
    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.add_subplot()
    for name, rmsd in curves.items():
        t = np.arange(1, len(rmsd) + 1) * (dt_fs if dt_fs else 1.0)
        ax.plot(t, rmsd, label=f"{name} (ARMSE {np.mean(rmsd):.3f} Å)")
    ax.set_xlabel("time (fs)" if dt_fs else "frame")
    ax.set_ylabel("RMSD to reference (Å)")
    if title:
        ax.set_title(title, fontsize="medium")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_distance_distributions(
    named: Mapping[str, np.ndarray], ref: np.ndarray, path: str | Path, *, bins: int = 100
) -> Path:
    """Histograms of all interatomic distances (Å) of each rollout over the reference's, JSD in the legend."""
    _check_named(named)
    r_max = max(float(metrics.pair_distances(t).max()) for t in [ref, *named.values()])
    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.add_subplot()
    _, p_ref, edges = metrics.distance_histograms(ref, ref, bins=bins, r_max=r_max)
    centres = 0.5 * (edges[1:] + edges[:-1])
    ax.fill_between(centres, p_ref, step="mid", color="0.8", label="reference")
    for name, traj in named.items():
        p_gen, _, _ = metrics.distance_histograms(traj, ref, bins=bins, r_max=r_max)
        jsd = metrics.distance_jsd(traj, ref, bins=bins, r_max=r_max)
        ax.step(centres, p_gen, where="mid", label=f"{name} (JSD {jsd:.3f})")
    ax.set_xlabel("interatomic distance (Å)")
    ax.set_ylabel("fraction of pairs")
    ax.legend(fontsize="small")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_rmsf(
    named: Mapping[str, np.ndarray], ref: np.ndarray, path: str | Path, *, numbers: np.ndarray | None = None
) -> Path:
    """Per-atom RMSF (Å) of each rollout next to the reference's; atoms labelled by element if given."""
    _check_named(named)
    r_ref = metrics.rmsf(ref)
    atoms = np.arange(len(r_ref))
    fig = Figure(figsize=(max(6.4, 0.3 * len(atoms)), 4.0))
    ax = fig.add_subplot()
    ax.plot(atoms, r_ref, "k-o", label="reference", markersize=4)
    for name, traj in named.items():
        ax.plot(atoms, metrics.rmsf(traj), "-o", label=name, markersize=3)
    if numbers is not None:
        from ase.data import chemical_symbols

        ax.set_xticks(atoms, [chemical_symbols[int(z)] + str(i) for i, z in enumerate(numbers)], fontsize=7)
    ax.set_xlabel("atom")
    ax.set_ylabel("RMSF (Å)")
    ax.legend(fontsize="small")
    fig.tight_layout()
    return save_figure(fig, path)


MAX_POINTS = 4000  # a 10^6-frame temperature trace is drawn as block means: more points than pixels hide nothing


def _block_means(y: np.ndarray, dt_fs: float) -> tuple[np.ndarray, np.ndarray]:
    """(times fs, values) of ``y`` averaged over blocks so at most MAX_POINTS remain."""
    k = max(1, -(-len(y) // MAX_POINTS))
    n = len(y) // k * k
    t = (np.arange(n) + 0.5) * dt_fs  # implied velocities sit half a frame in
    if k == 1:
        return t, y[:n]
    return t.reshape(-1, k).mean(axis=1), y[:n].reshape(-1, k).mean(axis=1)


def plot_temperature(named: Mapping[str, np.ndarray], ref: np.ndarray | None, path: str | Path, *,
                     dt_fs: float, ref_dt_fs: float | None = None) -> Path:
    """Kinetic temperature (K) over time (ps) of each run (T−1,) next to the reference's, means in the legend.

    Inputs are longrun.temperature_series curves (the stable part of a generated run); long traces are
    drawn as block means of at most MAX_POINTS points.
    """
    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.add_subplot()
    if ref is not None and len(ref):
        t, y = _block_means(np.asarray(ref), ref_dt_fs or dt_fs)
        ax.plot(t / 1000.0, y, color="0.5", lw=1, label=f"reference ({np.mean(ref):.0f} K)")
    for name, temps in named.items():
        if temps is not None and len(temps):
            t, y = _block_means(np.asarray(temps), dt_fs)
            ax.plot(t / 1000.0, y, lw=1, label=f"{name} ({np.mean(temps):.0f} K)")
    ax.set_xlabel("time (ps)")
    ax.set_ylabel("kinetic temperature (K)")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_hr(named: Mapping[str, np.ndarray], ref: np.ndarray, edges: np.ndarray, path: str | Path) -> Path:
    """h(r) (1/Å) against r (Å) of each run over the reference's, all on ``edges`` (bins+1,) Å."""
    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.add_subplot()
    centres = 0.5 * (edges[1:] + edges[:-1])
    ax.fill_between(centres, ref, step="mid", color="0.8", label="reference")
    for name, h in named.items():
        if h is not None:
            ax.step(centres, h, where="mid", lw=1, label=name)
    ax.set_xlabel("r (Å)")
    ax.set_ylabel("h(r) (1/Å)")
    ax.legend(fontsize="small")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_vdos(named: Mapping[str, tuple[np.ndarray, np.ndarray]], ref: tuple[np.ndarray, np.ndarray] | None,
              path: str | Path, *, nyquist_cm1: float | None = None) -> Path:
    """Vibrational density of states against wavenumber (cm^-1): (frequencies, spectrum) pairs of each run
    and of the reference. With ``nyquist_cm1`` (the generated frames' Nyquist limit, given in the title)
    no curve is drawn above it, and the x axis stops there or at 4000 cm^-1, whichever is lower."""

    def below(curve: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        f, p = np.asarray(curve[0]), np.asarray(curve[1])
        keep = f <= nyquist_cm1 * (1 + 1e-9) if nyquist_cm1 else np.ones(f.shape, dtype=bool)
        return f[keep], p[keep]

    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.add_subplot()
    if ref is not None:
        ax.fill_between(*below(ref), color="0.8", label="reference")
    for name, curve in named.items():
        if curve is not None:
            ax.plot(*below(curve), lw=1, label=name)
    top = min(4000.0, nyquist_cm1) if nyquist_cm1 else 4000.0
    ax.set_xlim(0, top)
    ax.set_xlabel("wavenumber (cm$^{-1}$)")
    ax.set_ylabel("VDOS (fraction per bin)")
    if nyquist_cm1:
        ax.set_title(f"Nyquist limit {nyquist_cm1:.0f} cm$^{{-1}}$", fontsize="medium")
    ax.legend(fontsize="small")
    fig.tight_layout()
    return save_figure(fig, path)
