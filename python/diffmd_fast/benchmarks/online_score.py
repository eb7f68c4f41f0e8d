"""Scoring B rollouts of one molecule as they run, for ``bench stability`` (benchmarks/stability.py): MDsim
stability, h(r) by bonded separation, kinetic temperatures of the whole molecule, its hydrogens and its
heavy atoms, and the VDOS of the first VDOS_FRAMES frames, with the definitions of evaluation/longrun.py;
and the reference's own group temperatures with their block standard errors."""
from __future__ import annotations

import numpy as np
import torch

VDOS_FRAMES = 4096  # frames of each rollout kept for its spectrum: 4 Welch segments, 8 ps at 2 fs frames


def vdos_segment(window_steps: int, reference_frames: int) -> int:
    """Welch segment (velocities) of the spectra a cell's VDOS overlap compares: rollouts of
    ``window_steps`` velocities kept, a reference of ``reference_frames`` frames at their stride."""
    from ..evaluation.longrun import VDOS_SEGMENT

    return min(VDOS_SEGMENT, window_steps, reference_frames - 1)


def reference_vdos_halves(reference: np.ndarray, numbers: np.ndarray, stride: int, frame_fs: float,
                          window_steps: int) -> float:
    """The VDOS overlap of the reference's two halves, positions (T, n, 3) Å taken every ``stride``-th
    frame, ``frame_fs`` fs apart, at the Welch segment of a cell whose rollouts kept ``window_steps``
    velocities (vdos_segment; at most half the reference's frames): how well the spectrum the cell
    compares with is known."""
    from ..evaluation.longrun import vdos_halves_overlap

    ref_frames = reference[::stride]
    return vdos_halves_overlap(ref_frames, numbers, frame_fs, segment=vdos_segment(window_steps, len(ref_frames)))


def reference_hr_halves(reference: np.ndarray) -> float:
    """The h(r) JSD (evaluation.longrun.hr_errors) of the reference's first half, positions (T, n, 3) Å,
    against its second: how closely the reference knows the h(r) a cell's JSD compares with. Near 0
    (< 0.001) for a rigid molecule over 12 ps; a flexible chain whose conformers change a few times in the
    run reads several thousandths. NaN for a reference of fewer than 2 frames."""
    from ..evaluation.longrun import hr_errors, hr_histogram

    half = reference.shape[0] // 2
    if half < 1:
        return float("nan")
    first, edges = hr_histogram(reference[:half])
    return hr_errors(first, hr_histogram(reference[half:])[0], edges)[1]


REF_BLOCKS = 10  # blocks of the reference run for the standard error of its group temperatures


def reference_group_temperatures(reference: np.ndarray, numbers: np.ndarray, stride: int,
                                 frame_fs: float) -> tuple[float, float, float, float]:
    """(T H, T heavy, their standard errors) in K of the reference positions (T, n, 3) Å taken every
    ``stride``-th frame, ``frame_fs`` fs apart: internal velocities (evaluation.longrun), 3 degrees of
    freedom per atom; the errors from REF_BLOCKS contiguous blocks (std of the block means / sqrt(blocks))."""
    from ..data.elements import masses
    from ..evaluation.longrun import atom_kinetic_energy, internal_velocities

    m, hydrogen = masses(numbers), np.asarray(numbers) == 1
    vel = internal_velocities(reference[::stride], m, frame_fs)  # (T', n, 3) Å/fs
    whole = group_temperatures(atom_kinetic_energy(vel, m) / len(vel), hydrogen)
    blocks = np.array([group_temperatures(atom_kinetic_energy(b, m) / len(b), hydrogen)
                       for b in np.array_split(vel, REF_BLOCKS) if len(b)])  # (blocks, 2) K
    se = blocks.std(axis=0, ddof=1) / np.sqrt(len(blocks)) if len(blocks) > 1 else np.full(2, np.nan)
    return whole[0], whole[1], float(se[0]), float(se[1])


def group_temperatures(ke: np.ndarray, hydrogen: np.ndarray) -> tuple[float, float]:
    """(T of the hydrogens, T of the other atoms) in K, 3 degrees of freedom per atom, from each atom's
    mean kinetic energy ``ke`` (n,) eV; NaN for an empty group."""
    from ..evaluation.longrun import group_temperature

    return tuple(group_temperature(ke[g].sum(), g.sum()) for g in (hydrogen, ~hydrogen))


class OnlineScore:
    """Stepper observer scoring B rollouts of one molecule (n atoms each) as they run, with the
    definitions of evaluation/longrun.py (MDsim stability, h(r), kinetic temperature), frame by frame."""

    def __init__(self, reference: np.ndarray, numbers: np.ndarray, rollouts: int, frame_fs: float, start_x: torch.Tensor):
        from ..data.elements import masses
        from ..evaluation.longrun import HR_BINS, HR_R_MAX, SEPARATIONS, mean_bond_lengths, pair_separations
        from ..evaluation.metrics import bonds_from_reference

        self.n, self.b, self.frame_fs = numbers.shape[0], rollouts, frame_fs
        self.bonds = bonds_from_reference(reference, numbers)  # (M, 2), the median topology
        self.mean_len = mean_bond_lengths(reference, self.bonds)  # (M,) Å
        self.pairs = np.triu_indices(self.n, k=1)
        self.edges = np.linspace(0.0, HR_R_MAX, HR_BINS + 1)
        self.masses = masses(numbers)
        self.stable = np.full(rollouts, -1)  # first unstable frame, -1 while stable
        # pair distances of the stable frames, all rollouts, by bonded separation (every pair is in one
        # class; all pairs together are their sum): the positions in self.pairs of each class's pairs
        self.separations = pair_separations(reference, numbers)
        index = {pair: p for p, pair in enumerate(zip(*self.pairs))}
        self.class_pairs = [np.array([index[pair] for pair in zip(*self.separations.get(name, ((), ())))],
                                     dtype=np.int64) for name in SEPARATIONS]
        self.counts_by = np.zeros((len(SEPARATIONS), HR_BINS), dtype=np.int64)
        self.temp_sum, self.temp_count = 0.0, 0
        self.prev = start_x.detach().double().cpu().numpy().reshape(rollouts, self.n, 3)
        self.hydrogen = numbers == 1
        self.ke_atom = np.zeros(self.n)  # Σ over stable frames and rollouts of each atom's kinetic energy, eV
        self.ke_count = 0
        self.window = [self.prev.copy()]  # the first VDOS_FRAMES + 1 frames, (B, n, 3) each
        self.spectra: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # set by vdos_overlap

    def __call__(self, stepper) -> None:
        from ..evaluation.longrun import STABILITY_TOL, atom_kinetic_energy, kinetic_temperature, remove_rigid_motion

        x = stepper.positions.detach().double().cpu().numpy().reshape(self.b, self.n, 3)  # NaN for stopped
        bond_len = np.linalg.norm(x[:, self.bonds[:, 0]] - x[:, self.bonds[:, 1]], axis=-1)  # (B, M) Å
        with np.errstate(invalid="ignore"):
            broken = ~(np.abs(bond_len - self.mean_len) <= STABILITY_TOL).all(-1)  # NaN (stopped) is broken
        self.stable[broken & (self.stable < 0)] = stepper.t - 1  # frames 1 .. t-1 were stable
        ok = self.stable < 0
        if ok.any():
            d = np.linalg.norm(x[ok][:, self.pairs[0]] - x[ok][:, self.pairs[1]], axis=-1)
            for c, idx in enumerate(self.class_pairs):
                self.counts_by[c] += np.histogram(d[:, idx], bins=self.edges)[0]
            vel = remove_rigid_motion((x[ok] - self.prev[ok]) / self.frame_fs, 0.5 * (x[ok] + self.prev[ok]),
                                      self.masses)  # (B_ok, n, 3) Å/fs
            temp = kinetic_temperature(vel, self.masses)  # (B_ok,) K
            self.temp_sum, self.temp_count = self.temp_sum + float(temp.sum()), self.temp_count + int(ok.sum())
            self.ke_atom += atom_kinetic_energy(vel, self.masses)
            self.ke_count += int(ok.sum())
        if len(self.window) <= VDOS_FRAMES:
            self.window.append(x.copy())
        self.prev = x

    def group_temperatures(self) -> tuple[float, float]:
        """(hydrogens, heavy atoms) K over the stable frames, 3 degrees of freedom per atom."""
        if self.ke_count == 0:
            return float("nan"), float("nan")
        return group_temperatures(self.ke_atom / self.ke_count, self.hydrogen)

    def vdos_overlap(self, reference: np.ndarray, numbers: np.ndarray, stride: int) -> float:
        """Overlap of the mean spectrum of the rollouts stable for their first VDOS_FRAMES frames (all
        when shorter) with the reference's at the same stride; NaN when none was."""
        from ..evaluation.longrun import MIN_VDOS_STEPS, vdos, vdos_overlap

        frames = np.stack(self.window, 1)  # (B, W + 1, n, 3)
        keep = (self.stable < 0) | (self.stable >= frames.shape[1] - 1)
        if not keep.any() or frames.shape[1] <= MIN_VDOS_STEPS:
            return float("nan")
        ref_frames = reference[::stride]
        segment = vdos_segment(len(self.window) - 1, len(ref_frames))  # one set of bins for both
        if segment < MIN_VDOS_STEPS:
            return float("nan")
        spectra = [vdos(frames[b], numbers, self.frame_fs, segment=segment)[1] for b in np.flatnonzero(keep)]
        freq, ref = vdos(ref_frames, numbers, self.frame_fs, segment=segment)
        self.spectra = (freq, np.mean(spectra, 0), ref)  # cm^-1, the rollouts' mean, the reference's
        return vdos_overlap(self.spectra[1], ref)

    def reference_halves(self, reference: np.ndarray, numbers: np.ndarray, stride: int) -> float:
        """reference_vdos_halves at the stride and segment of vdos_overlap."""
        return reference_vdos_halves(reference, numbers, stride, self.frame_fs, len(self.window) - 1)

    def stable_frames(self, frames: int) -> np.ndarray:
        return np.where(self.stable < 0, frames, self.stable)

    def h_r_jsd_by_separation(self, reference: np.ndarray) -> dict[str, float]:
        """{"1_2", ...: h(r) JSD of the pairs that many bonds apart} over the stable frames; NaN for an
        empty class."""
        from ..evaluation.longrun import SEPARATIONS, hr_errors, hr_histogram

        out = {}
        for c, name in enumerate(SEPARATIONS):
            counts, pairs = self.counts_by[c], self.separations.get(name)
            if pairs is None or counts.sum() == 0:
                out[name] = float("nan")
                continue
            h_ref, _ = hr_histogram(reference, pairs=pairs)
            out[name] = hr_errors(counts / (counts.sum() * np.diff(self.edges)), h_ref, self.edges)[1]
        return out

    def h_r_jsd(self, reference: np.ndarray) -> float:
        from ..evaluation.longrun import hr_errors, hr_histogram

        counts = self.counts_by.sum(0)  # (bins,) every pair
        if counts.sum() == 0:
            return float("nan")
        h = counts / (counts.sum() * np.diff(self.edges))
        return hr_errors(h, hr_histogram(reference)[0], self.edges)[1]
