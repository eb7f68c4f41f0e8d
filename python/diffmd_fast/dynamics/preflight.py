"""Checks of a rollout's start structure against what the model knows, before any frame is made.

A trained DiffMD model is a model of its training molecules: the valence prior has constants for
the atom environments and the bond, angle and torsion types its data showed, and the network has
seen nothing else. ``check_start`` refuses, with one line naming what is wrong, a start structure
- with an element the training data did not have (``check_elements``),
- with two atoms closer than the close-contact guard allows (guards.GuardConfig.contact_scale),
- with another number of molecules (bonded fragments) than the training trajectories had (two
  molecules given to a one-molecule model pass through each other: nothing holds them apart),
- with valence types the checkpoint was not trained on (``unseen_types``),
unless ``allow_unseen``: then it warns with the list, and the prior covers every unseen term with a
fallback that is never a zero force constant (valence.coverage.cover). What the checkpoint
was trained on is ``data["valence_types"]`` and ``data["fragments"]`` (``training_topology``,
recorded by training); checkpoints from before that record know only the prior's environments and
torsions, and no fragment count.
"""
from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence

import numpy as np
import torch
from ase.data import chemical_symbols, covalent_radii
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ..evaluation.metrics import bonds_from_reference
from ..valence.coverage import cover
from ..valence.topology import topology_graph, trajectory_graph, type_label, valence_types
from .guards import GuardConfig

KINDS = ("environments", "bonds", "angles", "torsions")


def _components(graph) -> np.ndarray:
    """(N,) int: the bonded fragment (connected component of the covalent bonds) of each atom of a
    valence.topology.topology_graph."""
    n = graph.num_nodes
    recv, send = graph.bonds.cpu().numpy()
    return connected_components(coo_matrix((np.ones(len(recv)), (recv, send)), shape=(n, n)), directed=False)[1]


def smallest_fragment(graph, z) -> str:
    """The atoms of ``graph``'s smallest bonded fragment, as 'atoms 7 (H)' or 'atoms 3, 4 (C, O)' (the
    first five), atomic numbers z (N,): which atom left its molecule."""
    from ase.data import chemical_symbols

    labels = _components(graph)
    atoms = np.flatnonzero(labels == np.argmin(np.bincount(labels)))[:5]
    return (f"atoms {', '.join(map(str, atoms))} "
            f"({', '.join(chemical_symbols[int(z[a])] for a in atoms)})")


def fragment_counts(graph, batch=None) -> list[int]:
    """Number of bonded fragments of each molecule of ``batch`` (N,) (default: one molecule) in a
    valence.topology.topology_graph: connected components of its covalent bonds."""
    n = graph.num_nodes
    labels = _components(graph)
    batch = np.zeros(n, dtype=np.int64) if batch is None else np.asarray(batch)
    owned = np.unique(np.stack([batch, labels], 1), axis=0)  # (fragments, 2) molecule, component
    return np.bincount(owned[:, 0], minlength=int(batch.max()) + 1 if n else 0).tolist()


def topology_change(traj, blocks: int = 16) -> str | None:
    """Where the covalent bonds of trajectory ``traj`` differ from its first block's, each of ``blocks``
    consecutive blocks of frames perceived at its median (data.elements.covalent_pairs: a bond
    stretched past the cutoff in a frame or two is no change, a reaction is), as 'frame 812: bonds
    broken 4-8, formed 0-8' (the block's first frame), or None when they never do."""
    x, z = traj.positions, np.asarray(traj.numbers)
    edges = np.unique(np.linspace(0, len(x), min(blocks, len(x)) + 1).astype(int))
    first = {tuple(p) for p in bonds_from_reference(x[edges[0]:edges[1]], z)}
    for t, stop in zip(edges[1:-1], edges[2:]):
        now = {tuple(p) for p in bonds_from_reference(x[t:stop], z)}
        if now != first:
            broken = ", ".join(f"{i}-{j}" for i, j in sorted(first - now)) or "none"
            formed = ", ".join(f"{i}-{j}" for i, j in sorted(now - first)) or "none"
            return f"frame {t}: bonds broken {broken}, formed {formed}"
    return None


def training_topology(trajs: Sequence) -> dict:
    """What a checkpoint records of its training molecules: "valence_types" (valence_types of every
    trajectory's topology at its median, merged) and "fragments" (the sorted fragment counts found). Warns when
    a trajectory's bonds change (topology_change): a reaction, which the valence prior's one fixed
    topology does not describe."""
    merged: dict[str, set] = {kind: set() for kind in KINDS}
    fragments = set()
    for traj in trajs:
        change = topology_change(traj)
        if change:
            warnings.warn(f"{traj.name}: the covalent bonds change during the trajectory ({change}): a reaction; the "
                          "valence prior holds one set of bonds, so rollouts of this model stop at a topology "
                          "change", stacklevel=2)
        graph = trajectory_graph(traj)
        for kind, keys in valence_types(graph).items():
            merged[kind].update(tuple(k) if isinstance(k, list) else k for k in keys)
        fragments.update(fragment_counts(graph))
    types = {kind: [list(k) if isinstance(k, tuple) else k for k in sorted(keys)] for kind, keys in merged.items()}
    return {"valence_types": types, "fragments": sorted(fragments)}


def trained_types(data: dict, prior) -> dict[str, set] | None:
    """{kind: set of keys} the checkpoint was trained on (KINDS); kinds an older checkpoint cannot
    tell are missing. ``data``: TrainedRun.data; ``prior``: the model's BondPrior or None."""
    recorded = data.get("valence_types")
    if recorded:
        return {kind: {tuple(k) if isinstance(k, list) else k for k in recorded[kind]} for kind in KINDS}
    if prior is None or prior.environments.numel() == 0:
        return None
    envs = prior.environments.tolist()
    return {"environments": set(envs), "torsions": set(prior.torsion_types())}


def unseen_types(mine: dict[str, list], known: dict[str, set]) -> dict[str, list]:
    """{kind: sorted keys of ``mine`` (a topology's valence_types) absent from ``known``}, kinds with any."""
    out = {}
    for kind in KINDS:
        if kind not in known:
            continue
        keys = [tuple(k) if isinstance(k, list) else k for k in mine[kind]]
        missing = sorted(k for k in keys if k not in known[kind])
        if missing:
            out[kind] = missing
    return out


def describe_unseen(unseen: dict[str, list], shown: int = 4) -> str:
    """'atom environments C(C,C,H,H); 2 angle types C(C,H,H,H)-C(C,C,H,H)-..., ...' (one line)."""
    names = {"environments": "atom environment", "bonds": "bond type", "angles": "angle type",
             "torsions": "torsion type"}
    parts = []
    for kind, keys in unseen.items():
        labels = [type_label(k) for k in keys[:shown]] + ([f"... ({len(keys) - shown} more)"] if len(keys) > shown else [])
        parts.append(f"{len(keys)} {names[kind]}{'s' if len(keys) > 1 else ''} {', '.join(labels)}")
    return "; ".join(parts)


def check_elements(numbers: Iterable[int], trained: Iterable[int] | None, what: str = "the start structure") -> None:
    """Raise ValueError when ``numbers`` hold an element the model never saw in training
    (``trained``: TrainedRun.data["elements"]; None or empty for old checkpoints: no check)."""
    known = set(trained or ())
    if not known:
        return
    new = sorted(set(int(z) for z in numbers) - known)
    if new:
        names = lambda zs: ",".join(chemical_symbols[z] for z in zs)  # noqa: E731
        raise ValueError(f"{what} contains {names(new)}, which the checkpoint was not trained on "
                         f"(trained on {names(sorted(known))}); --allow-unseen covers new atom environments and "
                         "valence types of known elements, not new elements: train on data with them")


def check_contacts(x: np.ndarray, z: np.ndarray, what: str, scale: float = GuardConfig().contact_scale,
                   batch: np.ndarray | None = None) -> None:
    """Raise ValueError when two atoms of one molecule, positions x (N, 3) Å, are closer than ``scale`` ×
    the sum of their covalent radii (the close-contact guard's limit): fused atoms are no start.
    ``batch`` (N,): the molecule of each atom (default: one), named in the message when there are several."""
    if scale <= 0 or len(z) < 2:
        return
    x = np.asarray(x, dtype=np.float64)
    batch = np.zeros(len(z), dtype=np.int64) if batch is None else np.asarray(batch)
    i, j = np.triu_indices(len(z), 1)
    i, j = i[batch[i] == batch[j]], j[batch[i] == batch[j]]  # pairs inside a molecule
    d = np.linalg.norm(x[i] - x[j], axis=-1)
    limit = scale * (covalent_radii[z[i]] + covalent_radii[z[j]])
    bad = np.flatnonzero(d < limit)
    if bad.size:
        w = bad[np.argmin(d[bad] / limit[bad])]
        first = int(np.searchsorted(batch, batch[i[w]]))  # the molecule's atom 0
        where = f"{what}, molecule {int(batch[i[w]])}" if batch[-1] > 0 else what
        raise ValueError(f"{where}: atoms {i[w] - first} ({chemical_symbols[z[i[w]]]}) and {j[w] - first} "
                         f"({chemical_symbols[z[j[w]]]}) are {d[w]:.3g} Å apart, closer than {scale:g} x their covalent "
                         f"radii ({limit[w]:.3g} Å): fused atoms; {bad.size} such pair{'s' if bad.size > 1 else ''} in all")


def check_start(run, x: np.ndarray, z: np.ndarray, *, batch: np.ndarray | None = None, allow_unseen: bool = False,
                what: str = "the start structure", guard: GuardConfig | None = None,
                bonds: torch.Tensor | None = None) -> tuple:
    """Check start structures x (N, 3) Å, z (N,), one molecule or the molecules of ``batch`` (N,),
    against the TrainedRun ``run`` (module docstring), and perceive the topology a rollout of them
    holds. Returns (their valence.topology.topology_graph, on the CPU; the warnings for the caller to
    show, with ``allow_unseen``). Raises ValueError (one line) on fused atoms, another fragment count,
    or unseen valence types without ``allow_unseen``. With ``allow_unseen`` it also gives the run's
    prior its fallback terms for these structures. ``guard``: whose contact limit fused atoms break
    (default GuardConfig()). ``bonds`` (2, M) int64, each both ways: the structures' covalent bonds when
    known (windows of a trajectory carry its bonds at the median, FrameBatch.bonds), else perceived on x."""
    x, z = np.asarray(x, dtype=np.float64), np.asarray(z, dtype=np.int64)
    check_elements(z, run.data.get("elements"), what)
    check_contacts(x, z, what, (guard or GuardConfig()).contact_scale, batch)  # before perceiving: fused atoms make no topology
    graph = topology_graph(x, z, None if batch is None else torch.as_tensor(np.asarray(batch, dtype=np.int64)), bonds=bonds)
    mine = valence_types(graph)
    notes = []
    fragments = run.data.get("fragments")
    other = [n for n in fragment_counts(graph, batch) if fragments and n not in fragments]
    if other:
        msg = (f"holds {other[0]} separate molecule{'s' if other[0] > 1 else ''} (bonded fragments; the smallest: "
               f"{smallest_fragment(graph, z)}), the training data {' or '.join(map(str, fragments))}: nothing in the "
               "model holds separate molecules apart")
        if not allow_unseen:
            raise ValueError(f"{what} {msg}; give one structure like the training data's (or --allow-unseen, "
                             "allow_unseen=True, to roll it out anyway)")
        notes.append(msg)
    prior = getattr(run.model, "bond_prior", None)
    known = trained_types(run.data, prior)
    unseen = unseen_types(mine, known) if known is not None else {}
    if unseen:
        listed = describe_unseen(unseen)
        if not allow_unseen:
            raise ValueError(f"{what} has types the checkpoint was not trained on: {listed}; train on data of this "
                             "molecule, or pass --allow-unseen (allow_unseen=True) to use the prior's fallback terms")
        notes.append(f"types the checkpoint was not trained on: {listed}")
    if allow_unseen and prior is not None:
        covered = cover(prior, torch.as_tensor(np.asarray(x, dtype=np.float64)), torch.as_tensor(z), graph,
                        unseen.get("bonds", ()), unseen.get("angles", ()))
        if covered:
            notes.append(f"generic valence terms (the start structure's own geometry) for {covered}")
    return graph, [f"{what}: {note}" for note in notes]
