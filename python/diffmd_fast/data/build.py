"""Shared by every reader: the file check, trajectory construction with the file named in errors,
the sampling steps of the public data sets, the units files state, and periodic cells."""
from __future__ import annotations

import glob
import os
from pathlib import Path

import numpy as np
from ase import units
from ase.data import covalent_radii
from ase.geometry import find_mic

from .elements import BOND_SCALE, check_angstrom
from .trajectory import Trajectory, TrajectoryError

IMAGE_CONTACT_A = 2.5  # Å: an atom this close to a periodic image touches it (about the H...H van der Waals contact, 2 x 1.2 Å; H-bonds 1.8-2 Å)
MD17_DT_FS = 0.5  # MD17 and revised MD17 were sampled every 0.5 fs (Chmiela et al. 2017)
ISO17_DT_FS = 1.0  # ISO17 trajectories were sampled every 1 fs (Schütt et al. 2017)

# Length and energy units as data sets spell them (sGDML's r_unit / e_unit), in Å and eV.
LENGTH_UNITS = {"ang": 1.0, "angstrom": 1.0, "a": 1.0, "å": 1.0, "au": units.Bohr, "bohr": units.Bohr,
                "nm": 10.0}
ENERGY_UNITS = {"ev": 1.0, "au": units.Hartree, "ha": units.Hartree, "hartree": units.Hartree,
                "kcal/mol": units.kcal / units.mol, "kj/mol": units.kJ / units.mol, "mev": 1e-3}


# the suffixes of the trajectory files diffmd writes and reads, for a missing file's hint (require_file)
TRAJECTORY_SUFFIXES = (".npz", ".extxyz", ".xyz", ".traj", ".db")


def require_file(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        # a run's frames may be in another format beside the name asked for (generate writes a long run
        # to .extxyz alone): name it
        beside = sorted(q.name for q in p.parent.glob(f"{glob.escape(p.stem)}.*")
                        if q.suffix in TRAJECTORY_SUFFIXES and q != p) if p.parent.is_dir() else []
        hint = f" (beside it: {', '.join(beside)})" if beside else ""
        raise FileNotFoundError(f"trajectory file {p} does not exist{hint}")
    if p.is_dir():
        raise TrajectoryError(f"{p}: is a folder, expected a trajectory file")
    return p


def unit_factor(path: Path, kind: str, unit: str) -> float:
    """Å (kind "length") or eV (kind "energy") per ``unit``; refuses a unit it does not know."""
    table = LENGTH_UNITS if kind == "length" else ENERGY_UNITS
    key = str(unit).strip().lower()
    if key not in table:
        raise TrajectoryError(f"{path.name}: unknown {kind} unit {unit!r}; known: {sorted(table)}; convert the "
                              f"file to Å and eV first")
    return table[key]


def make_whole(path: Path, positions: np.ndarray, numbers: np.ndarray, cells: np.ndarray,
               pbc: np.ndarray) -> np.ndarray:
    """Unwrap periodic positions (T, N, 3) Å so every molecule is whole and moves continuously.

    Frame 0 is made whole along its bonds (each atom placed at the minimum image of a bonded,
    already placed atom; fragments at the minimum image of what is placed); every later atom is
    put at the minimum image of its own position in the previous, already unwrapped frame, which
    needs atoms to move less than half a cell per frame. ``cells`` (T, 3, 3) Å, ``pbc`` (3,) bool.

    Raises TrajectoryError when frame 0 made whole still has an atom within IMAGE_CONTACT_A of a
    periodic image of another atom closer than of the atom itself: a condensed phase (a liquid or
    crystal box) or a periodic network (a polymer, a surface), which no placement of its atoms makes
    a molecule in vacuum.
    """
    if not np.any(pbc):
        return positions
    if (np.linalg.norm(cells[:, pbc], axis=-1) < 1e-9).any():
        raise TrajectoryError(f"{path.name}: periodic file without a cell vector along a periodic axis; unwrap the molecule first "
                              "(e.g. MDAnalysis unwrap or ase.geometry.wrap_positions) and save it without pbc")
    out = np.empty_like(positions)
    radii = covalent_radii[numbers]
    x0 = positions[0]
    placed = np.zeros(len(numbers), dtype=bool)
    out0 = x0.copy()
    placed[0] = True
    while not placed.all():
        todo = np.flatnonzero(~placed)
        grown = False
        for i in np.flatnonzero(placed):
            vec, dist = find_mic(x0[todo] - out0[i], cells[0], pbc)
            bonded = dist < BOND_SCALE * (radii[todo] + radii[i])
            if bonded.any():
                out0[todo[bonded]] = out0[i] + vec[bonded]
                placed[todo[bonded]] = True
                grown = True
                break
        if not grown:  # another fragment: its first atom goes next to the placed part's centroid
            j = todo[0]
            vec, _ = find_mic((x0[j] - out0[placed].mean(0))[None], cells[0], pbc)
            out0[j] = out0[placed].mean(0) + vec[0]
            placed[j] = True
    _check_isolated(path, out0, cells[0], pbc)
    out[0] = out0
    for t in range(1, positions.shape[0]):
        vec, _ = find_mic(positions[t] - out[t - 1], cells[t], pbc)
        out[t] = out[t - 1] + vec
    return out


def whole_structure(atoms, path: str | os.PathLike):
    """A copy of the ase.Atoms ``atoms`` with a periodic molecule made whole along its bonds
    (make_whole, as the trajectory readers do) and pbc off: a rollout is in vacuum; ``atoms``
    itself when it is not periodic. ``path`` names the source in errors. Raises TrajectoryError
    (a ValueError) for non-finite positions, positions that cannot be in Å (elements.check_angstrom),
    a condensed phase or periodic network."""
    bad = np.flatnonzero(~np.isfinite(atoms.positions).all(axis=1))
    if bad.size:
        raise TrajectoryError(f"{Path(path).name}: non-finite positions (NaN or inf) on {bad.size} atom(s), the first "
                              f"atom {int(bad[0])}")
    out = atoms
    if np.any(atoms.pbc):
        out = atoms.copy()
        out.positions = make_whole(Path(path), atoms.positions[None], atoms.numbers, np.asarray(atoms.cell)[None],
                                   np.asarray(atoms.pbc))[0]
        out.pbc = False
    try:
        check_angstrom(out.positions, out.numbers)  # whole: a wrapped molecule's split bonds are not its lengths
    except ValueError as err:
        raise TrajectoryError(f"{Path(path).name}: {err}") from None
    return out


def _check_isolated(path: Path, x: np.ndarray, cell: np.ndarray, pbc: np.ndarray) -> None:
    """make_whole's condensed-phase check of the whole frame x (N, 3) Å: no atom within
    IMAGE_CONTACT_A of a periodic image of any atom (itself included)."""
    from ase import Atoms
    from ase.neighborlist import neighbor_list

    i, j, d, shift = neighbor_list("ijdS", Atoms(positions=x, cell=cell, pbc=pbc), IMAGE_CONTACT_A)
    image = np.flatnonzero(np.any(shift != 0, axis=1))  # d = |x_j - x_i + S·cell|: S != 0 is another cell's atom
    if image.size:
        w = image[np.argmin(d[image])]
        raise TrajectoryError(
            f"{path.name}: a periodic system whose atoms touch their periodic images ({np.unique(i[image]).size} atoms; "
            f"atom {i[w]} is {d[w]:.2f} Å from an image of atom {j[w]}): a condensed phase or periodic network, "
            "which cannot be made a molecule in vacuum, and DiffMD rolls out molecules in vacuum; give one molecule "
            f"(or a cluster) in a cell wider than it by {IMAGE_CONTACT_A:g} Å, or without pbc")


def build_trajectory(path, positions, numbers, dt_fs, energies, forces, name, provenance, *,
                     frame_steps=None, spacing_known: bool = True, velocities=None) -> Trajectory:
    """Construct and validate; errors always carry the file name."""
    try:
        pos = np.asarray(positions, dtype=np.float64)
        if pos.ndim == 2 and pos.shape[1] == 3:  # a single frame
            pos = pos[None]
        traj = Trajectory(positions=pos, numbers=np.asarray(numbers).ravel(), dt_fs=dt_fs, energies=energies,
                          forces=forces, name=name, provenance=provenance, frame_steps=frame_steps,
                          spacing_known=spacing_known, velocities=velocities)
        check_angstrom(traj.positions, traj.numbers)  # a file in Bohr or nm would train a model of nonsense
        return traj
    except TrajectoryError as err:
        msg = str(err)  # name the file, not the trajectory, so the user knows what to fix
        msg = f"{path.name}:{msg[len(name) + 1:]}" if msg.startswith(f"{name}:") else f"{path.name}: {msg}"
        raise TrajectoryError(msg) from None
    except (TypeError, ValueError) as err:
        raise TrajectoryError(f"{path.name}: {err}") from err


def steps_from_times(path: Path, times: np.ndarray) -> tuple[float, np.ndarray | None]:
    """(dt_fs, frame_steps) from per-frame times (T,) fs: the smallest gap is the step; frame_steps
    is None when the frames are evenly spaced. Refuses times that are not increasing multiples of it."""
    gaps = np.diff(times)
    if (gaps <= 0).any():
        raise TrajectoryError(f"{path.name}: the per-frame times are not increasing (frame "
                              f"{int(np.argmax(gaps <= 0)) + 1}); pass --dt-fs (Python: dt_fs=) if frames are evenly spaced")
    dt = float(gaps.min())
    steps = (times - times[0]) / dt
    if not np.allclose(steps, np.round(steps), rtol=0, atol=1e-3):
        raise TrajectoryError(f"{path.name}: the per-frame times are not multiples of one time step; "
                              "pass --dt-fs (Python: dt_fs=) if frames are evenly spaced")
    steps = np.round(steps).astype(np.int64)
    return (float(gaps.mean()), None) if (np.diff(steps) == 1).all() else (dt, steps)
