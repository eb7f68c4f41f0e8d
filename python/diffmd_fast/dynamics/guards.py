"""Rollout health checks: decide after every generated frame which molecules are no longer physical.

A learned sampler can fail for one molecule while the others in the same batch are fine: a score
turns NaN, an atom is flung away, a bond is torn. A failed molecule must stop (its later frames
would be garbage conditioned on garbage) without taking the batch down with it. ``RolloutGuard``
holds what the checks need from the *start* frame (bonds, their lengths, the molecule's size) and
``check`` returns, per molecule, whether it failed; ``reports`` says where and why.

Checks, in the order a report prefers them when several fire at once (the first is the root
cause the others usually follow from):
1. ``non_finite_score``: the score network returned NaN/inf for an atom while sampling the frame.
2. ``non_finite``: a generated position is NaN/inf.
3. ``exploded_step``: an atom moved more than ``max_step`` Å from the previous frame.
4. ``left_bounding_radius``: an atom is farther from its molecule's centroid than the start
   frame's largest such distance plus ``radius_margin`` Å.
5. ``close_contact``: two atoms of a molecule came closer than ``contact_scale`` × the sum of their
   covalent radii (fused atoms: no frame with them is ever valid).
6. ``bond_broken``: a covalent bond of the rollout's topology (valence.topology: the start frame's
   pairs closer than BOND_SCALE × the sum of their covalent radii, the bonds the valence prior
   holds) changed length by more than ``bond_tolerance`` Å.
7. ``topology_change``: two atoms not bonded in the start frame came within ``new_bond_scale`` × the
   sum of their covalent radii, i.e. a bond formed (a proton transfer, two molecules merging). The
   valence prior holds the start frame's topology, so a rollout past this point is not chemistry
   the model describes.

Cost: a handful of (N, 3), (bonds,) and (pairs,) kernels and one host sync per frame; the pairs are
every atom pair inside a molecule, O(Σ n²) like the complete graph the score network runs on. The
per-molecule details are only computed when something failed.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

import torch
from ase.data import covalent_radii

from ..data.batch import FrameBatch
from ..evaluation.metrics import BOND_SCALE
from ..ops.graph import Graph

StopReason = Literal["non_finite_score", "non_finite", "exploded_step", "left_bounding_radius", "close_contact",
                     "bond_broken", "topology_change"]
PAIR_REASONS = ("close_contact", "topology_change")  # checks over the atom pairs of a molecule


@dataclass(frozen=True)
class GuardConfig:
    """Thresholds of the rollout health checks; ``math.inf`` switches a check off (finiteness is
    always checked).

    Defaults are safety nets for catastrophic failure, not quality metrics (metrics.py measures
    quality on the valid frames): thermal motion at 500 K is ~0.01-0.02 Å per 0.5 fs frame even for
    H, and bonds fluctuate by ~0.1-0.25 Å (bundled GFN2-xTB data), so 1 Å in one frame or a bond
    1 Å longer/shorter than at the start (C-H 1.09 -> 2.09 Å) cannot be a physical molecule. Raise
    ``max_step`` for strides above ~20 MD steps per frame.
    """

    max_step: float = 1.0  # Å an atom may move between consecutive frames
    radius_margin: float = 3.0  # Å beyond the start frame's largest atom-centroid distance
    bond_tolerance: float = 1.0  # Å a bond's length may differ from its start-frame length
    contact_scale: float = 0.6  # × sum of covalent radii: closer than this two atoms are fused (0: off)
    new_bond_scale: float = BOND_SCALE  # × sum of covalent radii: a pair not bonded at the start this close has bonded (0: off)

    def __post_init__(self) -> None:
        for name in ("max_step", "radius_margin", "bond_tolerance"):
            v = getattr(self, name)
            if not (v > 0):  # also rejects NaN
                raise ValueError(f"GuardConfig.{name} must be > 0 (math.inf disables the check), got {v}")
        for name in ("contact_scale", "new_bond_scale"):
            v = getattr(self, name)
            if not (0 <= v < math.inf):
                raise ValueError(f"GuardConfig.{name} must be a finite number >= 0 (0 disables the check), got {v}")

    @classmethod
    def finite_only(cls) -> "GuardConfig":
        """Only the NaN/inf checks."""
        return cls(max_step=math.inf, radius_margin=math.inf, bond_tolerance=math.inf, contact_scale=0.0,
                   new_bond_scale=0.0)


@dataclass(frozen=True)
class StopReport:
    """Why and where one molecule's rollout stopped. Its frames 1 .. frame-1 are valid."""

    molecule: int  # index of the molecule in the rollout's start batch
    frame: int  # 1-based index of the first generated frame that failed
    atom: int  # index of the offending atom inside its molecule
    reason: StopReason
    value: float  # measured quantity: Å (step, radius, |Δ bond length|); NaN for non-finite reasons
    limit: float  # the threshold it crossed, Å (NaN for non-finite reasons)
    partner: int | None = None  # the bond's or pair's other atom (inside the molecule)

    def message(self) -> str:
        what = {
            "non_finite_score": "got a NaN/inf score",
            "non_finite": "has a NaN/inf position",
            "exploded_step": f"moved {self.value:.3g} Å in one frame (limit {self.limit:.3g} Å)",
            "left_bounding_radius": f"is {self.value:.3g} Å from the centroid (limit {self.limit:.3g} Å)",
            "close_contact": f"is {self.value:.3g} Å from atom {self.partner} (fused atoms; limit {self.limit:.3g} Å)",
            "bond_broken": f"bond to atom {self.partner} changed by {self.value:.3g} Å (limit {self.limit:.3g} Å)",
            "topology_change": (f"bonded to atom {self.partner} at {self.value:.3g} Å (limit {self.limit:.3g} Å), which it "
                                "is not bonded to in the start frame: a reaction, outside the fixed-topology prior"),
        }[self.reason]
        return f"molecule {self.molecule} stopped at generated frame {self.frame}: atom {self.atom} {what}"

    def to_dict(self) -> dict:
        return asdict(self)


def _per_molecule_any(masks: torch.Tensor, owner: torch.Tensor, num: int) -> torch.Tensor:
    """(num,) bool: any entry of ``masks`` (K,) set for the molecule, ``owner`` (K,) the molecule of
    each entry (the atoms', then the bonds', then the pairs' of RolloutGuard._gathered)."""
    out = torch.zeros(num, dtype=torch.int32, device=masks.device)
    return out.index_add_(0, owner, masks.to(torch.int32)) > 0


def _centroids(x: torch.Tensor, batch: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """(B, 3) Å mean position of each molecule's atoms; ``count`` (B, 1) the molecules' atom counts."""
    return x.new_zeros(count.shape[0], 3).index_add_(0, batch, x) / count


class RolloutGuard:
    """Health checks of the molecules of one FrameBatch against its start frame ``start.x``.

    ``graph``: the rollout's topology (valence.topology.topology_graph of ``start``), whose covalent
    bonds the bond check watches. ``molecule_ids`` (B,) maps the batch's molecule indices to the ids reported (the start batch's
    indices: a guard restricted with ``subset`` keeps reporting the original ids)."""

    def __init__(self, cfg: GuardConfig, start: FrameBatch, graph: Graph, molecule_ids: torch.Tensor | None = None) -> None:
        self.cfg = cfg
        self.batch = start.batch  # (N,)
        self.num = start.num_graphs
        self.ids = torch.arange(self.num) if molecule_ids is None else molecule_ids.cpu()  # (B,)
        self.x0 = start.x  # (N, 3) Å
        counts = torch.bincount(self.batch.cpu(), minlength=self.num)
        self.first_atom = torch.cumsum(counts, 0) - counts  # (B,) global index of each molecule's atom 0
        self.atom_count = counts.to(self.x0)[:, None]  # (B, 1)
        c0 = _centroids(self.x0, self.batch, self.atom_count)
        r0 = (self.x0 - c0[self.batch]).norm(dim=-1)  # (N,) Å
        self.radius_limit = torch.zeros(self.num, dtype=r0.dtype, device=r0.device).scatter_reduce_(
            0, self.batch, r0, "amax") + cfg.radius_margin  # (B,) Å (radii >= 0, so the zero start is harmless)
        self.bonds, self.length0 = self._start_bonds(start, graph)  # (M, 2) global atom indices, (M,) Å
        self.pairs, self.contact_limit, self.new_bond_limit = self._pairs(start)  # (P, 2), (P,) Å, (P,) Å
        self._gathered()

    def _gathered(self) -> None:
        """Gathers every check() would repeat, fixed while the molecules are: each atom's radius limit
        (N,) Å, the bonds' two atoms (M,) each, and the molecule (N + M,) of each atom and then of
        each bond (one per-molecule reduction of the atom and bond masks together)."""
        self.atom_radius_limit = self.radius_limit[self.batch]
        self.bond_i, self.bond_j = self.bonds[:, 0].contiguous(), self.bonds[:, 1].contiguous()
        self.pair_i, self.pair_j = self.pairs[:, 0].contiguous(), self.pairs[:, 1].contiguous()
        self.owner = torch.cat([self.batch, self.batch[self.bond_i], self.batch[self.pair_i]])

    def _pairs(self, start: FrameBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(pairs (P, 2) global atom indices i < j of every pair inside a molecule, contact limit (P,) Å,
        new-bond limit (P,) Å: 0 for the start frame's bonds and when a check is off)."""
        device, n = start.x.device, start.x.shape[0]
        blocks = []
        for b in range(self.num):
            lo, count = int(self.first_atom[b]), int(self.atom_count[b])
            blocks.append(torch.triu_indices(count, count, 1).T + lo)
        pairs = torch.cat(blocks).to(device) if blocks else torch.zeros(0, 2, dtype=torch.int64, device=device)
        radii = torch.as_tensor(covalent_radii, dtype=start.x.dtype, device=device)[start.z]  # (N,) Å
        rsum = radii[pairs[:, 0]] + radii[pairs[:, 1]]  # (P,) Å
        bonded = torch.isin(pairs[:, 0] * n + pairs[:, 1], self.bonds.min(1).values * n + self.bonds.max(1).values)
        return pairs, self.cfg.contact_scale * rsum, torch.where(bonded, 0.0, self.cfg.new_bond_scale * rsum)

    def _start_bonds(self, start: FrameBatch, graph: Graph) -> tuple[torch.Tensor, torch.Tensor]:
        """((M, 2) atom pairs i < j bonded in ``graph``'s topology, (M,) their start lengths Å)."""
        bonds = graph.bonds[:, graph.bonds[0] < graph.bonds[1]].T.contiguous()  # (M, 2) each bond once
        return bonds, (start.x[bonds[:, 0]] - start.x[bonds[:, 1]]).norm(dim=-1)

    def subset(self, keep: torch.Tensor, current: FrameBatch) -> "RolloutGuard":
        """The guard of the molecules ``keep`` (B,) bool, for their sub-batch ``current``."""
        atoms = keep.to(self.batch.device)[self.batch]  # (N,) bool
        sub = object.__new__(RolloutGuard)
        sub.cfg, sub.batch, sub.num = self.cfg, current.batch, current.num_graphs
        sub.ids = self.ids[keep.cpu()]
        sub.x0 = self.x0[atoms]
        counts = torch.bincount(current.batch.cpu(), minlength=sub.num)
        sub.first_atom = torch.cumsum(counts, 0) - counts
        sub.atom_count = self.atom_count[keep.to(self.atom_count.device)]
        sub.radius_limit = self.radius_limit[keep.to(self.radius_limit.device)]
        bond_keep = atoms[self.bonds[:, 0]]  # bonds never cross molecules
        new_index = torch.cumsum(atoms.to(torch.int64), 0) - 1
        sub.bonds, sub.length0 = new_index[self.bonds[bond_keep]], self.length0[bond_keep]
        pair_keep = atoms[self.pairs[:, 0]]  # pairs never cross molecules either
        sub.pairs = new_index[self.pairs[pair_keep]]
        sub.contact_limit, sub.new_bond_limit = self.contact_limit[pair_keep], self.new_bond_limit[pair_keep]
        sub._gathered()
        return sub

    def _violations(self, x_prev: torch.Tensor, x: torch.Tensor, bad_score: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-atom (N,) or per-bond (M,) measures and violation masks, in report priority order."""
        non_finite = ~torch.isfinite(x).all(-1)  # (N,)
        step = torch.linalg.vector_norm(x - x_prev, dim=-1)  # (N,) Å
        radius = torch.linalg.vector_norm(x - _centroids(x, self.batch, self.atom_count)[self.batch], dim=-1)  # (N,) Å
        change = (torch.linalg.vector_norm(x[self.bond_i] - x[self.bond_j], dim=-1) - self.length0).abs()  # (M,) Å
        dist = torch.linalg.vector_norm(x[self.pair_i] - x[self.pair_j], dim=-1)  # (P,) Å
        return {
            "non_finite_score": (bad_score, bad_score),
            "non_finite": (non_finite, non_finite),
            "exploded_step": (step, step > self.cfg.max_step),
            "left_bounding_radius": (radius, radius > self.atom_radius_limit),
            "close_contact": (dist, dist < self.contact_limit),
            "bond_broken": (change, change > self.cfg.bond_tolerance),
            "topology_change": (dist, dist < self.new_bond_limit),
        }

    def check(self, x_prev: torch.Tensor, x: torch.Tensor, bad_score: torch.Tensor) -> torch.Tensor:
        """(B,) bool: molecules whose new frame ``x`` (N, 3) Å, following ``x_prev`` (N, 3), fails
        a check; ``bad_score`` (N,) bool marks atoms that got a non-finite score while sampling."""
        m = {k: mask for k, (_, mask) in self._violations(x_prev, x, bad_score).items()}
        atoms = m["non_finite_score"] | m["non_finite"] | m["exploded_step"] | m["left_bounding_radius"]  # (N,)
        pairs = m["close_contact"] | m["topology_change"]  # (P,)
        return _per_molecule_any(torch.cat([atoms, m["bond_broken"], pairs]), self.owner, self.num)

    def reports(self, failed: torch.Tensor, x_prev: torch.Tensor, x: torch.Tensor, bad_score: torch.Tensor,
                frame: int) -> list[StopReport]:
        """One StopReport per failed molecule (``failed`` from ``check``), root cause first."""
        checks = {k: (v.detach().cpu(), m.cpu()) for k, (v, m) in self._violations(x_prev, x, bad_score).items()}
        batch, bonds, pairs = self.batch.cpu(), self.bonds.cpu(), self.pairs.cpu()
        limits = {"exploded_step": self.cfg.max_step, "bond_broken": self.cfg.bond_tolerance,
                  "left_bounding_radius": self.atom_radius_limit.cpu(), "close_contact": self.contact_limit.cpu(),
                  "topology_change": self.new_bond_limit.cpu()}
        out = []
        for b in torch.nonzero(failed.cpu()).flatten().tolist():
            lo = int(self.first_atom[b])
            for reason, (value, mask) in checks.items():
                owner = batch[bonds[:, 0]] if reason == "bond_broken" else batch[pairs[:, 0]] if reason in PAIR_REASONS else batch
                hit = torch.nonzero(mask & (owner == b)).flatten()
                if hit.numel() == 0:
                    continue
                if reason.startswith("non_finite"):
                    out.append(StopReport(int(self.ids[b]), frame, int(hit[0]) - lo, reason, math.nan, math.nan))
                    break
                # the worst entry: the largest excess, or for the pair checks the closest pair
                worst = int(hit[torch.argmin(value[hit])]) if reason in PAIR_REASONS else int(hit[torch.argmax(value[hit])])
                limit = limits[reason] if isinstance(limits[reason], float) else float(limits[reason][worst])
                atom, partner = worst, None
                if reason == "bond_broken":
                    atom, partner = self._mover(bonds[worst], x.detach().cpu(), b)
                elif reason in PAIR_REASONS:
                    atom, partner = self._mover(pairs[worst], x.detach().cpu(), b)
                out.append(StopReport(int(self.ids[b]), frame, atom - lo, reason, float(value[worst]), limit,
                                      None if partner is None else partner - lo))
                break
        return out

    def _mover(self, bond: torch.Tensor, x: torch.Tensor, b: int) -> tuple[int, int]:
        """(atom, partner) of a broken bond or a failing pair: the atom that moved farther from its start position
        relative to the molecule's centroid is the one reported (a whole-molecule drift cancels)."""
        x0, batch = self.x0.detach().cpu(), self.batch.cpu()
        c, c0 = x[batch == b].mean(0), x0[batch == b].mean(0)
        i, j = int(bond[0]), int(bond[1])
        d = [float(((x[k] - c) - (x0[k] - c0)).norm()) for k in (i, j)]
        return (i, j) if d[0] >= d[1] else (j, i)
