"""Element data shared by every layer above: what counts as a covalent bond."""
from __future__ import annotations

BOND_SCALE = 1.2  # × sum of covalent radii (ASE's, Cordero et al. 2008): the usual bond-perception tolerance
