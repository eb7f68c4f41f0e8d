"""The valence force field (bonds, angles, torsions, excluded-volume walls) under one name: its
topology perceived on positions (topology.py), its fit to data by Boltzmann inversion (fit.py) and
by force matching (force_matching.py), the prior module that makes the score network's anchor its
Verlet step (prior.py, ``BondPrior``, a ScoreNet's ``bond_prior``), and the fallback terms for
chemistry the fit never saw (coverage.py). Masses come from data.elements."""
from .coverage import cover
from .fit import valence_statistics
from .force_matching import force_matched
from .prior import BondPrior
from .topology import type_label, valence_types, with_covalent_bonds

__all__ = ["BondPrior", "cover", "force_matched", "type_label", "valence_statistics", "valence_types",
           "with_covalent_bonds"]
