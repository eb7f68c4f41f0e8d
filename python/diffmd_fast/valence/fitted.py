"""The valence prior fitted to data the way training fits it: Boltzmann inversion of every covalent
coordinate (fit.py), then, with ``model.prior_force_matching``, the force constants refitted to the
data's forces (force_matching.py). Training (the anchor's prior) and ``diffmd bench modes`` (the
prior's normal modes against GFN2-xTB's) both call it, so they measure one force field."""
from __future__ import annotations

from collections.abc import Sequence

from .fit import valence_statistics
from .force_matching import force_matched
from .prior import BondPrior


def fit_prior(prior: BondPrior, trajs: Sequence, model_cfg, frame_fs: float) -> tuple[str, bool]:
    """Set ``prior``'s tables from the trajectories ``trajs`` (data.Trajectory, Å, eV/Å) under the
    ``model_cfg`` (config.ModelConfig: max_z, prior_torsions, prior_force_matching, prior_anharmonic,
    prior_torsion_matching), the pair springs Verlet-matched to ``frame_fs`` fs (prior.BondPrior.set_tables;
    a frame time far below every period, e.g. 1e-3 fs, leaves the physical constants). Returns (a one-line
    summary of the fit, whether force matching set the constants): force_matched's summary, which says
    why where it kept the Boltzmann-inverted constants (and warns where the forces' units look wrong).
    Raises ValueError for an element above ``model_cfg.max_z`` and as set_tables does (a Verlet step
    unstable at ``frame_fs``)."""
    heaviest = max(int(max(t.numbers)) for t in trajs)
    if heaviest > model_cfg.max_z:
        raise ValueError(f"model.max_z = {model_cfg.max_z} is below the data's heaviest element (Z = {heaviest}); "
                         f"set model.max_z >= {heaviest}")
    tables = valence_statistics(list(trajs), model_cfg.max_z, torsions=model_cfg.prior_torsions)
    # with force matching these Boltzmann-inverted tables are only the fit's start: the fit's result is checked
    prior.set_tables(frame_fs=frame_fs, verlet_check=not model_cfg.prior_force_matching, **tables)
    if not model_cfg.prior_force_matching:
        return "Boltzmann-inverted (model.prior_force_matching = false)", False
    fitted, summary = force_matched(list(trajs), prior, tables, anharmonic=model_cfg.prior_anharmonic,
                                    torsions=model_cfg.prior_torsion_matching and model_cfg.prior_torsions)
    prior.set_tables(frame_fs=frame_fs, **fitted)
    return summary, fitted is not tables
