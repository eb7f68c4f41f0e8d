"""Valence terms for chemistry a trained prior never saw: what ``diffmd generate --allow-unseen``
rolls out with (dynamics.preflight.check_start).

A BondPrior's tables hold the atom environments, bond and angle types of its training data.
``cover`` extends them, in place and for one structure, so that none of its terms is left at a zero
force constant (the loaded model's tables change; the checkpoint does not).
"""
from __future__ import annotations

import torch
from ase import units
from ase.data import chemical_symbols

from ..data.elements import ATOMIC_MASSES
from ..ops.graph import Graph
from .prior import BondPrior
from .topology import ENV_BASE, environment_label


def _type_element(prior: BondPrior, t: int) -> int:
    """Atomic number of table type ``t`` (BondPrior's class docstring)."""
    return t if t < prior.num_elements else int(prior.environments[t - prior.num_elements]) % ENV_BASE


def _type_name(prior: BondPrior, t: int) -> str:
    return chemical_symbols[t] if t < prior.num_elements else environment_label(int(prior.environments[t - prior.num_elements]))


@torch.no_grad()
def cover(prior: BondPrior, x: torch.Tensor, z: torch.Tensor, graph: Graph, unseen_bonds=(), unseen_angles=()) -> str:
    """Give the terms of one structure that the data never showed their own constants, in place
    (the loaded model's tables; the checkpoint is not changed). ``graph``: the structure's
    topology (with_covalent_bonds) at positions x (N, 3) Å, atomic numbers z (N,);
    ``unseen_bonds``, ``unseen_angles``: environment-code pairs and triples (valence.topology.valence_types)
    not in the training data. Returns the terms covered, one line ('' when none).

    Every unseen environment becomes a type of its own. Every bond and angle that has an unseen
    environment or type rests at the structure's own bond length or cos θ (a user's start
    structure is near its equilibrium; the element-pooled rest length would put a C=O at the
    data's C-O length) with the element pair's or triple's pooled force constant, else a generic
    one: the median of the data's constants (bonds capped where the Verlet step reaches ω Δt = 1);
    an angle's Urey-Bradley spring, if it has one, rests at the structure's own 1-3 distance.
    So no term has a zero force constant. Torsions without data stay without a term (a free rotor)."""
    x = x.to(torch.float64)
    known_envs = set(prior.environments.tolist())
    new = sorted(set(graph.environments.tolist()) - known_envs)
    if new:
        _add_environments(prior, new)
    t = prior.atom_types(z, graph)
    env = graph.environments
    fresh = ~torch.isin(env, torch.tensor(sorted(known_envs), dtype=env.dtype, device=env.device))  # (N,)
    bonds = {tuple(sorted(b)) for b in unseen_bonds}
    recv, send = graph.bonds
    pick = fresh[recv] | fresh[send] | (prior.k[t[recv], t[send]] <= 0) | torch.tensor(
        [tuple(sorted((int(env[r]), int(env[q])))) in bonds for r, q in zip(recv.tolist(), send.tolist())],
        dtype=torch.bool, device=recv.device)
    added = _cover_bonds(prior, x, t, graph.bonds[:, pick])
    if graph.angles is not None and graph.angles.shape[1] > 0:
        i, j, k = graph.angles
        triples = {(min(a[0], a[2]), a[1], max(a[0], a[2])) for a in unseen_angles}
        listed = torch.tensor([(min(int(env[p]), int(env[r])), int(env[q]), max(int(env[p]), int(env[r]))) in triples
                               for p, q, r in zip(i.tolist(), j.tolist(), k.tolist())], dtype=torch.bool)
        si, sj, sk = prior.slot[t[i]], prior.slot[t[j]], prior.slot[t[k]]
        pick = fresh[i] | fresh[j] | fresh[k] | listed.to(i.device) | (prior.angle_k[si, sj, sk] <= 0)
        added += _cover_angles(prior, x, t, graph.angles[:, pick])
    return ", ".join(added)


def _add_environments(prior: BondPrior, new: list[int]) -> None:
    """Add the environment codes ``new`` as types, their rows the element-pooled values (set_tables'
    fallback), every existing table entry kept under its renumbered types."""
    z1, old_n = prior.num_elements, prior.k.shape[0]
    envs = sorted(prior.environments.tolist() + list(new))
    remap = torch.arange(old_n)  # old type -> new type
    remap[z1:] = z1 + torch.tensor([envs.index(e) for e in prior.environments.tolist()], dtype=torch.int64)
    n = z1 + len(envs)
    element = torch.cat([torch.arange(z1), torch.tensor([e % ENV_BASE for e in envs], dtype=torch.int64)])  # (T',)
    dev = prior.k.device
    k_el, r0_el = prior.k[:z1, :z1].cpu(), prior.r0[:z1, :z1].cpu()
    k = k_el[element[:, None], element[None, :]].clone()
    r0 = r0_el[element[:, None], element[None, :]].clone()
    k[remap[:, None], remap[None, :]], r0[remap[:, None], remap[None, :]] = prior.k.cpu(), prior.r0.cpu()
    # angles: one new slot per new environment, its rows copied from its element's slot
    s_old = prior.angle_k.shape[0]
    slot = torch.full((n,), -1, dtype=torch.int64)
    slot[remap] = prior.slot.cpu()
    added = torch.tensor([envs.index(e) for e in new], dtype=torch.int64) + z1
    slot[added] = s_old + torch.arange(len(new))
    source = torch.cat([torch.arange(s_old), prior.slot.cpu()[element[added]]])  # (S',) slot whose values it takes
    valid = (source >= 0).double()
    src = source.clamp_min(0)
    pad = lambda t3: t3.cpu()[src[:, None, None], src[None, :, None], src[None, None, :]] * (  # noqa: E731
        valid[:, None, None] * valid[None, :, None] * valid[None, None, :])
    tables = [pad(t3) if s_old else torch.zeros((len(new),) * 3, dtype=torch.float64)
              for t3 in (prior.angle_k, prior.angle_c0, prior.ub_k, prior.ub_r0)]
    keys = []
    for key in prior.dihedral_keys.tolist():  # re-encoded in the new type numbering
        digits = [int(remap[(key // old_n**p) % old_n]) for p in (3, 2, 1, 0)]
        keys.append(int(prior.dihedral_key(*(torch.tensor(d) for d in digits), num_types=n)))
    order = sorted(range(len(keys)), key=keys.__getitem__)
    for name, value in (("k", k), ("r0", r0), ("environments", torch.tensor(envs, dtype=torch.int64)),
                        ("slot", slot), *zip(("angle_k", "angle_c0", "ub_k", "ub_r0"), tables),
                        ("dihedral_keys", torch.tensor([keys[o] for o in order], dtype=torch.int64)),
                        ("torsions", prior.torsions[torch.tensor(order, dtype=torch.int64)].reshape(-1, 4))):
        prior.replace_buffer(name, value.to(dev))


def _cover_bonds(prior: BondPrior, x: torch.Tensor, t: torch.Tensor, bonds: torch.Tensor) -> list[str]:
    """cover's bond part over the directed ``bonds`` (2, M') to give their own terms."""
    known = prior.k[prior.k > 0]
    generic = float(known.median()) if known.numel() else 20.0  # eV/Å²
    recv, send = bonds
    length = (x[recv] - x[send]).norm(dim=-1)  # (M',) Å
    added = []
    for a, b in sorted({tuple(sorted(p)) for p in torch.stack([t[recv], t[send]], 1).tolist()}):
        sel = ((t[recv] == a) & (t[send] == b)) | ((t[recv] == b) & (t[send] == a))
        ea, eb = _type_element(prior, a), _type_element(prior, b)
        k_max = 1.0 / (float(prior.frame_fs) * units.fs) ** 2 / (1 / ATOMIC_MASSES[ea] + 1 / ATOMIC_MASSES[eb])
        kk = float(prior.k[a, b]) if prior.k[a, b] > 0 else generic
        prior.k[a, b] = prior.k[b, a] = min(kk, k_max)
        prior.r0[a, b] = prior.r0[b, a] = length[sel].mean()
        added.append(f"bond {_type_name(prior, a)}-{_type_name(prior, b)}")
    return added


def _cover_angles(prior: BondPrior, x: torch.Tensor, t: torch.Tensor, angles: torch.Tensor) -> list[str]:
    """cover's angle part over ``angles`` (3, A') to give their own terms."""
    i, j, k = angles  # (A',) each
    u, w = x[i] - x[j], x[k] - x[j]
    cos = (u * w).sum(-1) / (u.norm(dim=-1) * w.norm(dim=-1)).clamp_min(1e-12)  # (A',)
    known = prior.angle_k[prior.angle_k > 0]
    generic = float(known.median()) if known.numel() else 5.0  # eV
    si, sj, sk = prior.slot[t[i]], prior.slot[t[j]], prior.slot[t[k]]
    if bool(((si < 0) | (sj < 0) | (sk < 0)).any()):
        raise ValueError("the valence prior has no angle slot for an element of this structure (its data had no "
                         "angle with it); it cannot be covered")
    added = []
    for a, c, b in sorted({(min(p[0], p[2]), p[1], max(p[0], p[2])) for p in torch.stack([si, sj, sk], 1).tolist()}):
        sel = (sj == c) & (((si == a) & (sk == b)) | ((si == b) & (sk == a)))
        kk = float(prior.angle_k[a, c, b]) if prior.angle_k[a, c, b] > 0 else generic
        prior.angle_k[a, c, b] = prior.angle_k[b, c, a] = kk
        prior.angle_c0[a, c, b] = prior.angle_c0[b, c, a] = cos[sel].mean()
        prior.ub_r0[a, c, b] = prior.ub_r0[b, c, a] = (x[i[sel]] - x[k[sel]]).norm(dim=-1).mean()  # its spring at rest too
        first = int(torch.nonzero(sel)[0])
        added.append(f"angle {'-'.join(_type_name(prior, int(t[v[first]])) for v in (i, j, k))}")
    return added
