"""Element data shared by every layer above: what counts as a covalent bond (and a molecule's bonds
over a trajectory, ``covalent_pairs``), and the atomic masses
(ASE's table, IUPAC standard atomic weights, amu, indexed by atomic number) that the valence
prior's Verlet step, the thermostats and the kinetic temperature all use."""
from __future__ import annotations

import numpy as np
import torch
from ase.data import atomic_masses as ATOMIC_MASSES  # (119,) amu, row = atomic number

BOND_SCALE = 1.2  # × sum of covalent radii (ASE's, Cordero et al. 2008): the usual bond-perception tolerance
# frames whose median pair distances decide a trajectory's bonds: enough that the rare frame with a stretched
# bond cannot move the median, few enough to cost nothing beside loading the data
TOPOLOGY_FRAMES = 200
_CANDIDATE_SCALE = 2.0  # pairs this many times the bond cutoff apart in the first frame cannot be bonded at the median



def covalent_pairs(positions: np.ndarray, numbers: np.ndarray, scale: float = BOND_SCALE,
                   max_frames: int = TOPOLOGY_FRAMES) -> np.ndarray:
    """(B, 2) int64 atom pairs i < j whose median distance over up to ``max_frames`` evenly spaced frames
    of ``positions`` (T, N, 3) or (N, 3) Å is below ``scale`` × (r_cov,i + r_cov,j) (ASE's covalent radii):
    the molecule's covalent bonds. One frame's perception is not: at 500 K a C-H stretch passes the
    cutoff (1.28 Å) in about one frame in a thousand, and a bond dropped there loses its spring and
    gains an excluded-volume wall. A single frame is perceived as it is. Candidate pairs come from the
    first frame (a k-d tree, so large systems cost O(N)). Raises ValueError on a shape mismatch or a
    number outside 1..118."""
    from ase.data import covalent_radii
    from scipy.spatial import cKDTree

    x = np.asarray(positions, dtype=np.float64)
    x = x[None] if x.ndim == 2 else x
    z = np.asarray(numbers)
    if x.ndim != 3 or x.shape[-1] != 3 or z.shape != (x.shape[1],):
        raise ValueError(f"positions must be (T, N, 3) or (N, 3) with numbers (N,), got {x.shape} and {z.shape}")
    if (z < 1).any() or (z >= len(covalent_radii)).any():
        raise ValueError(f"numbers must be atomic numbers in 1..{len(covalent_radii) - 1}, got {z.tolist()}")
    rad = covalent_radii[z.astype(np.int64)]  # (N,) Å
    if x.shape[1] < 2:
        return np.zeros((0, 2), dtype=np.int64)
    reach = _CANDIDATE_SCALE * scale * 2.0 * rad.max()
    i, j = cKDTree(x[0]).query_pairs(reach, output_type="ndarray").T.astype(np.int64)  # (P,) each
    cut = scale * (rad[i] + rad[j])  # (P,) Å
    frames = np.unique(np.linspace(0, x.shape[0] - 1, min(max_frames, x.shape[0])).round().astype(np.int64))
    dist = np.median(np.linalg.norm(x[frames][:, i] - x[frames][:, j], axis=-1), axis=0)  # (P,) Å
    keep = dist < cut
    order = np.lexsort((j[keep], i[keep]))
    return np.stack([i[keep][order], j[keep][order]], axis=1)


# the median over atoms of (nearest-neighbour distance) / (r_cov,i + r_cov,j) in Å is ~1 in any covalent
# molecule (each atom's nearest neighbour is a bonded one); positions in Bohr read 1.89, in nm 0.1
ANGSTROM_RATIO = (0.6, 1.5)


def check_angstrom(positions: np.ndarray, numbers: np.ndarray, what: str = "positions") -> None:
    """Raise ValueError when positions (T, N, 3) or (N, 3) cannot be in Å: the median over atoms of each
    one's nearest-neighbour distance over the sum of the pair's covalent radii, in the first frame, is
    outside ANGSTROM_RATIO (Bohr: 1.89, nm: 0.1, pm: 100). A lone atom passes (there is nothing to measure)."""
    from ase.data import covalent_radii
    from scipy.spatial import cKDTree

    x = np.asarray(positions, dtype=np.float64)
    x = x[0] if x.ndim == 3 else x
    if x.shape[0] < 2 or not np.isfinite(x).all():
        return
    z = np.asarray(numbers).astype(np.int64)
    dist, nearest = cKDTree(x).query(x, k=2)  # column 1: the nearest other atom
    each = dist[:, 1] / (covalent_radii[z] + covalent_radii[z[nearest[:, 1]]])  # (N,)
    ratio = float(np.median(each))
    lo, hi = ANGSTROM_RATIO
    if ratio < lo <= each.max() <= hi:
        # another unit scales every distance; a molecule this small with one pair inside each other does not
        i = int(np.argmin(each))
        raise ValueError(f"{what}: atoms {i} and {int(nearest[i, 1])} overlap, {dist[i, 1]:.3g} Å apart "
                         f"({each[i]:.2g}x their covalent bond length)")
    if not lo <= ratio <= hi:
        units = ("Bohr (1.89x)" if 1.6 < ratio < 2.3 else "nm (0.1x)" if 0.05 < ratio < 0.2 else "another unit")
        raise ValueError(f"{what}: atoms sit {ratio:.3g}x their covalent bond lengths from their nearest neighbours "
                         f"(expected ~1 for positions in Å); are they in {units}? Convert them to Å")


def directed_bonds(pairs, offset: int = 0) -> torch.Tensor:
    """(2, 2B) int64 receiver, sender, each bond both ways, of atom pairs (B, 2) (covalent_pairs), their
    indices shifted by ``offset``."""
    p = torch.as_tensor(np.asarray(pairs, dtype=np.int64).reshape(-1, 2)) + offset
    return torch.cat([p.T, p.T.flip(0)], dim=1)


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
