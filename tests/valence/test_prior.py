"""The harmonic bonded-terms prior of the anchor (valence/prior.py): its force is -∇U of the harmonic
bonds and angles of a fixed topology and nothing else, with constants per atom environment where the
data has them and per element otherwise, prior-only MD conserves energy and keeps the data's
pair-distance distribution, its tables come from the data, and they travel with checkpoints."""
from dataclasses import replace

import numpy as np
import pytest
import torch
from ase import units
from ase.data import atomic_masses, covalent_radii

from diffmd_fast.config import Config, TrainConfig
from diffmd_fast.data import bundled, load_trajectory
from diffmd_fast.valence.prior import BondPrior
from diffmd_fast.evaluation.longrun import HR_BINS, HR_R_MAX, hr_errors, hr_histogram
from diffmd_fast.valence.fit import angle_statistics, bond_statistics, environment_statistics
from diffmd_fast.nn.score_net import ScoreNet
from diffmd_fast.ops.graph import complete_graph
from diffmd_fast.valence.topology import ENV_BASE, with_covalent_bonds
from diffmd_fast.training.run import load_run
from diffmd_fast.training.loop import train
from model_helpers import TINY


def _prior(k=30.0, r0=1.0, frame_fs=1.0) -> BondPrior:
    prior = BondPrior(10)
    prior.k.fill_(k)
    prior.r0.fill_(r0)
    prior.frame_fs.fill_(frame_fs)
    return prior


def _matched(k, za: int, zb: int, frame_fs: float):
    """k [sin(ωΔt/2)/(ωΔt/2)]², ω = sqrt(k/μ): the constant set_tables stores for a spring k (eV/Å²)
    between elements za, zb at ``frame_fs`` fs frames (BondPrior's module docstring)."""
    mu = atomic_masses[za] * atomic_masses[zb] / (atomic_masses[za] + atomic_masses[zb])
    half = 0.5 * frame_fs * units.fs * np.sqrt(k / mu)
    with np.errstate(invalid="ignore"):  # k = 0: 0/0, no spring
        return k * (np.sin(half) / half) ** 2


def _energy_force(x: torch.Tensor, pairs, k: float, r0: float) -> torch.Tensor:
    xr = x.clone().requires_grad_()
    energy = sum(0.5 * k * ((xr[i] - xr[j]).norm() - r0) ** 2 for i, j in pairs)
    return torch.autograd.grad(-energy, xr)[0]


def test_step_is_the_harmonic_force_of_the_covalent_bonds_only():
    # O-H-O bent: both O-H bonded (< 1.2 x the covalent radii), the O...O pair at ~1.4 x is not, and a far atom
    x = torch.tensor([[0.0, 0.0, 0.0], [0.98, 0.05, 0.0], [1.48, 0.9, -0.03], [9.0, 9.0, 9.0]],
                     dtype=torch.float64)
    z = torch.tensor([8, 1, 8, 6])
    rho = lambda i, j: float((x[i] - x[j]).norm()) / (covalent_radii[z[i]] + covalent_radii[z[j]])
    assert rho(0, 1) < 1.2 and rho(1, 2) < 1.2 and 1.2 < rho(0, 2) < 1.6
    step = _prior(k=30.0, r0=0.97)(x, z, complete_graph(torch.zeros(4, dtype=torch.int64)))
    mass = torch.as_tensor(atomic_masses[z.numpy()], dtype=torch.float64).unsqueeze(-1)
    expected = units.fs**2 * _energy_force(x, [(0, 1), (1, 2)], 30.0, 0.97) / mass
    torch.testing.assert_close(step, expected, rtol=1e-12, atol=1e-15)
    assert torch.equal(step[3], torch.zeros(3, dtype=torch.float64))  # far away: no bond, no force


def test_angle_force_is_minus_the_gradient_of_the_cosine_harmonic_energy():
    # H2O-like plus a C on the O (two angles at O), random geometry, and an angle through 180 degrees
    torch.manual_seed(0)
    z = torch.tensor([8, 1, 1, 6])
    x = torch.tensor([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.3, 0.92, 0.0], [-0.5, -0.6, 1.2]], dtype=torch.float64)
    x = x + 0.05 * torch.randn_like(x)
    graph = with_covalent_bonds(complete_graph(torch.zeros(4, dtype=torch.int64)), x, z)
    assert sorted(map(tuple, graph.angles.T.tolist())) == [(1, 0, 2), (1, 0, 3), (2, 0, 3)]
    angles = {(1, 8, 1): (5.0, -0.3), (1, 8, 6): (7.0, -0.2)}
    prior = BondPrior(10)
    prior.set_tables(torch.zeros(11, 11, dtype=torch.float64), torch.zeros(11, 11, dtype=torch.float64), 1.0, angles)
    xr = x.clone().requires_grad_()
    energy = 0.0
    for i, j, k in graph.angles.T.tolist():
        u, w = xr[i] - xr[j], xr[k] - xr[j]
        kk, c0 = angles[(min(int(z[i]), int(z[k])), int(z[j]), max(int(z[i]), int(z[k])))]
        energy = energy + 0.5 * kk * ((u @ w) / (u.norm() * w.norm()) - c0) ** 2
    (expected,) = torch.autograd.grad(-energy, xr)
    torch.testing.assert_close(prior.force(x, z, graph), expected, rtol=1e-12, atol=1e-14)
    straight = torch.tensor([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.96, 0.0, 0.0], [0.0, 0.0, 9.0]], dtype=torch.float64)
    assert torch.isfinite(prior.force(straight, z, graph)).all()


def test_environment_constants_take_precedence_and_unknown_environments_fall_back():
    # H-O-C-H: element tables for every pair and triple; environment tables only for the O-H bond
    # (H(O) with O(H,C)) and the H-O-C angle. Under another neighbour (a second H on the C: the C's
    # environment changes) the C-O bond and the angle fall back to the element values.
    z = torch.tensor([1, 8, 6, 1])
    x = torch.tensor([[0.0, 0.95, 0.0], [0.0, 0.0, 0.0], [1.4, 0.0, 0.0], [1.8, -1.0, 0.1]], dtype=torch.float64)
    graph = with_covalent_bonds(complete_graph(torch.zeros(4, dtype=torch.int64)), x, z)
    assert sorted(map(tuple, graph.bonds.T.tolist())) == [(0, 1), (1, 0), (1, 2), (2, 1), (2, 3), (3, 2)]
    h_o, o_hc, c_ho = 1 + 8 * ENV_BASE, 8 + 1 * ENV_BASE + 6 * ENV_BASE**2, 6 + 1 * ENV_BASE + 8 * ENV_BASE**2
    k, r0 = torch.full((11, 11), 20.0, dtype=torch.float64), torch.full((11, 11), 1.1, dtype=torch.float64)
    angles = {(1, 8, 6): (4.0, -0.3), (1, 6, 8): (3.0, -0.35)}
    prior = BondPrior(10)
    prior.set_tables(k, r0, 1.0, angles, {(o_hc, h_o): (40.0, 0.97), (o_hc, c_ho): (30.0, 1.43)},
                     {(h_o, o_hc, c_ho): (6.0, -0.25)})
    assert prior.environments.tolist() == sorted([h_o, o_hc, c_ho])
    assert prior.atom_types(z, graph).tolist() == [11, 12, 13, 1]  # the last H, H(C): not in the data, so z

    def expected(x, bond_terms, angle_terms):
        xr = x.clone().requires_grad_()
        energy = sum(0.5 * kk * ((xr[i] - xr[j]).norm() - rr) ** 2 for (i, j), (kk, rr) in bond_terms.items())
        for (i, j, kk_), (kk, c0) in angle_terms.items():
            u, w = xr[i] - xr[j], xr[kk_] - xr[j]
            energy = energy + 0.5 * kk * ((u @ w) / (u.norm() * w.norm()) - c0) ** 2
        return torch.autograd.grad(-energy, xr)[0]

    oh, oc, ch = _matched(40.0, 8, 1, 1.0), _matched(30.0, 8, 6, 1.0), _matched(20.0, 6, 1, 1.0)  # as stored
    want = expected(x, {(0, 1): (oh, 0.97), (1, 2): (oc, 1.43), (2, 3): (ch, 1.1)},
                    {(0, 1, 2): (6.0, -0.25), (1, 2, 3): (3.0, -0.35)})
    torch.testing.assert_close(prior.force_reference(x, z, graph), want, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(prior.force(x, z, graph), want, rtol=1e-12, atol=1e-14)  # the op, when built
    # the same molecule with a second H on the C: C(H,H,O) is not in the data
    z2, x2 = torch.cat([z, torch.tensor([1])]), torch.cat([x, torch.tensor([[1.8, 0.6, 0.8]], dtype=torch.float64)])
    graph2 = with_covalent_bonds(complete_graph(torch.zeros(5, dtype=torch.int64)), x2, z2)
    assert prior.atom_types(z2, graph2).tolist() == [11, 12, 6, 1, 1]
    want2 = expected(x2, {(0, 1): (oh, 0.97), (1, 2): (_matched(20.0, 8, 6, 1.0), 1.1), (2, 3): (ch, 1.1), (2, 4): (ch, 1.1)},
                     {(0, 1, 2): (4.0, -0.3), (1, 2, 3): (3.0, -0.35), (1, 2, 4): (3.0, -0.35)})
    torch.testing.assert_close(prior.force_reference(x2, z2, graph2), want2, rtol=1e-12, atol=1e-14)


def test_urey_bradley_springs_are_stored_verlet_matched_for_their_ends_and_are_minus_the_gradient():
    # water's H-O-H with a spring between the hydrogens: stored at the H-H pair's matched constant
    # (ends' reduced mass), the force is -∇ of the energy with it, and without a spring nothing changes
    z = torch.tensor([8, 1, 1])
    x = torch.tensor([[0.0, 0.0, 0.0], [0.97, 0.02, 0.0], [-0.25, 0.93, 0.05]], dtype=torch.float64)
    graph = with_covalent_bonds(complete_graph(torch.zeros(3, dtype=torch.int64)), x, z)
    h_o, o_hh = 1 + 8 * ENV_BASE, 8 + ENV_BASE + ENV_BASE**2
    k, r0 = torch.full((11, 11), 45.0, dtype=torch.float64), torch.full((11, 11), 0.96, dtype=torch.float64)
    plain, sprung = BondPrior(10), BondPrior(10)
    for prior, springs in ((plain, None), (sprung, {(h_o, o_hh, h_o): (3.0, 1.52)})):
        prior.set_tables(k, r0, 2.0, typed_bonds={(h_o, o_hh): (45.0, 0.96)}, typed_angles={(h_o, o_hh, h_o): (4.0, -0.27)},
                         typed_urey_bradley=springs)
    t = sprung.atom_types(z, graph)
    s = sprung.slot[t]
    assert float(sprung.ub_k[s[1], s[0], s[2]]) == pytest.approx(_matched(3.0, 1, 1, 2.0), rel=1e-12)
    assert float(sprung.ub_r0[s[1], s[0], s[2]]) == 1.52 and float(plain.ub_k.abs().sum()) == 0.0
    xr = x.clone().requires_grad_()
    grad = torch.autograd.grad(sprung.energy(xr, z, graph), xr)[0]
    torch.testing.assert_close(sprung.force_reference(x, z, graph), -grad, rtol=1e-10, atol=1e-12)
    spring = -float(sprung.ub_k[s[1], s[0], s[2]]) * ((x[1] - x[2]).norm() - 1.52) * (x[1] - x[2]) / (x[1] - x[2]).norm()
    torch.testing.assert_close(sprung.force_reference(x, z, graph)[1] - plain.force_reference(x, z, graph)[1], spring,
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_torsion_force_is_minus_the_gradient_of_the_mirror_symmetric_wells(seed):
    # random chains of 6 carbons (3 dihedrals), random torsion constants with φ0 off 0 and π
    gen = torch.Generator().manual_seed(seed)
    steps = torch.nn.functional.normalize(torch.randn(6, 3, generator=gen, dtype=torch.float64), dim=-1)
    x = 1.45 * steps.cumsum(0)
    z = torch.full((6,), 6)
    graph = with_covalent_bonds(complete_graph(torch.zeros(6, dtype=torch.int64)), x, z)
    assert graph.dihedrals.shape[1] >= 3 and graph.angles.shape[1] >= 4
    env = graph.environments.tolist()
    torsions = {}
    for q in graph.dihedrals.T.tolist():
        kappa, n, phi0 = (float(v) for v in (1 + 9 * torch.rand(1, generator=gen), torch.randint(1, 4, (1,), generator=gen),
                                              0.3 + 2.5 * torch.rand(1, generator=gen)))
        torsions[tuple(env[a] for a in q)] = (0.04, kappa, int(n), phi0)
    prior = BondPrior(10)
    prior.set_tables(torch.zeros(11, 11, dtype=torch.float64), torch.zeros(11, 11, dtype=torch.float64), 1.0,
                     typed_dihedrals=torsions)
    key = lambda q: min(tuple(env[a] for a in q), tuple(env[a] for a in q)[::-1])
    table = {min(k, k[::-1]): v for k, v in torsions.items()}

    def energy(xr):
        total = 0.0
        for q in graph.dihedrals.T.tolist():
            kt, kappa, n, phi0 = table[key(q)]
            b1, b2, b3 = xr[q[1]] - xr[q[0]], xr[q[2]] - xr[q[1]], xr[q[3]] - xr[q[2]]
            n1, n2 = torch.linalg.cross(b1, b2), torch.linalg.cross(b2, b3)
            phi = torch.atan2(b2.norm() * (b1 @ n2), n1 @ n2)
            wells = torch.stack([kappa * torch.cos(n * (phi - phi0)), kappa * torch.cos(n * (phi + phi0))])
            total = total - kt * torch.logsumexp(wells, 0)
        return total

    xr = x.clone().requires_grad_()
    (want,) = torch.autograd.grad(-energy(xr), xr)
    got = prior.force_reference(x, z, graph)
    assert float(want.abs().max()) > 1e-3
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(prior.force(x, z, graph), want, rtol=1e-10, atol=1e-12)
    mirror = torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64))  # flips every dihedral's sign
    torch.testing.assert_close(prior.force(x @ mirror, z, graph), want @ mirror, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(energy(x @ mirror), energy(x), rtol=1e-12, atol=1e-14)


def test_torsion_fit_recovers_the_wells_it_samples():
    # C-C-C-C chains (1.5 Å bonds, 110° angles) whose dihedral is drawn from known distributions: a
    # mirror pair of wells at ±70° (n = 1, κ = 20), a three-fold rotor at 60°, 180°, 300° (n = 3), a
    # planar torsion about 0° (n = 1, one well)
    from diffmd_fast.data.trajectory import Trajectory
    from diffmd_fast.valence.fit import _torsions, _valence_terms

    rng = np.random.default_rng(0)
    theta = np.radians(110.0)

    def chain(phi):  # (T,) rad -> (T, 4, 3) Å: i at the cis side of j-k for φ = 0
        pos = np.zeros((len(phi), 4, 3))
        pos[:, 0] = [1.5 * np.cos(theta), 1.5 * np.sin(theta), 0.0]
        pos[:, 2] = [1.5, 0.0, 0.0]
        pos[:, 3] = np.stack([1.5 - 1.5 * np.cos(theta) + 0 * phi, 1.5 * np.sin(theta) * np.cos(phi),
                              1.5 * np.sin(theta) * np.sin(phi)], -1)
        return pos + 1e-3 * rng.standard_normal(pos.shape)

    t = 4000
    mirror = rng.choice([-1.0, 1.0], t) * rng.vonmises(np.radians(70.0), 20.0, t)
    rotor = rng.vonmises(np.pi, 10.0, t) / 3 + rng.choice([0.0, 1.0, 2.0], t) * 2 * np.pi / 3  # 3φ about π
    planar = rng.vonmises(0.0, 30.0, t)  # one well at 0: not a pair of wells either side of it
    for phi, n_want, phi0_want, kappa_want in ((mirror, 1, 70.0, 20.0), (rotor, 3, 60.0, 10.0), (planar, 1, 0.0, 30.0)):
        traj = Trajectory(positions=chain(phi), numbers=np.full(4, 6), dt_fs=0.5)
        ((kt, kappa, n, phi0),) = _torsions(_valence_terms([traj])).values()
        assert n == n_want and abs(abs(np.degrees(phi0)) - phi0_want) < 2.0, (n, np.degrees(phi0))
        assert abs(kappa / kappa_want - 1) < 0.15 and kt > 0, kappa


def test_the_dihedrals_about_one_bond_share_its_rotation_energy():
    # ethane's C-C bond carries 9 H-C-C-H dihedrals, a C(sp2)-C(sp2) ring bond 4, a C-C-C-C chain 1
    from diffmd_fast.valence.fit import _torsions_about

    b = ENV_BASE
    h, methyl, ring_c, chain_c = 1 + 6 * b, 6 + b + b**2 + b**3 + 6 * b**4, 6 + b + 6 * b**2 + 6 * b**3, 6 + 6 * b + 6 * b**2
    assert _torsions_about((h, methyl, methyl, h)) == 9
    assert _torsions_about((h, ring_c, ring_c, ring_c)) == 4
    assert _torsions_about((6 + 6 * b, chain_c, chain_c, 6 + 6 * b)) == 1


def test_environment_constants_bring_prior_only_aspirin_closer_to_the_data():
    # aspirin's C-O (1.36 Å) and C=O (1.21 Å), ring C-C (1.39 Å) and ring-carboxyl C-C (1.48 Å) share an
    # element pair: pooled, every one of those bonds sits 0.01-0.1 Å off its own length
    traj = load_trajectory(bundled("aspirin"))
    stride, starts = 2, [0, 500, 1000, 1500]
    z = torch.as_tensor(traj.numbers).repeat(len(starts))
    batch = torch.arange(len(starts)).repeat_interleave(len(traj.numbers))
    frames = [torch.as_tensor(np.concatenate([traj.positions[t + d] for t in starts])) for d in (0, stride)]
    graph = with_covalent_bonds(complete_graph(batch), frames[1], z)
    h_ref, edges = hr_histogram(traj.positions)
    jsd = {}
    for typed in (False, True):
        prior = BondPrior(10)
        prior.set_tables(*bond_statistics([traj], 10), stride * traj.dt_fs, angle_statistics([traj]),
                         *(environment_statistics([traj]) if typed else ()))
        out, (x_prev, x) = [], frames
        for _ in range(300):
            x_prev, x = x, 2.0 * x - x_prev + prior(x, z, graph)
            out.append(x.reshape(len(starts), -1, 3).numpy())
        jsd[typed] = hr_errors(hr_histogram(np.concatenate(out))[0], h_ref, edges)[1]
    assert jsd[True] < 0.6 * jsd[False], jsd


def test_a_fixed_topology_pulls_back_however_far_and_ignores_newcomers():
    z = torch.tensor([6, 6, 6])
    rho = 2 * covalent_radii[6]
    start = torch.tensor([[0.0, 0.0, 0.0], [rho, 0.0, 0.0], [0.0, 5.0, 0.0]], dtype=torch.float64)
    graph = with_covalent_bonds(complete_graph(torch.zeros(3, dtype=torch.int64)), start, z)
    assert sorted(map(tuple, graph.bonds.T.tolist())) == [(0, 1), (1, 0)]
    prior = _prior(k=25.0, r0=rho)
    for stretch, sign in [(3.0, -1.0), (1.2, -1.0), (0.9, 1.0)]:  # stretched: pulled together; compressed: apart
        x = start.clone()
        x[1, 0] = stretch * rho
        x[2] = torch.tensor([stretch * rho, 1.0 * rho, 0.0])  # atom 2 comes within bonding range of atom 1
        step = prior(x, z, graph)
        assert float(step[1, 0]) * sign > 0 and torch.allclose(step[0], -step[1])
        assert torch.equal(step[2], torch.zeros(3, dtype=torch.float64))  # not in the topology: no force
    at_rest = start.clone()
    assert float(prior(at_rest, z, graph).abs().max()) < 1e-15


def test_prior_only_verlet_keeps_the_data_temperature_and_pair_distances():
    # The anchor alone (no network) is Verlet MD of a harmonic valence model: it must conserve energy. A
    # prior that re-perceived bonds by distance on every frame captured 1-3 neighbours and heated
    # ethanol from ~560 K to thousands of K within 30 frames.
    traj = load_trajectory(bundled("ethanol"))
    k, r0 = bond_statistics([traj], 10)
    stride = 2
    prior = BondPrior(10)
    prior.set_tables(k, r0, stride * traj.dt_fs, angle_statistics([traj]))
    starts = [0, 200, 400, 600]
    z = torch.as_tensor(traj.numbers).repeat(len(starts))
    batch = torch.arange(len(starts)).repeat_interleave(len(traj.numbers))
    frames = [torch.as_tensor(np.concatenate([traj.positions[t + d] for t in starts])) for d in (0, stride)]
    graph = with_covalent_bonds(complete_graph(batch), frames[1], z)
    mass = torch.as_tensor(atomic_masses[z.numpy()], dtype=torch.float64)
    temps, frames_out = [], []
    x_prev, x = frames
    for _ in range(400):
        x_prev, x = x, 2.0 * x - x_prev + prior(x, z, graph)
        v = (x - x_prev) / (stride * traj.dt_fs) / units.fs  # ASE velocity units
        temps.append(float((mass * (v**2).sum(-1)).sum()) / (3 * len(z) * units.kB))
        frames_out.append(x.reshape(len(starts), -1, 3).numpy())
    first, last = np.mean(temps[:100]), np.mean(temps[-100:])
    assert abs(last / first - 1.0) < 0.1, (first, last)
    # bonds and angles fix most pair distances of a small molecule: h(r) close to the data's
    edges = np.linspace(0.0, HR_R_MAX, HR_BINS + 1)
    h = hr_histogram(np.concatenate(frames_out))[0]
    assert hr_errors(h, hr_histogram(traj.positions)[0], edges)[1] < 0.03


@pytest.mark.parametrize("k", [45.0, 20.0])  # eV/Å²: an O-H stretch (ωΔt = 1.4 at 2 fs), a softer one
def test_a_verlet_matched_spring_oscillates_at_its_own_frequency(k):
    # an O-H pair on a line: the bond extension e obeys the Verlet recurrence of one harmonic spring,
    # e(t+1) + e(t-1) = 2 cos θ e(t), and matching makes θ = ωΔt exactly (unmatched: 6-10 % fast)
    frame_fs = 2.0
    prior = BondPrior(10)
    prior.set_tables(torch.full((11, 11), k, dtype=torch.float64), torch.full((11, 11), 0.97, dtype=torch.float64), frame_fs)
    z = torch.tensor([8, 1])
    x = torch.tensor([[0.0, 0.0, 0.0], [1.02, 0.0, 0.0]], dtype=torch.float64)
    graph = with_covalent_bonds(complete_graph(torch.zeros(2, dtype=torch.int64)), x, z)
    frames = [x, x]
    for _ in range(40):
        frames.append(2 * frames[-1] - frames[-2] + prior(frames[-1], z, graph))
    e = torch.stack([f[1, 0] - f[0, 0] - 0.97 for f in frames]).numpy()  # (T,) Å
    big = np.abs(e[1:-1]) > 1e-3
    cos_theta = ((e[2:] + e[:-2]) / (2 * e[1:-1]))[big]
    mu = atomic_masses[8] * atomic_masses[1] / (atomic_masses[8] + atomic_masses[1])
    omega_dt = np.sqrt(k / mu) * units.fs * frame_fs
    assert big.sum() > 30
    np.testing.assert_allclose(cos_theta, np.cos(omega_dt), rtol=0, atol=1e-9)


def test_tables_are_checked_and_the_prior_needs_the_anchor():
    k, r0 = bond_statistics([load_trajectory(bundled("ethanol"))], 10)
    prior = BondPrior(10)
    prior.set_tables(k, r0, 1.0)
    z = torch.arange(11)
    want = np.nan_to_num(_matched(k.numpy(), z[:, None].numpy(), z[None, :].numpy(), 1.0))  # Verlet-matched
    np.testing.assert_allclose(prior.k.numpy(), want, rtol=1e-12)
    assert bool((prior.k < k).sum() > 0) and torch.equal(prior.r0, r0) and float(prior.frame_fs) == 1.0
    with pytest.raises(ValueError, match="frame time"):
        prior.set_tables(k, r0, 0.0)
    with pytest.raises(ValueError, match="bond tables"):
        prior.set_tables(k[:5, :5], r0, 1.0)
    prior.set_tables(k, r0, 2.0)  # 2 fs frames: C-H (period ~10 fs) still stable under Verlet
    with pytest.raises(ValueError, match=r"stiffest bond \(C-H, period 10\.\d fs\).*shorter than 3\.\d+ fs"):
        prior.set_tables(k, r0, 4.0)
    # a period no real bond has (the element table's C-H 4x too stiff: ~5 fs) is blamed on too little data
    stiff = k.clone()
    stiff[1, 6] = stiff[6, 1] = 4 * k[1, 6]
    with pytest.raises(ValueError, match=r"period 5\.\d fs\).*faster than any real bond's .* longer reference"):
        prior.set_tables(stiff, r0, 2.0)
    with pytest.raises(ValueError, match="anchor"):
        ScoreNet(replace(TINY, anchor=False, bond_prior=True))
    # an environment's constant measured on too short a trajectory (here 4x the C-H stiffness): the
    # Verlet step could not integrate it, so its element pair's pooled constant stands in, with a warning
    h_c, c_h3 = 1 + 6 * ENV_BASE, 6 + ENV_BASE + ENV_BASE**2 + ENV_BASE**3 + 6 * ENV_BASE**4
    with pytest.warns(UserWarning, match=r"H\(C\)-C\(H,H,H,C\) would make the Verlet step unstable at 2 fs"):
        prior.set_tables(k, r0, 2.0, typed_bonds={(h_c, c_h3): (4 * float(k[1, 6]), 1.2), (c_h3, c_h3): (20.0, 1.5)})
    i, j = (prior.num_elements + prior.environments.tolist().index(e) for e in (h_c, c_h3))  # their table rows
    assert float(prior.k[i, j]) == float(prior.k[1, 6]) and float(prior.r0[i, j]) == float(r0[1, 6])
    assert float(prior.k[j, j]) == pytest.approx(_matched(20.0, 6, 6, 2.0), rel=1e-12)  # the stable one is kept


def test_training_fits_the_prior_and_checkpoints_carry_it(tmp_path):
    torch.set_num_threads(1)
    traj = load_trajectory(bundled("ethanol")).slice(0, 44)
    cfg = Config(model=replace(TINY, sigma_data=0.004, bond_prior=True),
                 train=TrainConfig(batch_size=8, epochs=1, val_every=100, val_rollout_frames=0, stride=2))
    result = train(cfg, traj, None, tmp_path / "run")
    prior = result.model.bond_prior
    assert float(prior.k[1, 6]) > 0 and float(prior.frame_fs) == 2 * traj.dt_fs
    assert float(prior.angle_k[prior.slot[1], prior.slot[6], prior.slot[1]]) > 0  # H-C-H
    assert prior.environments.numel() == 5  # ethanol: H(C), H(O), C(H,H,H,C), C(H,H,C,O), O(H,C)
    loaded = load_run(tmp_path / "run")
    for name in ("k", "r0", "environments", "slot", "angle_k", "angle_c0"):
        assert torch.equal(getattr(loaded.model.bond_prior, name), getattr(prior, name))


def test_checkpoints_from_before_the_angle_tables_still_load():
    old = _prior().state_dict()
    old["radii"] = torch.zeros(11, dtype=torch.float64)  # the covalent-radii buffer it used to carry
    for name in ("slot", "angle_k", "angle_c0"):
        del old[name]
    prior = BondPrior(10)
    prior.load_state_dict(old)
    assert float(prior.k[1, 6]) == 30.0 and int(prior.slot.max()) == -1 and float(prior.angle_k.abs().sum()) == 0.0


def test_checkpoints_from_before_the_environments_still_load():
    # element tables only, angles over 16 slots: loaded at those sizes, the same forces as then
    old = BondPrior(10)
    old.set_tables(torch.full((11, 11), 30.0, dtype=torch.float64), torch.full((11, 11), 1.1, dtype=torch.float64),
                   1.0, {(1, 8, 1): (5.0, -0.3)})
    state = old.state_dict()
    for name in ("environments", "ub_k", "ub_r0"):
        del state[name]
    state["angle_k"] = torch.zeros(16, 16, 16, dtype=torch.float64)
    state["angle_c0"] = torch.zeros(16, 16, 16, dtype=torch.float64)
    state["angle_k"][0, 1, 0], state["angle_c0"][0, 1, 0] = 5.0, -0.3  # slots 0 = H, 1 = O as they were laid out
    prior = BondPrior(10)
    prior.load_state_dict(state)
    assert prior.angle_k.shape == (16, 16, 16) and prior.environments.numel() == 0
    z = torch.tensor([8, 1, 1])
    x = torch.tensor([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.3, 0.92, 0.0]], dtype=torch.float64)
    graph = with_covalent_bonds(complete_graph(torch.zeros(3, dtype=torch.int64)), x, z)
    torch.testing.assert_close(prior.force(x, z, graph), old.force(x, z, graph), rtol=1e-12, atol=1e-14)


def test_excluded_volume_walls_push_nonbonded_atoms_apart_and_are_minus_the_gradient():
    """Atoms more than two bonds apart get a wall at 0.95 of the data's closest approach: a frame of the
    data feels nothing, a hydroxyl H pushed onto the methyl carbon is pushed back, and the force is -∇U
    on both the op and the reference path."""
    from diffmd_fast.valence.prior import WALL_MARGIN
    from diffmd_fast.valence.fit import valence_statistics

    traj = load_trajectory(bundled("ethanol"))
    stats = valence_statistics([traj.slice(0, 2000)], 10)
    assert stats["contacts"][(1, 6)] > 2.0  # H...C more than two bonds apart: never within 2 Å in the data
    prior = BondPrior(10)
    prior.set_tables(frame_fs=2.0, **stats)
    assert prior.wall[1, 6] == pytest.approx(WALL_MARGIN * stats["contacts"][(1, 6)])
    z = torch.as_tensor(traj.numbers)
    x0 = torch.as_tensor(traj.positions[100])
    graph = with_covalent_bonds(complete_graph(torch.zeros(9, dtype=torch.int64)), x0, z)
    assert prior.wall_force(x0, z, graph).abs().max() == 0  # a data frame: no wall touched
    x = x0.clone()
    x[8] = x[0] + 0.8 * (x[8] - x[0]) / (x[8] - x[0]).norm() * 1.6  # the O-H hydrogen 1.28 Å from the methyl C
    wall = prior.wall_force(x, z, graph)
    assert (wall[8] * (x[8] - x[0])).sum() > 0  # pushed away from C0
    xr = x.clone().requires_grad_()
    grad = torch.autograd.grad(prior.energy(xr, z, graph), xr)[0]
    torch.testing.assert_close(prior.force_reference(x, z, graph), -grad, rtol=1e-9, atol=1e-10)
    with torch.no_grad():
        torch.testing.assert_close(prior.force(x, z, graph), -grad, rtol=1e-9, atol=1e-10)


def test_walls_cover_every_element_of_a_full_size_table():
    prior = BondPrior(118)  # beyond ASE's van der Waals table (Z <= 103)
    prior.set_tables(torch.zeros(119, 119, dtype=torch.float64), torch.zeros(119, 119, dtype=torch.float64), 1.0,
                     contacts={(1, 8): 1.9})
    assert prior.wall[1, 8] == pytest.approx(0.95 * 1.9) and (prior.wall > 0).all() and torch.isfinite(prior.wall).all()
