"""The fitted valence prior's normal modes against GFN2-xTB's, at the GFN2-xTB minimum.

What the prior alone can give a rollout's spectrum is set by its harmonic frequencies. For each
molecule the prior is fitted as training fits it (valence.fitted.fit_prior, ``--config`` and ``--set``;
on the first 60 % of the trajectory, `bench stability`'s training split), with its physical constants
(no Verlet matching); the molecule's first frame is relaxed with GFN2-xTB (ASE's BFGS, tblite; the
charge and multiplicity `diffmd simulate` recorded, else neutral) and both Hessians are taken there:
GFN2-xTB's by central finite differences (ASE's Vibrations, 0.005 Å), the prior's by automatic
differentiation of its energy (valence.prior.BondPrior.energy). Each of the 3N − 6 GFN2-xTB modes (3N − 5
for a linear molecule)
gets the prior's frequency along it, sqrt(eᵀ H_prior e) of its mass-weighted eigenvector e (a
Rayleigh quotient: the same motion, each force field's stiffness), so the two are compared mode by
mode without matching the prior's own eigenvectors. Per band of GFN2-xTB frequency: the median ratio
prior / GFN2-xTB, the mean absolute error (cm⁻¹) and the modes along which the prior curves down (a
torsion whose fitted wells lie elsewhere; its wavenumber reads negative).

    diffmd bench modes --molecules ethanol,aspirin
    diffmd bench modes --molecules runs/panel6/ethylphenol.npz --set model.prior_torsion_matching=true

Prints a markdown table and writes JSON (--json) with every mode's frequencies. Refuses (one line) a
trajectory too short to fit (MIN_FIT_FRAMES), one without a time step (the inversion's temperature
comes from the frames' differences: --dt-fs), and a relaxation that makes or breaks a bond (a wrong
charge or multiplicity: --charge, --multiplicity); warns where GFN2-xTB's relaxed structure is a saddle
point (its imaginary modes count in the lowest band, negative). A linear molecule's bends read unstable:
the prior's cosine angle term rests at the data's mean angle, below 180° in thermal bending, so at the
linear geometry it curves down.
"""
from __future__ import annotations

import argparse
import os
import platform
from dataclasses import asdict, dataclass

import numpy as np
import torch

# torsions and wags (and any imaginary mode, negative) | bends, C-C/C-O | ring and C=O region | X≡Y | X-H stretches
BAND_EDGES_CM1 = (0.0, 1000.0, 1300.0, 1700.0, 2500.0, 4500.0)
MIN_FIT_FRAMES = 50  # frames the prior is fitted on, at least: a force constant from a handful is noise
TRAIN_FRACTION = 0.6  # the frames the prior is fitted on, as bench stability trains on them
XTB_FMAX = 1e-3  # eV/Å: the relaxation's largest force, so the finite-difference Hessian sees no gradient
DISPLACEMENT_A = 0.005  # Å: ASE Vibrations' step
FIT_FRAME_FS = 1e-3  # fs: far below any period, so the fitted springs keep their physical constants


@dataclass(frozen=True)
class Band:
    lo_cm1: float
    hi_cm1: float
    modes: int
    ratio: float  # median prior / GFN2-xTB frequency over the band's modes
    mae_cm1: float  # mean |prior - GFN2-xTB|
    unstable: int  # modes along which the prior's curvature is negative (torsion wells elsewhere)


@dataclass(frozen=True)
class Modes:
    molecule: str
    atoms: int
    charge: int  # e, of the GFN2-xTB relaxation and Hessian
    multiplicity: int
    fit: str  # the force matching's summary, or how the prior was fitted
    xtb_cm1: list[float]  # (3N - 6,) GFN2-xTB harmonic wavenumbers at its minimum, ascending
    prior_cm1: list[float]  # (3N - 6,) the prior's along each of those modes (negative: unstable along it)
    bands: list[Band]
    mae_cm1: float  # over all 3N - 6 modes


def wavenumbers_cm1(curvature: np.ndarray) -> np.ndarray:
    """cm⁻¹ of mass-weighted curvatures (eV/Å²/amu), sign kept: ω = sqrt(|c|) in ASE's inverse time,
    ν̃ = ω / 2π c (a negative curvature gives a negative wavenumber, an imaginary mode)."""
    from ase import units

    from ..evaluation.longrun import frequency_cm1

    c = np.asarray(curvature, dtype=np.float64)
    return np.sign(c) * frequency_cm1(np.sqrt(np.abs(c)) * units.fs / (2 * np.pi))


def mass_weighted(hessian: np.ndarray, masses: np.ndarray) -> np.ndarray:
    """(3N, 3N) eV/Å²/amu: H_ij / sqrt(m_i m_j) of a Cartesian Hessian (3N, 3N) eV/Å², masses (N,) amu, symmetrised."""
    w = 1.0 / np.sqrt(np.repeat(np.asarray(masses, dtype=np.float64), 3))
    h = hessian * w[:, None] * w[None, :]
    return 0.5 * (h + h.T)


def xtb_minimum(numbers: np.ndarray, positions: np.ndarray, charge: int, multiplicity: int) -> tuple[np.ndarray, np.ndarray]:
    """(positions (N, 3) Å of the GFN2-xTB minimum nearest ``positions``, its Hessian (3N, 3N) eV/Å²).
    Raises RuntimeError when the relaxation does not reach XTB_FMAX."""
    import tempfile

    from ase import Atoms
    from ase.optimize import BFGS
    from ase.vibrations import Vibrations
    from tblite.ase import TBLite

    atoms = Atoms(numbers=numbers, positions=positions)
    atoms.calc = TBLite(method="GFN2-xTB", verbosity=0, charge=charge, multiplicity=multiplicity)
    if not BFGS(atoms, logfile=None).run(fmax=XTB_FMAX, steps=5000):
        raise RuntimeError(f"GFN2-xTB relaxation did not reach {XTB_FMAX} eV/Å in 5000 steps")
    with tempfile.TemporaryDirectory() as tmp:
        vib = Vibrations(atoms, name=os.path.join(tmp, "vib"), delta=DISPLACEMENT_A)
        vib.run()
        hessian = vib.get_vibrations().get_hessian_2d()
    return atoms.get_positions(), np.asarray(hessian, dtype=np.float64)


def prior_hessian(prior, x: np.ndarray, z: np.ndarray, graph) -> np.ndarray:
    """(3N, 3N) eV/Å²: the Hessian of ``prior``'s energy (BondPrior.energy) at positions x (N, 3) Å over
    ``graph``'s topology (valence.topology), by automatic differentiation in float64."""
    zt = torch.as_tensor(np.asarray(z, dtype=np.int64))
    flat = torch.as_tensor(np.asarray(x, dtype=np.float64)).reshape(-1)
    return torch.autograd.functional.hessian(lambda y: prior.energy(y.reshape(-1, 3), zt, graph), flat).numpy()


def compare(molecule: str, xtb_h: np.ndarray, prior_h: np.ndarray, masses: np.ndarray, fit: str, *,
            linear: bool = False, charge: int = 0, multiplicity: int = 1) -> Modes:
    """The prior's wavenumber along each GFN2-xTB normal mode (module docstring) from the two Cartesian
    Hessians (3N, 3N) eV/Å² at one geometry, masses (N,) amu; the 6 modes nearest zero (translation,
    rotation; 5 for a ``linear`` molecule) left out."""
    w2, vec = np.linalg.eigh(mass_weighted(xtb_h, masses))  # (3N,), (3N, 3N) columns
    keep = np.sort(np.argsort(np.abs(w2))[5 if linear else 6:])
    along = np.einsum("im,ij,jm->m", vec[:, keep], mass_weighted(prior_h, masses), vec[:, keep])
    xtb, prior = wavenumbers_cm1(w2[keep]), wavenumbers_cm1(along)
    bands = []
    for n, (lo, hi) in enumerate(zip(BAND_EDGES_CM1[:-1], BAND_EDGES_CM1[1:])):
        s = ((xtb >= lo) | (n == 0)) & (xtb < hi)  # the lowest band takes the imaginary modes too
        if s.any():
            bands.append(Band(lo, hi, int(s.sum()), float(np.median(prior[s] / xtb[s])),
                              float(np.mean(np.abs(prior[s] - xtb[s]))), int((prior[s] < 0).sum())))
    return Modes(molecule, len(masses), charge, multiplicity, fit, xtb.tolist(), prior.tolist(), bands,
                 float(np.mean(np.abs(prior - xtb))))


def molecule_modes(name: str, traj, cfg, charge: int | None = None, multiplicity: int | None = None) -> Modes:
    """``compare`` for the Trajectory ``traj`` (called ``name``) with the prior fitted under the config
    ``cfg`` (config.Config); ``charge`` and ``multiplicity`` override those the trajectory records (else
    neutral, the lowest spin). Raises ValueError (module docstring)."""
    import warnings

    from ..data.elements import masses
    from ..evaluation.longrun import is_linear
    from ..valence import BondPrior
    from ..valence.fitted import fit_prior
    from ..valence.topology import covalent_bonds, trajectory_graph

    traj.require_dt()  # the Boltzmann inversion's temperature comes from the frames' differences
    fit_frames = int(TRAIN_FRACTION * traj.num_frames)
    if fit_frames < MIN_FIT_FRAMES:
        raise ValueError(f"{name}: {traj.num_frames} frames give the fit {fit_frames}; it needs at least "
                         f"{MIN_FIT_FRAMES} (the first {TRAIN_FRACTION:.0%} of the trajectory)")
    train = traj.slice(0, fit_frames)
    prior = BondPrior(cfg.model.max_z)
    fit = fit_prior(prior, [train], cfg.model, FIT_FRAME_FS)[0]
    charge = int(traj.provenance.get("charge", 0)) if charge is None else int(charge)
    electrons = int(np.sum(traj.numbers)) - charge
    multiplicity = int(traj.provenance.get("multiplicity", 1 + electrons % 2)) if multiplicity is None else int(multiplicity)
    x0, xtb_h = xtb_minimum(traj.numbers, traj.positions[0], charge, multiplicity)
    graph = trajectory_graph(traj)  # the topology the prior was fitted on, its bonds at the median
    relaxed = covalent_bonds(graph, torch.as_tensor(x0), torch.as_tensor(np.asarray(traj.numbers, dtype=np.int64)))
    if {tuple(b) for b in relaxed.T.tolist()} != {tuple(b) for b in graph.bonds.T.tolist()}:
        raise ValueError(f"{name}: GFN2-xTB's relaxation (charge {charge}, multiplicity {multiplicity}) made or broke a "
                         "bond of the trajectory's: a wrong charge or spin? Give --charge and --multiplicity")
    m = masses(traj.numbers)  # (N,) amu
    row = compare(name, xtb_h, prior_hessian(prior, x0, traj.numbers, graph), m, fit, linear=is_linear(x0, m),
                  charge=charge, multiplicity=multiplicity)
    imaginary = sum(1 for f in row.xtb_cm1 if f < 0)
    if imaginary:
        warnings.warn(f"{name}: GFN2-xTB's relaxed structure has {imaginary} imaginary mode(s), a saddle point rather "
                      "than a minimum; they count in the lowest band, negative", stacklevel=2)
    return row


def markdown(rows: list[Modes]) -> str:
    edges = list(zip(BAND_EDGES_CM1[:-1], BAND_EDGES_CM1[1:]))
    labels = [f"< {hi:.0f}" if n == 0 else f"{lo:.0f}-{hi:.0f}" for n, (lo, hi) in enumerate(edges)]
    head = ("| molecule | atoms | prior fit | " + " | ".join(f"{b} cm⁻¹: modes, prior/xTB (MAE)" for b in labels)
            + " | all modes: MAE (cm⁻¹) |")
    lines = [head, "|" + "---|" * (len(edges) + 4)]
    for r in rows:
        cells = []
        for lo, _ in edges:
            band = next((b for b in r.bands if b.lo_cm1 == lo), None)
            unstable = f", {band.unstable} unstable" if band is not None and band.unstable else ""
            cells.append("–" if band is None else f"{band.modes}, {band.ratio:.2f} ({band.mae_cm1:.0f}{unstable})")
        state = f" (charge {r.charge:+d}, multiplicity {r.multiplicity})" if (r.charge, r.multiplicity) != (0, 1) else ""
        lines.append(f"| {r.molecule}{state} | {r.atoms} | {r.fit} | " + " | ".join(cells) + f" | {r.mae_cm1:.0f} |")
    return "\n".join(lines)


def main(argv=None) -> list[Modes]:
    from importlib.resources import files

    from tqdm.auto import tqdm

    from ..config import Config
    from ..data import load_data
    from ..data.shipped import data_source
    from ..data.writers import json_text, write_text

    ap = argparse.ArgumentParser(prog="diffmd bench modes", description=__doc__.split("\n\n")[0])
    ap.add_argument("--molecules", default="ethanol,aspirin",
                    help="bundled names or trajectory files (with forces, to force-match), comma separated")
    ap.add_argument("--config", default=str(files("diffmd_fast") / "configs" / "long.toml"),
                    help="the config whose [model] prior settings are fitted (default: configs/long.toml)")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE", help="config override")
    ap.add_argument("--dt-fs", type=float, default=None, help="time between frames (fs), for files that store none")
    ap.add_argument("--charge", type=int, default=None, help="total charge (e) of every molecule's GFN2-xTB "
                    "relaxation (default: what `diffmd simulate` recorded in the file, else 0)")
    ap.add_argument("--multiplicity", type=int, default=None, help="2S + 1 (default: recorded, else the lowest)")
    ap.add_argument("--json", default="runs/modes.json", help="output JSON")
    args = ap.parse_args(argv)
    cfg = Config.from_toml(args.config, args.set)
    specs = [m.strip() for m in args.molecules.split(",") if m.strip()]
    if not specs:
        raise ValueError("--molecules: give at least one bundled name or trajectory file")
    trajs = []  # every file read (and refused) before any relaxation
    for spec in specs:
        path, selector = data_source(spec)
        trajs.append((path.stem + (f"@{selector}" if selector else ""), load_data(spec, dt_fs=args.dt_fs)))
    rows = [molecule_modes(name, traj, cfg, args.charge, args.multiplicity)
            for name, traj in tqdm(trajs, desc="molecules", unit="molecule")]
    print(markdown(rows))
    meta = {"machine": platform.platform(), "threads": torch.get_num_threads(), "argv": argv, "args": vars(args),
            "xtb_fmax_eV_per_A": XTB_FMAX, "displacement_A": DISPLACEMENT_A, "train_fraction": TRAIN_FRACTION}
    write_text(args.json, json_text({"meta": meta, "molecules": [asdict(r) for r in rows]}))
    print(f"wrote {args.json}")
    return rows
