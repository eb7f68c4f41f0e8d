"""Physics on generated frames: momentum projection, the Langevin thermostat and velocity rescaling."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from diffmd_fast.config import RolloutConfig
from diffmd_fast.data.batch import FrameBatch
from diffmd_fast.data import bundled, load_trajectory, start_batch
from diffmd_fast.dynamics.fluctuation import StepFluctuation
from diffmd_fast.dynamics.physics import (LangevinThermostat, MomentumProjection, VelocityRescaling,
                                          corrections_from_config, masses_of)
from diffmd_fast.evaluation.longrun import kinetic_temperature
from correction_helpers import NoiseMemory, ethanol_frames
from diffmd_fast.testing import random_orthogonal


def _momenta(frame, x_new):
    m = masses_of(frame.z).unsqueeze(-1)
    d = x_new - frame.x
    lin = torch.zeros(frame.num_graphs, 3, dtype=d.dtype).index_add_(0, frame.batch, m * d)
    com = torch.zeros(frame.num_graphs, 3, dtype=d.dtype).index_add_(0, frame.batch, m * frame.x)
    com = com / torch.zeros(frame.num_graphs, 1, dtype=d.dtype).index_add_(0, frame.batch, m)
    ang = torch.zeros(frame.num_graphs, 3, dtype=d.dtype).index_add_(
        0, frame.batch, m * torch.cross(frame.x - com[frame.batch], d, dim=-1))
    return lin, ang


def test_momentum_projection_removes_exactly_translation_and_rotation():
    frame = ethanol_frames()
    gen = torch.Generator().manual_seed(0)
    d0 = MomentumProjection()(frame, frame.x + 0.01 * torch.randn(frame.x.shape, generator=gen, dtype=torch.float64)) - frame.x
    lin, ang = _momenta(frame, frame.x + d0)
    assert lin.abs().max() < 1e-12 and ang.abs().max() < 1e-12
    # add a rigid translation and a rigid rotation per molecule: the projection takes exactly them away
    shift = torch.randn(frame.num_graphs, 3, generator=gen, dtype=torch.float64)[frame.batch] * 0.02
    omega = torch.randn(frame.num_graphs, 3, generator=gen, dtype=torch.float64)[frame.batch] * 0.01
    spun = d0 + shift + torch.cross(omega, frame.x - frame.x.mean(0), dim=-1)
    assert torch.allclose(MomentumProjection()(frame, frame.x + spun) - frame.x, d0, atol=1e-12)


@pytest.mark.parametrize("reflect", [False, True])
def test_momentum_projection_commutes_with_rotations_and_reflections(reflect):
    frame = ethanol_frames(1)
    q = random_orthogonal(reflect, generator=torch.Generator().manual_seed(3))
    x_new = frame.x + 0.01 * torch.randn(frame.x.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    rotated = frame.__class__(**{**frame.__dict__, "x": frame.x @ q.T})
    a = MomentumProjection()(rotated, x_new @ q.T)
    b = MomentumProjection()(frame, x_new) @ q.T
    assert torch.allclose(a, b, atol=1e-12)


def _pinv_projection(frame, x_new):
    """The projection with ω = pinv(I) L (an eigendecomposition), the reference of the closed form."""
    m = masses_of(frame.z).unsqueeze(-1)
    mt = torch.zeros(frame.num_graphs, 1, dtype=m.dtype).index_add_(0, frame.batch, m)
    com = torch.zeros(frame.num_graphs, 3, dtype=m.dtype).index_add_(0, frame.batch, m * frame.x) / mt
    d = x_new - frame.x
    d = d - (torch.zeros(frame.num_graphs, 3, dtype=m.dtype).index_add_(0, frame.batch, m * d) / mt)[frame.batch]
    r = frame.x - com[frame.batch]
    ang = torch.zeros(frame.num_graphs, 3, dtype=m.dtype).index_add_(0, frame.batch, m * torch.cross(r, d, dim=-1))
    per_atom = m.unsqueeze(-1) * ((r * r).sum(-1)[:, None, None] * torch.eye(3, dtype=m.dtype) - r[:, :, None] * r[:, None])
    inertia = torch.zeros(frame.num_graphs, 3, 3, dtype=m.dtype).index_add_(0, frame.batch, per_atom)
    omega = (torch.linalg.pinv(inertia, hermitian=True, rtol=1e-10) @ ang.unsqueeze(-1)).squeeze(-1)
    return frame.x + d - torch.cross(omega[frame.batch], r, dim=-1)


def _mixed_frame(q):
    """Ethanol, CO2 (linear), N2 (two atoms) and one H atom in one float64 batch, rotated by ``q``."""
    eth = ethanol_frames(1)
    axis = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    parts = [(eth.z, eth.x), (torch.tensor([8, 6, 8]), torch.tensor([-1.16, 0.0, 1.16], dtype=torch.float64)[:, None] * axis),
             (torch.tensor([7, 7]), torch.tensor([0.0, 1.1], dtype=torch.float64)[:, None] * axis + 0.3),
             (torch.tensor([1]), torch.tensor([[0.2, -0.4, 0.7]], dtype=torch.float64))]
    z = torch.cat([p[0] for p in parts])
    x = torch.cat([p[1] for p in parts]) @ q.T
    batch = torch.cat([torch.full((len(p[0]),), b) for b, p in enumerate(parts)])
    return eth.__class__(z=z, x_prev2=x, x_prev=x, x=x, x_next=x, batch=batch, num_graphs=len(parts))


@pytest.mark.parametrize("reflect", [False, True])
def test_momentum_projection_closed_form_matches_pinv_also_for_linear_molecules_and_single_atoms(reflect):
    """The adjugate solve equals pinv(I) L for a regular molecule, and for a linear molecule (singular
    I; rotated, so only zero up to rounding) and one atom (I = 0) in the same batch; the result
    has no net momentum and commutes with rotations and reflections."""
    gen = torch.Generator().manual_seed(5)
    q = random_orthogonal(reflect, generator=gen)
    frame, ref_frame = _mixed_frame(q), _mixed_frame(torch.eye(3, dtype=torch.float64))
    x_new = frame.x + 0.01 * torch.randn(frame.x.shape, generator=gen, dtype=torch.float64)
    got = MomentumProjection()(frame, x_new)
    torch.testing.assert_close(got, _pinv_projection(frame, x_new), rtol=0, atol=1e-12)
    torch.testing.assert_close(got, MomentumProjection()(ref_frame, x_new @ q) @ q.T, rtol=0, atol=1e-12)
    lin, ang = _momenta(frame, got)
    assert lin.abs().max() < 1e-12 and ang.abs().max() < 1e-12
    assert torch.equal(got[-1], frame.x[-1])  # one atom: no motion relative to its own centre of mass
    # the linear molecule keeps its axial and bending motion: only rigid rotation about the centre goes
    assert not torch.allclose(got[9:12], frame.x[9:12], atol=1e-6)


def _temperature(frame, x_new, frame_fs):
    v = ((x_new - frame.x) / frame_fs).view(frame.num_graphs, -1, 3).numpy()
    return kinetic_temperature(v, masses_of(frame.z[: v.shape[1]]).numpy())


def test_langevin_drives_a_cold_system_to_the_target_and_keeps_a_thermal_one_there():
    """The O step alone thermalises all 3n components: with the centre of mass removed that reads
    T (3n - 3)/(3n - 6) in the 3n - 6 degrees of freedom; followed by the momentum projection (the
    configured order) the internal modes read exactly T."""
    big = start_batch([load_trajectory(bundled("ethanol"))] * 200, 100, dtype=torch.float64)
    n = 9
    thermo = LangevinThermostat(500.0, tau_fs=10.0, frame_fs=0.5)
    both = corrections_from_config(RolloutConfig(temperature_K=500.0, tau_fs=10.0), 0.5, None)
    c_ou = thermo.c
    for corrections, expected in (([thermo], 500.0 * (3 * n - 3) / (3 * n - 6)), (both, 500.0)):
        gen = torch.Generator().manual_seed(0)
        x_new = big.x.clone()  # T = 0: no motion
        temps, memory = [], NoiseMemory()
        for _ in range(200):  # 20 relaxation times; the corrections act on the implied velocity each time
            for i, c in enumerate(corrections):
                x_new = c(big, x_new, memory(i, c, c.noise(big, gen)))
            temps.append(_temperature(big, x_new, 0.5).mean())
        expected *= (1 + c_ou) / 2  # a free particle's BAOAB velocity: exact up to O(Δt/τ)
        assert temps[0] < 0.2 * expected and abs(np.mean(temps[-50:]) - expected) < 0.03 * expected
        for i, c in enumerate(corrections):  # one more step from a thermal state stays thermal
            x_new = c(big, x_new, memory(i, c, c.noise(big, gen)))
        assert abs(_temperature(big, x_new, 0.5).mean() - expected) < 0.05 * expected


@pytest.mark.parametrize("memory", [True, False])
def test_langevin_samples_a_stiff_harmonic_mode_at_its_temperature(memory):
    """Hydrogens in harmonic wells of a C-H stretch's frequency at 2 fs frames (ω Δt = 1.14), stepped by
    Verlet and the thermostat as a rollout does: with the moving-average noise (BAOAB) their positions
    sample k_B T / (m ω²); white noise on the same step would inflate it by 1 / (1 - (ω Δt / 2)²) = 1.48."""
    from ase import units

    n, dt, omega, temp = 2000, 2.0, 1.14 / 2.0, 500.0  # atoms, fs, 1/fs, K
    z = torch.ones(n, dtype=torch.int64)
    thermo = LangevinThermostat(temp, tau_fs=100.0, frame_fs=dt)
    gen = torch.Generator().manual_seed(0)
    x_prev = x = torch.zeros(n, 3, dtype=torch.float64)
    batch = torch.zeros(n, dtype=torch.int64)
    feed, sq = NoiseMemory(), []
    for t in range(3000):
        frame = FrameBatch(z=z, x_prev2=x_prev, x_prev=x_prev, x=x, x_next=x, batch=batch, num_graphs=1)
        x_new = 2 * x - x_prev - (omega * dt) ** 2 * x  # the Verlet frame of the well
        xi = thermo.noise(frame, gen)
        x_prev, x = x, thermo(frame, x_new, feed(0, thermo, xi) if memory else xi * 2**0.5)
        if t >= 1000:
            sq.append(float((x * x).mean()))
    mass = float(masses_of(z[:1]))
    expected = units.kB * temp / (mass * (omega / units.fs) ** 2)  # Å², k_B T / (m ω²) in ASE units
    ratio = np.mean(sq) / expected
    if memory:
        assert abs(ratio - 1) < 0.05, ratio
    else:  # white noise of the memoryless amplitude (σ/√2 · √2 = σ): the inflated variance
        assert ratio > 1.3, ratio


def test_step_fluctuation_comes_first_and_only_with_a_measured_friction():
    cfg = RolloutConfig(thermostat="none")
    assert [type(c) for c in corrections_from_config(cfg, 2.0, 500.0, {1: 0.01, 6: 0.02})] == [StepFluctuation,
                                                                                             MomentumProjection]
    assert [type(c) for c in corrections_from_config(cfg, 2.0, 500.0, None)] == [MomentumProjection]
    off = RolloutConfig(thermostat="none", step_fluctuation=False)
    assert [type(c) for c in corrections_from_config(off, 2.0, 500.0, {1: 0.01})] == [MomentumProjection]
    first = corrections_from_config(RolloutConfig(temperature_K=300.0), 2.0, 500.0, {1: 0.01})[0]
    assert isinstance(first, StepFluctuation) and first.temperature_K == 300.0  # the thermostat's target
    with pytest.raises(ValueError, match="frictions"):
        StepFluctuation(500.0, {1: -0.1}, 2.0)
    with pytest.raises(ValueError, match="frame_fs"):
        StepFluctuation(500.0, {1: 0.1}, 0.0)


def test_corrections_from_config_and_errors():
    assert corrections_from_config(RolloutConfig(momentum=False, thermostat="none"), 0.5, None) == []
    both = corrections_from_config(RolloutConfig(), 0.5, 600.0)
    assert isinstance(both[1], MomentumProjection) and both[0].temperature_K == 600.0
    assert corrections_from_config(RolloutConfig(temperature_K=300.0), 0.5, 600.0)[0].temperature_K == 300.0
    assert math.isclose(both[0].c, math.exp(-0.5 / 100.0))
    with pytest.raises(ValueError, match="temperature"):
        corrections_from_config(RolloutConfig(), 0.5, None)
    with pytest.raises(ValueError, match="> 0"):
        LangevinThermostat(300.0, 0.0, 0.5)


def test_velocity_rescaling_samples_the_canonical_kinetic_energy_and_keeps_directions():
    """Bussi rescaling (after the momentum projection, the configured order) takes molecules moving at
    ~100 K to the target's mean and the canonical spread of the kinetic temperature, var T = 2 T² / N_f
    (a χ² of N_f degrees of freedom); it only scales: every molecule keeps its velocity's direction
    and zero net momentum."""
    big = start_batch([load_trajectory(bundled("ethanol"))] * 400, 100, dtype=torch.float64)
    n, target = 9, 500.0
    corrections = corrections_from_config(RolloutConfig(thermostat="bussi", temperature_K=target, tau_fs=10.0), 0.5,
                                           None)
    assert [type(c).__name__ for c in corrections] == ["MomentumProjection", "VelocityRescaling"]
    gen = torch.Generator().manual_seed(0)
    x_new = corrections[0](big, big.x + 0.2 * (big.x - big.x_prev))  # ~1/25 of the data's kinetic energy
    assert _temperature(big, x_new, 0.5).mean() < 0.3 * target
    temps = []
    for _ in range(150):  # 7.5 relaxation times
        before = x_new - big.x
        x_new = corrections[1](big, x_new, corrections[1].noise(big, gen))
        after = x_new - big.x
        cos = torch.nn.functional.cosine_similarity(before.reshape(400, -1), after.reshape(400, -1), dim=-1)
        assert torch.allclose(cos.abs(), torch.ones(400, dtype=torch.float64), atol=1e-9)
        temps.append(_temperature(big, x_new, 0.5))
    late = np.concatenate(temps[-40:])
    assert abs(late.mean() - target) < 0.03 * target
    assert abs(late.var() / (2 * target**2 / (3 * n - 6)) - 1.0) < 0.25
    net = torch.zeros(400, 3, dtype=torch.float64).index_add_(0, big.batch, masses_of(big.z)[:, None] * (x_new - big.x))
    assert net.abs().max() < 1e-9


def test_velocity_rescaling_leaves_a_molecule_at_rest_and_checks_its_settings():
    frame = start_batch([load_trajectory(bundled("ethanol"))] * 2, 100, dtype=torch.float64)
    vr = VelocityRescaling(500.0, 10.0, 0.5)
    assert torch.equal(vr(frame, frame.x, vr.noise(frame, torch.Generator().manual_seed(0))), frame.x)
    with pytest.raises(ValueError, match="VelocityRescaling needs"):
        VelocityRescaling(500.0, 0.0, 0.5)


def _velocity_temperature(frame, v) -> np.ndarray:
    """(B,) K: each molecule's kinetic temperature of velocities v (N, 3) Å/fs over its 3n - 6 internal modes."""
    from ase import units

    ke = (masses_of(frame.z) * (v * v).sum(-1)) / units.fs**2  # (N,) 2 x eV
    per = torch.zeros(frame.num_graphs, dtype=v.dtype).index_add_(0, frame.batch, ke)
    n = torch.bincount(frame.batch, minlength=frame.num_graphs)
    return (per / ((3 * n - 6) * units.kB)).numpy()


def test_the_phase_space_forms_act_on_the_carried_velocity_once_per_frame():
    """For a phase-space model the corrections act on the state's velocity: the Langevin O-step and the
    momentum projection take molecules at rest to exactly T in their internal modes (the O-step is exact
    on momenta: no (1 + c)/2 factor of the position form) and keep them there; Bussi then samples the
    canonical kinetic energy; positions are left as the model's step made them (up to the projection
    of their implied displacement)."""
    big = start_batch([load_trajectory(bundled("ethanol"))] * 300, 100, dtype=torch.float64)
    target, gen = 500.0, torch.Generator().manual_seed(0)
    x_new = big.x + (big.x - big.x_prev)
    for cfg in (RolloutConfig(temperature_K=target, tau_fs=10.0), RolloutConfig(thermostat="bussi", temperature_K=target,
                                                                                 tau_fs=10.0)):
        corrections = corrections_from_config(cfg, 0.5, None)
        v = torch.zeros_like(big.x) if cfg.thermostat == "langevin" else 0.3 * big.v
        temps = []
        for _ in range(400):
            x, v_out = x_new, v
            for c in corrections:
                x, v_out = c.phase(big, x, v_out, c.noise(big, gen))
            torch.testing.assert_close(x, MomentumProjection()(big, x_new), rtol=0, atol=1e-12)
            v = v_out
            temps.append(_velocity_temperature(big, v))
        late = np.concatenate(temps[-200:])  # ~10 relaxation times of 300 molecules: a standard error of ~0.5 %
        assert temps[0].mean() < 0.6 * target and abs(late.mean() - target) < 0.03 * target, (cfg.thermostat, late.mean())
        lin, ang = _momenta(big, big.x + v)
        assert lin.abs().max() < 1e-12
    assert abs(late.var() / (2 * target**2 / 21) - 1.0) < 0.25  # Bussi: canonical spread, N_f = 21


def test_velocity_rescaling_counts_the_3n_minus_5_degrees_of_freedom_of_a_linear_molecule():
    """CO2 (a line bent by a few hundredths of an Å) rescaled towards T: its internal kinetic energy settles
    at (3n - 5) k_B T / 2 = 2 k_B T, not the 3/2 k_B T of 3n - 6 degrees of freedom; ethanol keeps 3n - 6."""
    from ase import units

    from diffmd_fast.data import Trajectory

    rng = np.random.default_rng(0)
    line = np.array([[-1.16, 0.0, 0.0], [0.0, 0.0, 0.0], [1.16, 0.0, 0.0]])
    co2 = Trajectory(line + 0.02 * rng.standard_normal((5, 3, 3)), np.array([8, 6, 8]), 0.5)
    frame = start_batch([co2] * 1000, 3, dtype=torch.float64)
    target, dt = 500.0, 0.5
    project, rescale = MomentumProjection(), VelocityRescaling(target, 10.0, dt)
    assert rescale._layout(frame)[1].tolist() == [4] * 1000
    ethanol = start_batch([load_trajectory(bundled("ethanol"))] * 2, 100, dtype=torch.float64)
    assert rescale._layout(ethanol)[1].tolist() == [21, 21]
    gen = torch.Generator().manual_seed(0)
    x_new = project(frame, frame.x + 0.01 * torch.randn(frame.x.shape, generator=gen, dtype=torch.float64))
    kinetic = []
    for _ in range(300):  # 15 relaxation times
        x_new = rescale(frame, x_new, rescale.noise(frame, gen))
        v = (x_new - frame.x) / dt / units.fs  # ASE velocity units
        kinetic.append(float((0.5 * masses_of(frame.z)[:, None] * v * v).sum()) / 1000)  # eV per molecule
    assert np.mean(kinetic[-150:]) == pytest.approx(2.0 * units.kB * target, rel=0.03)  # 3n - 6: 1.5 k_B T
