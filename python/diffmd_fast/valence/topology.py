"""The valence force field's topology: covalent bonds perceived on positions (covalent radii x
BOND_SCALE), the bond angles and proper dihedrals they make, each atom's chemical environment (its
type), the non-bonded pairs, and the force-field types of a molecule. A molecule's bonds are those
of its trajectory at the median (data.elements.covalent_pairs), which windows of the data carry
(``window_graph``), or those perceived on a lone structure; ``topology_graph`` hangs them on the
complete graph of its molecules (ops.graph.Graph) once per rollout; the start checks, the prior, the
rollout and its guards all read that one graph.
"""
from __future__ import annotations

import numpy as np
import torch
from ase.data import covalent_radii

from ..data.elements import BOND_SCALE, covalent_pairs, directed_bonds
from ..ops.graph import Graph, complete_graph


def covalent_bonds(graph: Graph, x: torch.Tensor, z: torch.Tensor, scale: float = BOND_SCALE) -> torch.Tensor:
    """(2, M) int64 receiver, sender of the edges i <- j of ``graph`` with
    |x_i - x_j| < ``scale`` × (r_cov(z_i) + r_cov(z_j)) at positions x (N, 3) Å, atomic numbers z (N,)
    (ASE's covalent radii, Cordero et al. 2008)."""
    recv, send = graph.receivers(), graph.col
    radii = torch.as_tensor(covalent_radii, dtype=torch.float64, device=x.device)[z]  # (N,) Å
    dist = (x[recv] - x[send]).to(torch.float64).norm(dim=-1)  # (E,) Å
    bonded = dist < scale * (radii[recv] + radii[send])
    return torch.stack([recv[bonded], send[bonded]])


def bond_angles(bonds: torch.Tensor) -> torch.Tensor:
    """(3, A) int64 end i, centre j, end k with i < k of every pair of bonds j-i, j-k sharing atom j,
    from directed ``bonds`` (2, M) receiver, sender (each bond in both directions). O(M · degree):
    the bonds are grouped by centre and each group's pairs taken by offset within it (a training
    batch has thousands of bonds, so no M x M comparison)."""
    order = torch.argsort(bonds[0], stable=True)
    centre, end = bonds[0][order], bonds[1][order]  # (M,) grouped by centre
    if centre.numel() == 0:
        return bonds.new_zeros(3, 0)
    degree = int(torch.unique_consecutive(centre, return_counts=True)[1].max())
    out = []
    for offset in range(1, degree):  # bond a and bond a + offset of the same group: each pair once
        a = torch.arange(centre.numel() - offset, device=centre.device)
        a = a[centre[a] == centre[a + offset]]
        ea, eb = end[a], end[a + offset]
        out.append(torch.stack([torch.minimum(ea, eb), centre[a], torch.maximum(ea, eb)]))
    return torch.cat(out, dim=1) if out else bonds.new_zeros(3, 0)


def bond_dihedrals(bonds: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """(4, D) int64 i, j, k, l with j < k of every proper dihedral: bonds i-j, j-k, k-l with i, l outside
    the central bond and i != l (3-rings have none), each once, from directed ``bonds`` (2, M) receiver,
    sender (each bond both ways) of ``num_nodes`` atoms. Vectorised over a padded neighbour table
    (N, max degree)."""
    recv, send = bonds
    if recv.numel() == 0:
        return bonds.new_zeros(4, 0)
    order = torch.argsort(recv * num_nodes + send)
    recv, send = recv[order], send[order]
    rank = torch.arange(recv.numel(), device=recv.device) - torch.searchsorted(recv, recv)
    degree = int(rank.max()) + 1
    nbr = torch.full((num_nodes, degree), -1, dtype=torch.int64, device=recv.device)
    nbr[recv, rank] = send  # (N, degree), -1 padded
    centre = recv < send  # each central bond j-k once
    j, k = recv[centre], send[centre]  # (B,)
    i = nbr[j].unsqueeze(2).expand(-1, degree, degree)  # (B, degree, degree)
    l = nbr[k].unsqueeze(1).expand(-1, degree, degree)
    jj, kk = j[:, None, None].expand_as(i), k[:, None, None].expand_as(i)
    ok = (i >= 0) & (l >= 0) & (i != kk) & (l != jj) & (i != l)
    return torch.stack([i[ok], jj[ok], kk[ok], l[ok]])


ENV_BASE = 128  # one digit per element: atomic numbers < 128
ENV_NEIGHBOURS = 7  # neighbours an environment records (ENV_BASE ** 8 still fits int64)


def atom_environments(bonds: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """(N,) int64: each atom's environment, its element and the multiset of its bonded neighbours'
    elements (the radius-1 atom type of force fields and of Morgan/ECFP fingerprints: the carbonyl O
    of an ester, O(C), differs from its ether O, O(C,C); an aromatic C-H carbon, C(C,C,H), from a
    methyl carbon, C(C,H,H,H)). Encoded exactly as the digits base ENV_BASE of z and the sorted
    neighbour numbers: z + Σ_k z_k · ENV_BASE^(k+1), k over the first ENV_NEIGHBOURS neighbours in
    ascending z (an atom with more shares its environment with those that have the same first seven).
    ``bonds`` (2, M) directed receiver, sender (each bond both ways), z (N,) atomic numbers.
    ``environment_label`` reads one back."""
    env = z.to(torch.int64).clone()
    if bonds.shape[1] == 0:
        return env
    recv, send = bonds
    order = torch.argsort(recv * ENV_BASE + z[send])  # grouped by receiver, neighbours by ascending z
    recv, zs = recv[order], z[send][order]
    first = torch.searchsorted(recv, recv)  # (M,) index of each bond's group start
    rank = torch.arange(recv.numel(), device=recv.device) - first  # neighbour k of its receiver
    keep = rank < ENV_NEIGHBOURS
    digits = zs[keep] * ENV_BASE ** (rank[keep] + 1)
    return env.index_add_(0, recv[keep], digits)


def environment_label(env: int) -> str:
    """'C(C,C,H)' for the environment code ``env`` of atom_environments."""
    from ase.data import chemical_symbols

    digits = []
    while env:
        env, d = divmod(int(env), ENV_BASE)
        digits.append(d)
    centre, neighbours = chemical_symbols[digits[0]], [chemical_symbols[d] for d in digits[1:]]
    return f"{centre}({','.join(neighbours)})" if neighbours else centre


def with_bonds(graph: Graph, bonds: torch.Tensor, z: torch.Tensor) -> Graph:
    """``graph`` with the covalent topology ``bonds`` (2, M) int64 receiver, sender (each bond both ways,
    atom indices of ``graph``): those of graph's edges, in graph's order, and the angles, dihedrals,
    atom environments and non-bonded pairs they make; z (N,) atomic numbers."""
    recv, send = graph.receivers(), graph.col
    n = max(int(z.numel()), 1)
    bonds = bonds.to(recv.device)
    bonded = torch.isin(recv * n + send, bonds[0] * n + bonds[1])  # (E,)
    bonds = torch.stack([recv[bonded], send[bonded]])
    angles = bond_angles(bonds)
    return graph._replace(bonds=bonds, angles=angles, environments=atom_environments(bonds, z),
                          dihedrals=bond_dihedrals(bonds, z.numel()), nonbonded=nonbonded_pairs(graph, bonds, angles))


def with_covalent_bonds(graph: Graph, x: torch.Tensor, z: torch.Tensor) -> Graph:
    """``graph`` with its ``bonds``, ``angles``, ``dihedrals`` and atom ``environments`` perceived at
    positions x (N, 3) Å: a fixed topology, e.g. a rollout's start frame, which later frames keep
    however far they stretch a bond."""
    return with_bonds(graph, covalent_bonds(graph, x, z), z)


def window_graph(batch) -> Graph:
    """The complete graph of a FrameBatch's molecules with their covalent topology: ``batch.bonds`` (each
    window's trajectory's bonds at its median, data.elements.covalent_pairs) when it carries them, else
    perceived on batch.x. What training, one-step scoring and rollouts from data windows use, so a
    window caught mid-stretch keeps its molecule's bonds."""
    return topology_graph(batch.x, batch.z, batch.batch, bonds=batch.bonds)


def topology_graph(x, z, batch=None, bonds=None) -> Graph:
    """The complete graph inside each molecule with the covalent topology (bonds, angles, dihedrals,
    environments, non-bonded pairs): ``bonds`` (2, M) int64 (each both ways) when given, else perceived
    at positions x (N, 3) Å: what a rollout holds fixed. z (N,) atomic numbers; batch (N,) int64
    molecule of each atom, sorted (default: one molecule). Tensors or arrays; the graph lives on x's device."""
    x = torch.as_tensor(np.asarray(x, dtype=np.float64) if not torch.is_tensor(x) else x)
    z = torch.as_tensor(np.asarray(z, dtype=np.int64) if not torch.is_tensor(z) else z, device=x.device)
    batch = torch.zeros(len(z), dtype=torch.int64, device=x.device) if batch is None else batch
    if bonds is not None:
        return with_bonds(complete_graph(batch), torch.as_tensor(bonds, device=x.device), z)
    return with_covalent_bonds(complete_graph(batch), x, z)


def trajectory_graph(traj) -> Graph:
    """``topology_graph`` of one molecule's Trajectory ``traj`` with its bonds at the median over its frames
    (data.elements.covalent_pairs): what its windows carry, here for the fit and the checkpoint's record."""
    return topology_graph(traj.positions[0], traj.numbers, bonds=directed_bonds(covalent_pairs(traj.positions, traj.numbers)))


def nonbonded_pairs(graph: Graph, bonds: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """(2, P) int64 i < j: the edges of ``graph`` whose atoms are neither bonded (``bonds`` (2, M),
    both directions) nor the ends of a bond angle (``angles`` (3, A)): the pairs 1-4 and farther apart,
    which only a non-bonded (excluded-volume) term keeps apart."""
    recv, send = graph.receivers(), graph.col
    keep = recv < send
    i, j = recv[keep], send[keep]
    n = max(graph.num_nodes, 1)
    near = torch.cat([torch.minimum(bonds[0], bonds[1]) * n + torch.maximum(bonds[0], bonds[1]),
                      angles[0] * n + angles[2]])  # angles have i < k
    far = ~torch.isin(i * n + j, near)
    return torch.stack([i[far], j[far]])


def valence_types(graph: Graph) -> dict[str, list]:
    """The force-field types of ``graph``'s topology (with_covalent_bonds): sorted, each once, as
    atom-environment codes (atom_environments): "environments" [e], "bonds" [[e_i, e_j]] (e_i <= e_j),
    "angles" [[e_end, e_centre, e_end]] (ends ascending), "torsions" [[e_i, e_j, e_k, e_l]] (the
    smaller of the two readings). Plain lists, so that a checkpoint (and its JSON) can record them."""
    env = graph.environments.tolist()
    bonds = {tuple(sorted((env[i], env[j]))) for i, j in graph.bonds.T.tolist()}
    angles = {(min(env[i], env[k]), env[j], max(env[i], env[k])) for i, j, k in graph.angles.T.tolist()}
    torsions = {min(q, q[::-1]) for q in (tuple(env[a] for a in d) for d in graph.dihedrals.T.tolist())}
    return {"environments": sorted(set(env)), "bonds": [list(b) for b in sorted(bonds)],
            "angles": [list(a) for a in sorted(angles)], "torsions": [list(t) for t in sorted(torsions)]}


def type_label(key) -> str:
    """'C(C,H,H,H)-O(C,H)' for a valence type of valence_types (one code or a tuple of codes)."""
    return "-".join(environment_label(int(e)) for e in (key if isinstance(key, (list, tuple)) else [key]))
