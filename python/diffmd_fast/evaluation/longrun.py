"""Metrics for long generated runs (ps to ns, up to ~10^6 frames) against a reference that is not in phase.

A long DiffMD run and its GFN2-xTB reference drift apart after a few hundred fs, so frame-by-frame
errors (ARMSE) stop meaning anything. What can still be compared are the run's *distributions* and
*spectra*: how long it keeps its bonds, its pair-distance distribution h(r), its kinetic temperature and
its vibrational density of states (VDOS). None of these pairs gen[t] with ref[t]; gen and ref may have
different lengths.

Source: Fu et al. 2023, "Forces are not enough: benchmark and critical evaluation for machine learning
force fields with molecular simulations" (kyonofx/MDsim, observable.ipynb), for stability and h(r):
- stability: bonds are found in the reference (MDsim: in its first frame; here at its median, below); a
  run collapses at the first frame where any bond is more than 0.5 Å from its *mean* length over the
  reference. We report the number of frames before it (``stability_frames``) and that times the frame
  time (``stability_ps``).
- h(r): normalised histogram (density in 1/Å) of all interatomic distances, 500 bins on [0, 10] Å,
  over the stable part of the run; MAE as in MDsim (mean over bins of |Δh| × 10 Å, i.e. ∫|Δh| dr, in
  [0, 2]) and the Jensen-Shannon divergence of the bin masses (base 2, in [0, 1]).
- h(r) by bonded separation (ours): the same JSD over the pairs 1, 2, 3 and 4 or more bonds apart
  (``SEPARATIONS``: bond lengths, angles, torsions, the rest), which tells a run that stretches its
  bonds from one whose conformers differ from the reference's (1-4 distances set the torsions).

Decisions (ours, not MDsim's):
- Bonds are metrics.bonds_from_reference (1.2 × covalent radii at the median over the reference's
  frames, so a bond stretched in one hot frame still counts), the project's one bond rule, instead
  of ASE's natural_cutoffs neighbour list.
- Velocities are implied by positions, v(t+½) = (x(t+1) − x(t)) / Δt in Å/fs; for frames Δt apart this
  underestimates fast motion (a mode at frequency f is damped by sinc(π f Δt)), the same for gen and ref
  when both use the same Δt, so compare the two temperatures, not a thermostat's set point.
- Temperature uses 3N − 6 degrees of freedom (3N − 5 for a linear molecule, 1 for a diatomic) after removing the
  centre-of-mass velocity; rotation is not removed.
- VDOS: Welch's method (periodic Hann window, 50 % overlapping segments, mean removed per segment) on
  the mass-weighted, centre-of-mass-free velocities, the reference's at the generated frame time. By Wiener-Khinchin the averaged power spectrum is
  the Fourier transform of the mass-weighted velocity autocorrelation; averaging over segments makes it
  independent of phase and of the run's length. Frequencies above the Nyquist limit 1 / (2 Δt) fold back.
- Distribution metrics of the generated run use its stable part only; with no stable frame (or too few
  for a metric) the value is None (JSON null), never a number computed from a collapsed molecule.

Memory stays bounded for 10^6 frames: h(r), temperature, stability and VDOS walk the trajectory in frame
chunks and never build a (T, N, N) or full (T, N, 3) velocity array.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from ase import units
from numpy.lib.stride_tricks import sliding_window_view
from scipy.signal import get_window
from scipy.spatial.distance import jensenshannon

from ..data.elements import masses
from .metrics import STABILITY_TOL, _check_traj, bonds_from_reference

SEPARATIONS = ("1_2", "1_3", "1_4", "1_5")  # pairs 1, 2, 3 and >= 4 bonds apart (and other molecules)
HR_BINS = 500  # MDsim: 500 bins ...
HR_R_MAX = 10.0  # ... up to 10 Å
VDOS_SEGMENT = 1024  # frames per Welch segment: 0.98 THz (33 cm^-1) resolution at 0.5 fs frames
MIN_VDOS_STEPS = 16  # fewer velocities than this leave too few frequency bins to call it a spectrum
CHUNK_VALUES = 1 << 21  # floats per working chunk (16 MiB): bounds memory whatever the run length
CM1_PER_PER_FS = 1e15 / (100.0 * units._c)  # 1/fs → cm^-1: f[Hz] / c[cm/s]
STEP_TOL = 1e-3  # a frame time within this many reference steps of a whole multiple of them is that multiple


def _check_dt(dt_fs: float | None, what: str = "dt_fs") -> float:
    if dt_fs is None:
        raise ValueError(f"{what}: time-based metrics (stability_ps, temperature, VDOS) need the time between "
                         "frames in fs; none was given")
    dt = float(dt_fs)
    if not (np.isfinite(dt) and dt > 0):
        raise ValueError(f"{what} must be a positive number of fs, got {dt_fs!r}")
    return dt


def _chunk(per_frame: int) -> int:
    """Frames per working chunk when each frame costs ``per_frame`` floats."""
    return max(1, CHUNK_VALUES // max(1, per_frame))


def _unit_sum(p: np.ndarray) -> np.ndarray:
    total = p.sum()
    return p / total if total > 0 else p


# A molecule is linear when its atoms lie this close to its long axis (Å, the root mean square over the
# atoms, averaged over the frames): a linear molecule's thermal bending moves them by ~0.1 Å at 500 K
# (HCN's hydrogen ~0.2 Å, its heavy atoms a few hundredths), while a bent or branched molecule has atoms
# ~1 Å off any axis (water's hydrogens 0.6-0.8 Å, an alkane chain's ~1 Å at any length).
LINEAR_RMS_A = 0.3
LINEAR_FRAMES = 1000  # frames, evenly spaced, that is_linear averages over at most


def is_linear(pos: np.ndarray, mass: np.ndarray) -> bool:
    """Whether the molecule of positions (T, N, 3) or (N, 3) Å, masses (N,) amu, is linear at equilibrium
    (LINEAR_RMS_A, over at most LINEAR_FRAMES of its frames): every diatomic, and CO2, HCN or acetylene in
    their thermal bending."""
    x = np.asarray(pos, dtype=np.float64).reshape(-1, *np.shape(pos)[-2:])
    x = x[:: max(1, len(x) // LINEAR_FRAMES)]
    if x.shape[1] < 3:
        return True
    m = np.asarray(mass, dtype=np.float64)
    r = x - (np.einsum("n,tnc->tc", m, x) / m.sum())[:, None, :]
    axis = np.linalg.eigh(np.einsum("n,tna,tnb->tab", m, r, r))[1][..., -1]  # (T, 3) the long axis
    off = r - np.einsum("tnc,tc->tn", r, axis)[..., None] * axis[:, None, :]  # (T, N, 3) Å
    return bool(np.sqrt((off * off).sum(-1).mean(-1)).mean() < LINEAR_RMS_A)


def degrees_of_freedom(n_atoms: int, linear: bool = False) -> int:
    """The internal degrees of freedom: 3N − 6 for N ≥ 3 atoms, 3N − 5 for a linear molecule (``linear``,
    ``is_linear``) and every diatomic; a single atom has no internal motion."""
    if n_atoms < 2:
        raise ValueError(f"a kinetic temperature needs at least 2 atoms, got {n_atoms}")
    return 3 * n_atoms - 5 if linear or n_atoms == 2 else 3 * n_atoms - 6


def frequency_cm1(f_per_fs: np.ndarray | float) -> np.ndarray | float:
    """cm^-1 (wavenumber) of a frequency in 1/fs; × 1000 gives THz."""
    return np.asarray(f_per_fs) * CM1_PER_PER_FS if np.ndim(f_per_fs) else float(f_per_fs) * CM1_PER_PER_FS


def nyquist(dt_fs: float) -> tuple[float, float]:
    """(cm^-1, THz): the highest frequency frames ``dt_fs`` fs apart resolve, 1 / (2 Δt)."""
    f = 1.0 / (2.0 * _check_dt(dt_fs))
    return float(frequency_cm1(f)), 1000.0 * f


# ---------------------------------------------------------------------------------------- stability

def mean_bond_lengths(ref: np.ndarray, bonds: np.ndarray) -> np.ndarray:
    """(B,) Å: each bond's mean length over all reference frames (summed chunk by chunk)."""
    r = _check_traj(ref, "ref")
    b = np.asarray(bonds, dtype=np.int64).reshape(-1, 2)
    total = np.zeros(len(b))
    step = _chunk(3 * max(1, len(b)))
    for lo in range(0, r.shape[0], step):
        c = r[lo: lo + step]
        total += np.linalg.norm(c[:, b[:, 0]] - c[:, b[:, 1]], axis=-1).sum(axis=0)
    return total / r.shape[0]


def bond_stability_frames(gen: np.ndarray, ref: np.ndarray, numbers: np.ndarray, *, tol: float = STABILITY_TOL) -> int:
    """Frames before the first frame of ``gen`` (T, N, 3) Å where any bond is more than ``tol`` Å from its
    mean reference length (Fu et al. 2023); T if none is. Bonds come from ref (bonds_from_reference);
    gen and ref may have any lengths. 0 means the run is collapsed from its first frame."""
    g, r = _check_traj(gen, "gen"), _check_traj(ref, "ref")
    if g.shape[1:] != r.shape[1:]:
        raise ValueError(f"gen and ref must hold the same atoms, got shapes {g.shape} and {r.shape}")
    bonds = bonds_from_reference(r, numbers)
    if len(bonds) == 0:
        return int(g.shape[0])  # nothing bonded, nothing to break
    mean = mean_bond_lengths(r, bonds)
    step = _chunk(3 * len(bonds))
    for lo in range(0, g.shape[0], step):
        c = g[lo: lo + step]
        dev = np.abs(np.linalg.norm(c[:, bonds[:, 0]] - c[:, bonds[:, 1]], axis=-1) - mean)  # (chunk, B) Å
        broken = (dev > tol).any(axis=1)
        if broken.any():
            return lo + int(np.argmax(broken))  # stop early: a collapsed run need not be read to its end
    return int(g.shape[0])


# ---------------------------------------------------------------------------------------------- h(r)

def hr_histogram(traj: np.ndarray, *, bins: int = HR_BINS, r_max: float = HR_R_MAX,
                 chunk_frames: int | None = None, pairs: tuple[np.ndarray, np.ndarray] | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """h(r) (bins,) in 1/Å and its edges (bins+1,) Å: density of all pair distances i < j over all frames
    (of the pairs ``pairs`` = (i, j) index arrays (P,) only, when given).

    Normalised so Σ h Δr = 1 over [0, r_max] (numpy's ``density=True``, as MDsim); distances beyond
    r_max are left out, as in MDsim. Counts are accumulated ``chunk_frames`` frames at a time.
    """
    t = _check_traj(traj, "traj")
    if t.shape[1] < 2:
        raise ValueError(f"h(r) needs at least 2 atoms, got {t.shape[1]}")
    if bins < 1 or not (np.isfinite(r_max) and r_max > 0):
        raise ValueError(f"h(r) needs bins >= 1 and a positive r_max, got bins={bins}, r_max={r_max}")
    i, j = np.triu_indices(t.shape[1], k=1) if pairs is None else pairs
    edges = np.linspace(0.0, float(r_max), bins + 1)
    counts = np.zeros(bins, dtype=np.int64)
    step = chunk_frames or _chunk(3 * len(i))
    for lo in range(0, t.shape[0], step):
        c = t[lo: lo + step]
        counts += np.histogram(np.linalg.norm(c[:, i] - c[:, j], axis=-1), bins=edges)[0]
    if counts.sum() == 0:
        raise ValueError(f"h(r): no pair distance is below r_max = {r_max} Å")
    return counts / (counts.sum() * np.diff(edges)), edges


def hr_errors(h_gen: np.ndarray, h_ref: np.ndarray, edges: np.ndarray) -> tuple[float, float]:
    """(MAE, JSD) of two h(r) on the same ``edges`` (Å).

    MAE as MDsim: mean over bins of |h_gen − h_ref| times r_max, i.e. ∫|Δh| dr for equal bins, in [0, 2].
    JSD: Jensen-Shannon divergence (base 2, in [0, 1]) of the bin masses h Δr; scipy returns its root.
    """
    hg, hr, e = (np.asarray(a, dtype=np.float64) for a in (h_gen, h_ref, edges))
    if hg.shape != hr.shape or e.shape != (hg.shape[0] + 1,):
        raise ValueError(f"h(r) curves must share one set of edges, got {hg.shape}, {hr.shape} and edges {e.shape}")
    width = np.diff(e)
    mae = float(np.abs(hg - hr).mean() * (e[-1] - e[0]))
    jsd = float(jensenshannon(hg * width, hr * width, base=2) ** 2)
    return mae, jsd


def pair_separations(frames: np.ndarray, numbers: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{separation: (i, j) index arrays} of the atom pairs i < j of a molecule, ``frames`` (T, N, 3) or
    one frame (N, 3) Å, by how many covalent bonds (metrics.bonds_from_reference: at the median over
    the frames) apart they are: "1_2" bonded, "1_3" two bonds (an angle), "1_4" three (a torsion),
    "1_5" four or more or not connected. Empty classes are left out."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import shortest_path

    frames = np.asarray(frames, dtype=np.float64)
    frames = frames[None] if frames.ndim == 2 else frames
    n = frames.shape[1]
    bonds = bonds_from_reference(frames, np.asarray(numbers))
    adjacency = coo_matrix((np.ones(len(bonds)), (bonds[:, 0], bonds[:, 1])), shape=(n, n)).tocsr()
    hops = shortest_path(adjacency, directed=False, unweighted=True)
    i, j = np.triu_indices(n, k=1)
    h = hops[i, j]
    masks = {"1_2": h == 1, "1_3": h == 2, "1_4": h == 3, "1_5": h >= 4}  # inf (other molecules) is >= 4
    return {name: (i[m], j[m]) for name, m in masks.items() if m.any()}


def hr_jsd_by_separation(gen: np.ndarray, ref: np.ndarray, numbers: np.ndarray, *, bins: int = HR_BINS,
                         r_max: float = HR_R_MAX) -> dict[str, float | None]:
    """{"1_2", "1_3", "1_4", "1_5": h(r) JSD of the pairs that many bonds apart (pair_separations of
    ref)} of positions gen (T, N, 3) against ref (T_ref, N, 3) Å; None for a class with
    no pair, or none of its distances below r_max."""
    out: dict[str, float | None] = dict.fromkeys(SEPARATIONS)
    for name, pairs in pair_separations(_check_traj(ref, "ref"), numbers).items():
        try:
            h_ref, edges = hr_histogram(ref, bins=bins, r_max=r_max, pairs=pairs)
            h_gen, _ = hr_histogram(gen, bins=bins, r_max=r_max, pairs=pairs)
        except ValueError:  # every distance of the class beyond r_max
            continue
        out[name] = hr_errors(h_gen, h_ref, edges)[1]
    return out


# ------------------------------------------------------------------------------------- temperature

def implied_velocities(traj: np.ndarray, dt_fs: float) -> np.ndarray:
    """(T−1, N, 3) Å/fs: v(t+½) = (x(t+1) − x(t)) / Δt from positions (T, N, 3) Å frames ``dt_fs`` fs apart."""
    t = _check_traj(traj, "traj")
    return np.diff(t, axis=0) / _check_dt(dt_fs)


def remove_com_velocity(vel: np.ndarray, mass: np.ndarray) -> np.ndarray:
    """(..., N, 3): velocities minus the centre-of-mass velocity Σ m_i v_i / Σ m_i of each frame."""
    m = np.asarray(mass, dtype=np.float64)
    com = np.einsum("n,...nc->...c", m, vel) / m.sum()
    return vel - com[..., None, :]


def remove_rigid_motion(vel: np.ndarray, pos: np.ndarray, mass: np.ndarray) -> np.ndarray:
    """(..., N, 3) Å/fs: velocities (..., N, 3) minus each frame's rigid-body translation and rotation
    v_com + ω × (r − r_com), ω = I⁺ L about the centre of mass of positions ``pos`` (..., N, 3) Å, masses
    (N,) amu (I⁺ the pseudo-inverse: a linear molecule has no rotation about its axis).

    Why: a generator that removes each molecule's net angular momentum (rollout.momentum) and a
    reference that rotates freely (Langevin MD thermalises rotation) differ by 3 k_B T / 2 of rigid
    rotation, 14 % of ethanol's internal kinetic energy; temperatures over 3N − 6 degrees of freedom
    and vibrational spectra compare the internal motion of both."""
    m = np.asarray(mass, dtype=np.float64)
    v = remove_com_velocity(vel, m)
    r = pos - (np.einsum("n,...nc->...c", m, pos) / m.sum())[..., None, :]
    ang = np.einsum("n,...nc->...c", m, np.cross(r, v))  # (..., 3) angular momentum
    second = np.einsum("n,...na,...nb->...ab", m, r, r)  # (..., 3, 3)
    inertia = np.trace(second, axis1=-2, axis2=-1)[..., None, None] * np.eye(3) - second
    omega = np.einsum("...ab,...b->...a", np.linalg.pinv(inertia, rcond=1e-10), ang)
    return v - np.cross(omega[..., None, :], r)


def internal_velocities(traj: np.ndarray, mass: np.ndarray, dt_fs: float) -> np.ndarray:
    """(T−1, N, 3) Å/fs: the implied velocities of positions (T, N, 3) Å, frames ``dt_fs`` fs apart,
    without rigid-body translation and rotation (``remove_rigid_motion`` about each midpoint frame)."""
    t = _check_traj(traj, "traj")
    return remove_rigid_motion(implied_velocities(t, dt_fs), 0.5 * (t[1:] + t[:-1]), mass)


def atom_kinetic_energy(vel: np.ndarray, mass: np.ndarray) -> np.ndarray:
    """(N,) eV: each atom's kinetic energy ½ m v² summed over the frames of velocities (T, N, 3) Å/fs
    (``internal_velocities`` for temperatures of the internal motion), masses (N,) amu."""
    v = np.asarray(vel, dtype=np.float64) / units.fs  # ASE velocity units: m v² in eV
    return 0.5 * np.einsum("n,tnc->n", np.asarray(mass, dtype=np.float64), v * v)


def group_temperature(kinetic_energy: float, atom_frames: float) -> float:
    """K: 2 KE / (3 k_B n) of a group of atoms, 3 degrees of freedom each, whose kinetic energy summed
    over ``atom_frames`` atom-frames is ``kinetic_energy`` eV (atom_kinetic_energy); NaN for an empty group."""
    return float(2.0 * kinetic_energy / (3.0 * atom_frames * units.kB)) if atom_frames else float("nan")


def kinetic_temperature(vel: np.ndarray, mass: np.ndarray, linear: bool = False) -> np.ndarray:
    """(T,) K from velocities (T, N, 3) Å/fs and masses (N,) amu of a molecule, ``linear`` or not (is_linear).

    T = 2 KE / (f k_B) with KE = ½ Σ m |v − v_com|² converted to eV through ase.units (1 Å/fs is
    1 / units.fs in ASE's velocity unit, so 1 amu Å²/fs² = 103.64 eV) and f = degrees_of_freedom(N, linear).
    """
    v = np.asarray(vel, dtype=np.float64)
    m = np.asarray(mass, dtype=np.float64)
    if v.ndim != 3 or v.shape[2] != 3 or m.shape != (v.shape[1],):
        raise ValueError(f"need velocities (T, N, 3) and masses (N,), got {v.shape} and {m.shape}")
    v = remove_com_velocity(v, m) / units.fs  # ASE units: Å / (ASE time), so m v² is in eV
    ke = 0.5 * np.einsum("n,tnc->t", m, v * v)  # (T,) eV
    return 2.0 * ke / (degrees_of_freedom(v.shape[1], linear) * units.kB)


def temperature_series(traj: np.ndarray, numbers: np.ndarray, dt_fs: float | None) -> np.ndarray:
    """(T−1,) K: kinetic temperature of the internal motion (``internal_velocities``) of each implied
    velocity frame of positions (T, N, 3) Å, over 3N − 6 degrees of freedom (3N − 5 for a linear molecule)."""
    t = _check_traj(traj, "traj")
    dt = _check_dt(dt_fs)
    m = masses(numbers, t.shape[1])
    if t.shape[0] < 2:
        raise ValueError(f"a temperature needs at least 2 frames, got {t.shape[0]}")
    out = np.empty(t.shape[0] - 1)
    step = _chunk(3 * t.shape[1])
    linear = is_linear(t, m)
    for lo in range(0, t.shape[0] - 1, step):
        hi = min(lo + step, t.shape[0] - 1)
        out[lo:hi] = kinetic_temperature(internal_velocities(t[lo: hi + 1], m, dt), m, linear)
    return out


def velocity_temperatures(traj) -> np.ndarray:
    """(T,) K: the kinetic temperature of the internal motion of a Trajectory's own velocities (the
    engine's, else estimated: Trajectory.velocity_estimates), rigid-body translation and rotation
    removed, over 3N - 6 degrees of freedom (3N - 5 for a linear molecule)."""
    m = masses(traj.numbers, traj.num_atoms)
    linear = is_linear(traj.positions, m)
    return kinetic_temperature(remove_rigid_motion(traj.velocity_estimates(), traj.positions, m), m, linear)


# -------------------------------------------------------------------------------------------- VDOS

def vdos(traj: np.ndarray, numbers: np.ndarray, dt_fs: float | None, *,
         segment: int = VDOS_SEGMENT) -> tuple[np.ndarray, np.ndarray]:
    """Vibrational density of states: (frequencies (L//2+1,) cm^-1, spectrum (L//2+1,) summing to 1).

    Welch's method on the internal velocities (Å/fs; ``internal_velocities``: rigid-body translation
    and rotation removed, so a rotation-free rollout and a rotating reference compare their
    vibrations) of positions (T, N, 3) Å:
    segments of L = min(segment, T−1) velocities, 50 % overlap, periodic Hann window, mean removed;
    spectrum = Σ_i m_i Σ_xyz |FFT|², averaged over segments (the Fourier transform of the
    mass-weighted velocity autocorrelation). Bins are 1 / (L Δt) wide up to the Nyquist limit
    1 / (2 Δt). Segments are transformed a batch at a time to bound memory.
    """
    t = _check_traj(traj, "traj")
    dt = _check_dt(dt_fs)
    m = masses(numbers, t.shape[1])
    steps = t.shape[0] - 1
    L = min(int(segment), steps)
    if L < MIN_VDOS_STEPS:
        raise ValueError(f"a VDOS needs at least {MIN_VDOS_STEPS + 1} frames (and segment >= {MIN_VDOS_STEPS}), "
                         f"got {t.shape[0]} frames and segment {segment}")
    starts = np.arange(0, steps - L + 1, max(1, L // 2))
    window = get_window("hann", L)  # periodic Hann, as scipy.signal.welch uses
    power = np.zeros(L // 2 + 1)
    batch = _chunk(3 * t.shape[1] * L)
    for b in range(0, len(starts), batch):
        s = starts[b: b + batch]
        lo = int(s[0])
        v = internal_velocities(t[lo: int(s[-1]) + L + 1], m, dt)  # (frames, N, 3)
        segs = sliding_window_view(v, L, axis=0)[s - lo]  # (batch, N, 3, L)
        segs = (segs - segs.mean(axis=-1, keepdims=True)) * window
        power += np.einsum("n,bncf->f", m, np.abs(np.fft.rfft(segs, axis=-1)) ** 2)
    return frequency_cm1(np.fft.rfftfreq(L, d=dt)), _unit_sum(power)


def vdos_overlap(p: np.ndarray, q: np.ndarray) -> float:
    """Overlap in [0, 1] of two spectra on the same bins: Σ min(p̂, q̂) with p̂, q̂ normalised to sum 1.

    1 for identical shapes, 0 for spectra with no frequency in common; 0 if either spectrum is empty.
    """
    a, b = np.clip(np.asarray(p, dtype=np.float64), 0, None), np.clip(np.asarray(q, dtype=np.float64), 0, None)
    if a.shape != b.shape:
        raise ValueError(f"spectra must share their frequency bins, got {a.shape} and {b.shape}")
    if a.sum() <= 0 or b.sum() <= 0:
        return 0.0
    return float(np.minimum(a / a.sum(), b / b.sum()).sum())


def vdos_halves_overlap(traj: np.ndarray, numbers: np.ndarray, dt_fs: float | None, *,
                        segment: int = VDOS_SEGMENT) -> float:
    """The VDOS overlap of a trajectory's first half with its second (positions (T, N, 3) Å, frames
    ``dt_fs`` fs apart), Welch segments of min(``segment``, T // 2 − 1) velocities: how closely the
    trajectory's own spectrum is known. A periodogram averaged over few segments is noisy bin by bin,
    so two halves of one run overlap by less than 1 (0.75 for 3 ps of ethanol at 2 fs frames, 0.88-0.90
    for 12 ps of 16-20-atom molecules, 1024-frame segments); a model spectrum compared with the whole
    trajectory is judged against this. NaN when a half is too short for a spectrum (MIN_VDOS_STEPS)."""
    t = _check_traj(traj, "traj")
    half = t.shape[0] // 2
    seg = min(int(segment), half - 1)
    if seg < MIN_VDOS_STEPS:
        return float("nan")
    return vdos_overlap(vdos(t[:half], numbers, dt_fs, segment=seg)[1], vdos(t[half:], numbers, dt_fs, segment=seg)[1])


# ----------------------------------------------------------------------------------------- together


@dataclass
class LongRun:
    """``metrics`` (flat, JSON-able; None where a value cannot be computed) and the curves behind them."""

    metrics: dict[str, float | int | None]
    stable_frames: int  # frames of gen used for its distributions (the stable part)
    hr_edges: np.ndarray | None = None  # (bins+1,) Å
    hr: np.ndarray | None = None  # (bins,) 1/Å, generated (stable part)
    hr_ref: np.ndarray | None = None  # (bins,) 1/Å
    temperature: np.ndarray | None = None  # (stable_frames−1,) K
    temperature_ref: np.ndarray | None = None  # (T_ref−1,) K
    vdos_cm1: np.ndarray | None = None  # (F,) cm^-1
    vdos: np.ndarray | None = None  # (F,) sums to 1
    vdos_ref: np.ndarray | None = None  # (F,) sums to 1
    notes: list[str] = field(default_factory=list)


def long_run_analysis(
    gen: np.ndarray,
    ref: np.ndarray,
    numbers: np.ndarray,
    dt_fs: float | None,
    *,
    ref_dt_fs: float | None = None,
    tol: float = STABILITY_TOL,
    bins: int = HR_BINS,
    r_max: float = HR_R_MAX,
    segment: int = VDOS_SEGMENT,
) -> LongRun:
    """Stability, h(r), kinetic temperature and VDOS of a generated run ``gen`` (T, N, 3) Å, frames
    ``dt_fs`` fs apart, against a reference ``ref`` (T_ref, N, 3) Å (frames ``ref_dt_fs`` fs apart,
    default ``dt_fs``). No phase alignment: T and T_ref may differ.

    Without a time step (``dt_fs`` None: a file that does not say how far apart its frames are) the
    time-based metrics (stability_ps, temperatures, VDOS) are None and a note says why.

    The generated distributions use its stable part, frames [0, stability_frames). A reference at a finer
    step that divides ``dt_fs`` (0.5 fs frames against 2 fs ones) is taken every k-th frame for its
    temperature and VDOS, so both are computed at the same Δt; both VDOS use the same segment length and
    then share their bins, which end at the generated frames' Nyquist limit 1 / (2 Δt). Otherwise the
    reference spectrum is interpolated onto the generated bins below both Nyquist limits (with a note).
    """
    g, r = _check_traj(gen, "gen"), _check_traj(ref, "ref")
    if g.shape[1:] != r.shape[1:]:
        raise ValueError(f"gen and ref must hold the same atoms, got shapes {g.shape} and {r.shape}")
    timed = dt_fs is not None and (ref_dt_fs is not None or dt_fs is not None)
    dt = _check_dt(dt_fs) if dt_fs is not None else None
    dt_ref = _check_dt(dt if ref_dt_fs is None else ref_dt_fs, "ref_dt_fs") if timed else None
    masses(numbers, g.shape[1])  # fail on bad numbers before any long computation
    stable = bond_stability_frames(g, r, numbers, tol=tol)
    ny_cm1, ny_thz = nyquist(dt) if dt is not None else (None, None)
    out = LongRun(metrics={
        "stability_frames": stable,
        "stability_ps": stable * dt / 1000.0 if dt is not None else None,
        "stable_fraction": stable / g.shape[0],
        "h_r_mae": None, "h_r_jsd": None, **{f"h_r_jsd_{name}": None for name in SEPARATIONS},
        "temperature_mean_K": None, "temperature_std_K": None,
        "temperature_ref_mean_K": None, "temperature_ref_std_K": None,
        "vdos_overlap": None, "vdos_peak_cm1": None, "vdos_ref_peak_cm1": None,
        "vdos_resolution_cm1": None, "vdos_nyquist_cm1": ny_cm1, "vdos_nyquist_THz": ny_thz,
    }, stable_frames=stable)
    met = out.metrics
    gs = g[:stable]

    out.hr_ref, out.hr_edges = hr_histogram(r, bins=bins, r_max=r_max)
    if stable >= 1:
        out.hr, _ = hr_histogram(gs, bins=bins, r_max=r_max)
        met["h_r_mae"], met["h_r_jsd"] = hr_errors(out.hr, out.hr_ref, out.hr_edges)
        met.update({f"h_r_jsd_{k}": v for k, v in hr_jsd_by_separation(gs, r, numbers, bins=bins, r_max=r_max).items()})
    else:
        out.notes.append("no stable frame: h(r), temperature and VDOS are null")

    if not timed:
        out.notes.append("no time step: stability_ps, temperatures and VDOS are null")
        return out
    rt, dt_ref = _at_step(r, dt_ref, dt)
    if rt.shape[0] >= 2:
        out.temperature_ref = temperature_series(rt, numbers, dt_ref)
        met["temperature_ref_mean_K"] = float(out.temperature_ref.mean())
        met["temperature_ref_std_K"] = float(out.temperature_ref.std())
    if stable >= 2:
        out.temperature = temperature_series(gs, numbers, dt)
        met["temperature_mean_K"] = float(out.temperature.mean())
        met["temperature_std_K"] = float(out.temperature.std())

    _add_vdos(out, gs, rt, numbers, dt, dt_ref, segment)
    return out


def _at_step(ref: np.ndarray, ref_dt: float, dt: float) -> tuple[np.ndarray, float]:
    """(reference frames, their spacing fs): every k-th frame when ``dt`` is k × ``ref_dt`` for a whole
    k >= 1, so that the reference's implied velocities span the generated frames' Δt (the same damping
    of fast modes, the same folding above the Nyquist limit); otherwise ``ref`` as it is."""
    k = dt / ref_dt
    if round(k) >= 1 and abs(k - round(k)) <= STEP_TOL:
        return ref[:: int(round(k))], dt
    return ref, ref_dt


def _add_vdos(out: LongRun, gs: np.ndarray, rt: np.ndarray, numbers: np.ndarray, dt: float, dt_ref: float,
              segment: int) -> None:
    """The VDOS curves and metrics of the stable part ``gs`` (frames ``dt`` fs apart) against ``rt``
    (frames ``dt_ref`` fs apart), on the generated bins: none above the generated Nyquist limit."""
    met, stable = out.metrics, gs.shape[0]
    L = min(int(segment), stable - 1, rt.shape[0] - 1)
    if L < MIN_VDOS_STEPS:
        if stable >= 1:
            out.notes.append(f"stable part ({stable} frames) or reference too short for a VDOS "
                             f"(needs {MIN_VDOS_STEPS + 1} frames): vdos_overlap is null")
        return
    f_gen, p_gen = vdos(gs, numbers, dt, segment=L)
    f_ref, p_ref = vdos(rt, numbers, dt_ref, segment=L)
    if dt_ref != dt:  # different bins: put the reference on the generated ones, zero beyond its Nyquist
        p_ref = np.interp(f_gen, f_ref, p_ref, right=0.0)
        p_gen = np.where(f_gen <= f_ref[-1], p_gen, 0.0)
        out.notes.append(f"reference frames {dt_ref:g} fs apart, generated {dt:g} fs: the reference VDOS is "
                         "interpolated onto the generated bins (its fast modes are not folded alike)")
    out.vdos_cm1, out.vdos, out.vdos_ref = f_gen, _unit_sum(p_gen), _unit_sum(p_ref)
    met["vdos_overlap"] = vdos_overlap(out.vdos, out.vdos_ref)
    met["vdos_peak_cm1"] = float(f_gen[np.argmax(out.vdos)])
    met["vdos_ref_peak_cm1"] = float(f_gen[np.argmax(out.vdos_ref)])
    met["vdos_resolution_cm1"] = float(f_gen[1] - f_gen[0])


def long_run_metrics(gen: np.ndarray, ref: np.ndarray, numbers: np.ndarray, dt_fs: float | None,
                     **kwargs) -> dict[str, float | int | None]:
    """The flat dict of :func:`long_run_analysis` (same arguments): stability_frames, stability_ps,
    stable_fraction, h_r_mae, h_r_jsd, temperature_mean_K, temperature_std_K, temperature_ref_mean_K,
    temperature_ref_std_K, vdos_overlap, vdos_peak_cm1, vdos_ref_peak_cm1, vdos_resolution_cm1,
    vdos_nyquist_cm1, vdos_nyquist_THz. Units: frames, ps, 1 (fraction), K, cm^-1, THz."""
    return long_run_analysis(gen, ref, numbers, dt_fs, **kwargs).metrics
