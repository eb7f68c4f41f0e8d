"""Element data shared by every layer above: what counts as a covalent bond, and the atomic masses
(ASE's table, IUPAC standard atomic weights, amu, indexed by atomic number) that the valence
prior's Verlet step, the thermostats and the kinetic temperature all use."""
from __future__ import annotations

import numpy as np
import torch
from ase.data import atomic_masses as ATOMIC_MASSES  # (119,) amu, row = atomic number

BOND_SCALE = 1.2  # × sum of covalent radii (ASE's, Cordero et al. 2008): the usual bond-perception tolerance

_MASS_TABLES: dict[tuple[torch.dtype, torch.device], torch.Tensor] = {}


def masses(numbers: np.ndarray, n_atoms: int | None = None) -> np.ndarray:
    """(N,) amu: the atomic masses of atomic numbers (N,); ValueError for another shape or a number
    outside 1..118."""
    z = np.asarray(numbers)
    if z.ndim != 1 or (n_atoms is not None and z.shape[0] != n_atoms):
        raise ValueError(f"numbers must have shape ({n_atoms if n_atoms is not None else 'N'},), got {z.shape}")
    if (z < 1).any() or (z >= len(ATOMIC_MASSES)).any():
        raise ValueError(f"numbers must be atomic numbers in 1..{len(ATOMIC_MASSES) - 1}, got {z.tolist()}")
    return ATOMIC_MASSES[z.astype(np.int64)]


def masses_of(z: torch.Tensor, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """(N,) amu: the atomic masses of atomic numbers z (N,), on z's device (the table is cached per
    dtype and device)."""
    key = (dtype, z.device)
    if key not in _MASS_TABLES:
        _MASS_TABLES[key] = torch.as_tensor(ATOMIC_MASSES, dtype=dtype, device=z.device)
    return _MASS_TABLES[key][z]
