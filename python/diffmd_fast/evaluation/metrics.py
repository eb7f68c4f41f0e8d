"""Trajectory metrics: how close a generated rollout is to the reference, and whether it is physical.

All functions take numpy arrays of positions in Å, shaped (T, N, 3) (T frames of N atoms), and
return floats or arrays in Å unless stated. ``gen`` and ``ref`` must index the same frames: gen[t]
is the model's guess for ref[t].

Why more than ARMSE: the paper's ARMSE rewards a model that barely moves (the static frame is a
strong baseline, and the paper itself notes EGNN/GMN rollouts "vary minutely"). Bond violations,
stability time, distance-distribution divergence, RMSF and mobility show whether a rollout is a
plausible, still-moving molecule rather than a frozen or exploded one.

Decisions (not fixed by the paper):
- ARMSE is the mean over frames of the per-frame RMSD, without rigid alignment (as DESIGN.md says;
  the paper's formula is a root of a mean, which weights late, large errors more).
- Bonds are the pairs closer than 1.2 × (sum of ASE covalent radii) in the first reference frame.
- RMSF is about the trajectory's own mean structure, without alignment, so it stays consistent with
  ARMSE (reference MD has its centre of mass pinned; overall tumbling counts as fluctuation).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase.data import chemical_symbols
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import jensenshannon

from ..data.elements import BOND_SCALE, covalent_pairs

STABILITY_TOL = 0.5  # Å a bond may leave its reference range before the rollout counts as broken
MOVING_THRESHOLD = 1e-3  # Å/frame: far below thermal motion (~5e-3..2e-2 Å per 0.5 fs at 500 K)
# A reordering of same-element atoms "fits much better" when it at least halves the RMSD to the reference
# frame, removes at least 0.1 Å of it and leaves the frame within 0.3 Å of the reference frame. One frame
# of thermal motion (~0.01-0.1 Å) never brings an atom to where another of its element was (bonded H are
# >= 1.5 Å apart), so in phase only a relabelled file passes; the 0.3 Å bound keeps out frames that are
# not in phase with the reference frame, which can match up to a methyl rotation (motion, not relabelling).
PERMUTED_RATIO = 0.5
PERMUTED_MIN_GAIN = 0.1  # Å
PERMUTED_MAX_RMSD = 0.3  # Å


def _check_traj(arr: np.ndarray, what: str) -> np.ndarray:
    """Validate a (T, N, 3) finite position array and return it as float64."""
    a = np.asarray(arr, dtype=np.float64)
    if a.ndim != 3 or a.shape[2] != 3 or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"{what} must have shape (T, N, 3) with T, N >= 1, got {a.shape}")
    if not np.isfinite(a).all():
        bad = int(np.argmax(~np.isfinite(a.reshape(a.shape[0], -1)).all(axis=1)))
        raise ValueError(f"{what} contains NaN or inf (first at frame {bad})")
    return a


def _check_pair(gen: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    g, r = _check_traj(gen, "gen"), _check_traj(ref, "ref")
    if g.shape != r.shape:
        raise ValueError(f"gen and ref must have the same shape (T, N, 3), got {g.shape} and {r.shape}")
    return g, r


def per_frame_rmsd(gen: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """(T,) Å: sqrt(mean over atoms of |gen[t, i] - ref[t, i]|²), no alignment."""
    g, r = _check_pair(gen, ref)
    return np.sqrt(((g - r) ** 2).sum(axis=-1).mean(axis=-1))


def armse(gen: np.ndarray, ref: np.ndarray) -> float:
    """Å: mean over frames of the per-frame RMSD (the paper's ARMSE, no alignment)."""
    return float(per_frame_rmsd(gen, ref).mean())


def armse_static(ref: np.ndarray, start: np.ndarray | None = None) -> float:
    """Å: ARMSE of the static-frame guess, ``start`` (N, 3) (default ref[0]) repeated for every frame."""
    r = _check_traj(ref, "ref")
    s = r[0] if start is None else np.asarray(start, dtype=np.float64)
    if s.shape != r.shape[1:]:
        raise ValueError(f"start must have shape {r.shape[1:]}, got {s.shape}")
    return armse(np.broadcast_to(s, r.shape), r)


def armse_mean_structure(ref: np.ndarray) -> float:
    """Å: ARMSE of the reference's own mean structure repeated: the best any frozen guess can do."""
    r = _check_traj(ref, "ref")
    return armse(np.broadcast_to(r.mean(axis=0), r.shape), r)


def bonds_from_reference(ref: np.ndarray, numbers: np.ndarray, scale: float = BOND_SCALE) -> np.ndarray:
    """(B, 2) int64 atom pairs i < j bonded in ``ref`` (T, N, 3) Å: median distance over its frames below
    scale × (r_cov,i + r_cov,j) (data.elements.covalent_pairs; one frame is perceived as it is)."""
    r = _check_traj(ref, "ref")
    z = np.asarray(numbers)
    if z.shape != (r.shape[1],):
        raise ValueError(f"numbers must have shape ({r.shape[1]},) to match ref {r.shape}, got {z.shape}")
    return covalent_pairs(r, z, scale)


def bond_lengths(traj: np.ndarray, bonds: np.ndarray) -> np.ndarray:
    """(T, B) Å: length of every bond in every frame."""
    t = _check_traj(traj, "traj")
    b = np.asarray(bonds, dtype=np.int64).reshape(-1, 2)
    if b.size and (b.min() < 0 or b.max() >= t.shape[1]):
        raise ValueError(f"bonds index atoms outside 0..{t.shape[1] - 1}")
    return np.linalg.norm(t[:, b[:, 0]] - t[:, b[:, 1]], axis=-1)


def bond_ranges(ref: np.ndarray, bonds: np.ndarray) -> np.ndarray:
    """(B, 2) Å: min and max length of each bond over the reference."""
    lengths = bond_lengths(ref, bonds)  # (T, B)
    return np.stack([lengths.min(axis=0), lengths.max(axis=0)], axis=1)


def _excursion(gen: np.ndarray, bonds: np.ndarray, ranges: np.ndarray) -> np.ndarray:
    """(T, B) Å by which each bond lies outside its reference range (0 inside)."""
    lengths = bond_lengths(gen, bonds)
    rg = np.asarray(ranges, dtype=np.float64).reshape(-1, 2)
    if rg.shape[0] != lengths.shape[1]:
        raise ValueError(f"ranges must have one (min, max) row per bond: {lengths.shape[1]}, got {rg.shape[0]}")
    return np.maximum(rg[:, 0] - lengths, 0.0) + np.maximum(lengths - rg[:, 1], 0.0)


def bond_violation_fraction(
    gen: np.ndarray, bonds: np.ndarray, ranges: np.ndarray, tol: float = STABILITY_TOL
) -> float:
    """Fraction in [0, 1] of (frame, bond) pairs outside [min - tol, max + tol] (tol in Å)."""
    exc = _excursion(gen, bonds, ranges)
    return float((exc > tol).mean()) if exc.size else 0.0


def stability_frames(gen: np.ndarray, bonds: np.ndarray, ranges: np.ndarray, tol: float = STABILITY_TOL) -> int:
    """First frame index where any bond leaves its reference range by more than ``tol`` Å.

    Equals the number of intact frames before the first break; len(gen) if no bond ever breaks.
    """
    exc = _excursion(gen, bonds, ranges)
    broken = (exc > tol).any(axis=1) if exc.size else np.zeros(exc.shape[0], dtype=bool)
    return int(np.argmax(broken)) if broken.any() else int(exc.shape[0])


def pair_distances(traj: np.ndarray) -> np.ndarray:
    """(T, N(N-1)/2) Å: every interatomic distance i < j in every frame."""
    t = _check_traj(traj, "traj")
    i, j = np.triu_indices(t.shape[1], k=1)
    return np.linalg.norm(t[:, i] - t[:, j], axis=-1)


def distance_histograms(
    gen: np.ndarray, ref: np.ndarray, bins: int = 100, r_max: float | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normalised histograms (bins,) of all interatomic distances of gen and ref, and edges (bins+1,) Å.

    The range is [0, r_max]; r_max defaults to the largest distance in either trajectory, and a
    given r_max collects the longer distances in the last bin so no probability mass is dropped.
    """
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    dg, dr = pair_distances(gen).ravel(), pair_distances(ref).ravel()
    if dg.size == 0 or dr.size == 0:
        raise ValueError("distance histograms need at least 2 atoms")
    top = float(max(dg.max(), dr.max())) if r_max is None else float(r_max)
    if not top > 0:
        raise ValueError(f"r_max must be positive, got {top}")
    edges = np.linspace(0.0, top, bins + 1)
    hg, _ = np.histogram(np.minimum(dg, top), bins=edges)
    hr, _ = np.histogram(np.minimum(dr, top), bins=edges)
    return hg / hg.sum(), hr / hr.sum(), edges


def distance_jsd(gen: np.ndarray, ref: np.ndarray, bins: int = 100, r_max: float | None = None) -> float:
    """Jensen-Shannon divergence (base 2, in [0, 1]) of the interatomic distance histograms.

    scipy returns the JS *distance*, the square root of the divergence; we square it back.
    """
    pg, pr, _ = distance_histograms(gen, ref, bins=bins, r_max=r_max)
    return float(jensenshannon(pg, pr, base=2) ** 2)


def rmsf(traj: np.ndarray) -> np.ndarray:
    """(N,) Å: per-atom root-mean-square fluctuation about the trajectory's mean position."""
    t = _check_traj(traj, "traj")
    return np.sqrt(((t - t.mean(axis=0)) ** 2).sum(axis=-1).mean(axis=0))


def rmsf_error(gen: np.ndarray, ref: np.ndarray) -> float:
    """Å: mean over atoms of |RMSF_gen - RMSF_ref|; 0 when the rollout fluctuates like the reference."""
    g, r = _check_pair(gen, ref)
    return float(np.abs(rmsf(g) - rmsf(r)).mean())


@dataclass(frozen=True)
class Mobility:
    """How much the atoms of a trajectory move from frame to frame (Å/frame)."""

    mean_displacement: float  # mean over frames and atoms of |x(t+1) - x(t)|
    late_displacement: float  # the same over the last quarter of frame steps
    moving: bool  # late_displacement > threshold: the rollout did not freeze into a fixed point


def mobility(gen: np.ndarray, threshold: float = MOVING_THRESHOLD) -> Mobility:
    """Per-atom frame-to-frame displacement, and whether atoms still move at the end (> threshold Å/frame).

    The default threshold (1e-3 Å/frame) is ~5-20× below thermal motion at 500 K and 0.5 fs frames, so
    only a frozen rollout (the paper's SCFNN fixed point) fails it.
    """
    g = _check_traj(gen, "gen")
    if g.shape[0] < 2:
        raise ValueError(f"mobility needs at least 2 frames, got {g.shape[0]}")
    step = np.linalg.norm(np.diff(g, axis=0), axis=-1).mean(axis=1)  # (T-1,) Å/frame
    late = float(step[-max(1, len(step) // 4):].mean())
    return Mobility(float(step.mean()), late, late > threshold)


def evaluate(
    gen: np.ndarray,
    ref: np.ndarray,
    numbers: np.ndarray,
    *,
    start: np.ndarray | None = None,
    tol: float = STABILITY_TOL,
    bins: int = 100,
) -> dict[str, float | int | bool]:
    """All metrics of one rollout against its reference, as a flat JSON-able dict.

    ``start`` (N, 3) is the conditioning frame the rollout began from (default ref[0]); it defines
    the static-frame ARMSE. Bonds and their allowed ranges come from ``ref``.
    """
    g, r = _check_pair(gen, ref)
    bonds = bonds_from_reference(r, numbers)
    ranges = bond_ranges(r, bonds)
    mob = mobility(g) if g.shape[0] > 1 else None
    mob_ref = mobility(r) if r.shape[0] > 1 else None
    return {
        "frames": int(g.shape[0]),
        "armse": armse(g, r),
        "armse_static": armse_static(r, start),
        "armse_mean_structure": armse_mean_structure(r),
        "final_rmsd": float(per_frame_rmsd(g, r)[-1]),
        "stability_frames": stability_frames(g, bonds, ranges, tol),
        "bond_violation_fraction": bond_violation_fraction(g, bonds, ranges, tol),
        "distance_jsd": distance_jsd(g, r, bins=bins),
        "rmsf_error": rmsf_error(g, r),
        "mobility": mob.mean_displacement if mob else 0.0,
        "mobility_ref": mob_ref.mean_displacement if mob_ref else 0.0,
        "moving": bool(mob.moving) if mob else False,
    }


def element_order_difference(numbers: np.ndarray, ref_numbers: np.ndarray) -> str | None:
    """None when the atomic numbers (N,) equal the reference's (N,) atom by atom; else a one-line
    description of how they differ: another molecule (other counts of the elements, named by their
    Hill formulas), or the same atoms in another order (naming the first index that differs)."""
    from ase.symbols import Symbols

    z, zr = np.asarray(numbers), np.asarray(ref_numbers)
    if z.shape == zr.shape and (z == zr).all():
        return None
    formula, ref_formula = (Symbols(a).get_chemical_formula(mode="hill") for a in (z, zr))
    if z.shape != zr.shape or not (np.sort(z) == np.sort(zr)).all():
        return f"atoms {formula}, reference {ref_formula}: not the same molecule"
    i = int(np.argmax(z != zr))
    return (f"the reference's atoms ({ref_formula}) in another order: atom {i} is {chemical_symbols[z[i]]}, in the "
            f"reference {chemical_symbols[zr[i]]}")


@dataclass(frozen=True)
class AtomOrder:
    """How a frame's atom order fits a reference frame of the same element sequence (see atom_order)."""

    order: np.ndarray  # (N,) int64: frame[order] is the same-element reordering closest to the reference
    rmsd_given: float  # Å, both frames centred, atoms as given
    rmsd_reordered: float  # Å, both frames centred, atoms as frame[order]

    @property
    def permuted(self) -> bool:
        """The reordering fits much better than the given order and fits closely (PERMUTED_RATIO,
        PERMUTED_MIN_GAIN, PERMUTED_MAX_RMSD): the atoms look relabelled rather than moved."""
        return (self.rmsd_reordered <= PERMUTED_RATIO * self.rmsd_given
                and self.rmsd_given - self.rmsd_reordered >= PERMUTED_MIN_GAIN
                and self.rmsd_reordered <= PERMUTED_MAX_RMSD)

    def moves(self) -> list[tuple[int, int]]:
        """(frame atom, reference atom it matches) for every atom the reordering moves."""
        return [(int(i), j) for j, i in enumerate(self.order) if i != j]


def atom_order(frame: np.ndarray, ref_frame: np.ndarray, numbers: np.ndarray) -> AtomOrder:
    """The assignment of the atoms of ``frame`` (N, 3) Å to those of ``ref_frame`` (N, 3) Å, each atom to
    one of its own element (``numbers`` (N,), shared), that minimises the summed squared distance
    (scipy's linear_sum_assignment per element), with the RMSD as given and reordered. Both frames are
    centred first, so that a rigid shift of the whole molecule moves no atom onto another's place."""
    g = _check_traj(np.asarray(frame)[None], "frame")[0]
    r = _check_traj(np.asarray(ref_frame)[None], "ref_frame")[0]
    z = np.asarray(numbers)
    if g.shape != r.shape or z.shape != (g.shape[0],):
        raise ValueError(f"frame {g.shape}, ref_frame {r.shape} and numbers {z.shape} must describe the same N atoms")
    g, r = g - g.mean(axis=0), r - r.mean(axis=0)
    order = np.arange(len(z), dtype=np.int64)
    for element in np.unique(z):
        idx = np.flatnonzero(z == element)
        if len(idx) > 1:
            cost = ((r[idx, None, :] - g[None, idx, :]) ** 2).sum(axis=-1)  # (k, k) Å²: reference × frame atom
            rows, cols = linear_sum_assignment(cost)
            order[idx[rows]] = idx[cols]

    def rmsd(x: np.ndarray) -> float:
        return float(np.sqrt(((x - r) ** 2).sum(axis=-1).mean()))

    return AtomOrder(order, rmsd(g), rmsd(g[order]))
