"""Graphs in CSR form over receivers: ``row_ptr`` (N+1,) and ``col`` (E,) hold, for receiver i,
its senders j = col[row_ptr[i]:row_ptr[i+1]]. Molecules of a batch are disjoint blocks. A graph may
carry a covalent topology (bonds, angles, dihedrals, atom environments), which valence/topology.py
perceives.
"""
from __future__ import annotations

from typing import NamedTuple

import torch


class Graph(NamedTuple):
    row_ptr: torch.Tensor  # (N+1,) int64
    col: torch.Tensor  # (E,) int64 senders
    # (2, M) int64: receiver and sender of every directed covalent bond of the molecules' topology
    # (valence.topology.topology_graph); None: not perceived (a consumer that needs bonds perceives them on its
    # own positions)
    bonds: torch.Tensor | None = None
    # (3, A) int64: end i, centre j, end k (i < k) of every bond angle of that topology (bond_angles)
    angles: torch.Tensor | None = None
    # (N,) int64: each atom's chemical environment in that topology (atom_environments)
    environments: torch.Tensor | None = None
    # (4, D) int64: i, j, k, l of every proper dihedral (torsion) of that topology (bond_dihedrals)
    dihedrals: torch.Tensor | None = None
    # (2, P) int64: i < j of every edge of the graph more than two bonds apart in that topology (nonbonded_pairs)
    nonbonded: torch.Tensor | None = None

    @property
    def num_nodes(self) -> int:
        return self.row_ptr.numel() - 1

    @property
    def num_edges(self) -> int:
        return self.col.numel()

    def to(self, device) -> "Graph":
        """This graph with every tensor on ``device``."""
        return Graph(*(None if t is None else t.to(device) for t in self))

    def receivers(self) -> torch.Tensor:
        """(E,) int64 receiver i of every edge."""
        counts = self.row_ptr[1:] - self.row_ptr[:-1]
        return torch.repeat_interleave(torch.arange(self.num_nodes, device=self.col.device), counts)


def _check_batch(batch: torch.Tensor) -> None:
    if batch.dim() != 1 or batch.dtype != torch.int64:
        raise ValueError(f"batch must be a 1-D int64 tensor, got shape {tuple(batch.shape)} {batch.dtype}")
    if batch.numel() > 1 and bool((batch[1:] < batch[:-1]).any()):
        raise ValueError("batch must be sorted: molecules are contiguous blocks of atoms")


def complete_graph(batch: torch.Tensor) -> Graph:
    """All ordered pairs i != j inside each molecule. O(sum of n_mol^2) memory, which is the edge count."""
    _check_batch(batch)
    n = batch.numel()
    device = batch.device
    if n == 0:
        return Graph(torch.zeros(1, dtype=torch.int64, device=device), torch.zeros(0, dtype=torch.int64, device=device))
    _, counts = torch.unique_consecutive(batch, return_counts=True)  # (B,) atoms per molecule
    starts = torch.cumsum(counts, 0) - counts  # (B,) first atom of each molecule
    per_node = torch.repeat_interleave(counts, counts)  # (N,) size of the node's molecule
    deg = per_node - 1
    row_ptr = torch.zeros(n + 1, dtype=torch.int64, device=device)
    row_ptr[1:] = torch.cumsum(deg, 0)
    # For receiver i in a molecule starting at s with size c, senders are s..s+c-1 except i.
    node_start = torch.repeat_interleave(starts, counts)  # (N,)
    edge_recv = torch.repeat_interleave(torch.arange(n, device=device), deg)  # (E,)
    offset = torch.arange(edge_recv.numel(), device=device) - row_ptr[edge_recv]  # position in the row
    local_i = edge_recv - node_start[edge_recv]
    col = node_start[edge_recv] + offset + (offset >= local_i).to(torch.int64)
    return Graph(row_ptr, col)


def radius_graph(x: torch.Tensor, batch: torch.Tensor, r: float) -> Graph:
    """Pairs i != j of the same molecule with |x_i - x_j| < r (Å), senders sorted per receiver.

    Runs the compiled cell-list builder (O(N) for bounded density); without the extension a
    blocked O(N^2) PyTorch fallback runs instead.
    """
    _check_batch(batch)
    if x.dim() != 2 or x.shape[1] != 3 or x.shape[0] != batch.numel():
        raise ValueError(f"x must be (N, 3) with N = len(batch) = {batch.numel()}, got {tuple(x.shape)}")
    if not (r > 0 and r < float("inf")):
        raise ValueError(f"radius must be positive and finite, got {r}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("radius_graph: positions contain NaN or inf")
    from . import fused

    if fused.HAS_EXTENSION:
        return Graph(*fused.radius_graph(x, batch, r))
    return _radius_graph_torch(x.detach(), batch, float(r))


def _radius_graph_torch(x: torch.Tensor, batch: torch.Tensor, r: float, block: int = 4096) -> Graph:
    n = x.shape[0]
    rows, cols = [], []
    for s in range(0, n, block):
        d = torch.cdist(x[s : s + block].double(), x.double())  # (b, N)
        mask = (d < r) & (batch[s : s + block, None] == batch[None, :])
        mask[torch.arange(mask.shape[0]), torch.arange(s, s + mask.shape[0])] = False
        i, j = mask.nonzero(as_tuple=True)
        rows.append(i + s)
        cols.append(j)
    row = torch.cat(rows) if rows else torch.zeros(0, dtype=torch.int64)
    col = torch.cat(cols) if cols else torch.zeros(0, dtype=torch.int64)
    row_ptr = torch.zeros(n + 1, dtype=torch.int64, device=x.device)
    row_ptr[1:] = torch.cumsum(torch.bincount(row, minlength=n), 0)
    return Graph(row_ptr, col)
