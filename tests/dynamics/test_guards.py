"""Rollout guards: a molecule that turns NaN, explodes, leaves its bounding radius or breaks a bond
is stopped at the right frame, atom and reason, while the other molecules' frames equal those of a
run without it; `diffmd generate` never writes a NaN frame."""
import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from diffmd_fast.cli import main as cli_main
from diffmd_fast.training import run as runs
from diffmd_fast.training.run import TrainedRun
from diffmd_fast.config import Config
from diffmd_fast.data import bundled, load_trajectory, save_npz, start_batch
from diffmd_fast.data.batch import FrameBatch
from diffmd_fast.dynamics.guards import GuardConfig, RolloutGuard
from diffmd_fast.valence.topology import topology_graph
from diffmd_fast.evaluation.metrics import bonds_from_reference
from diffmd_fast.dynamics.rollout import RolloutStopped, rollout
from diffmd_fast.diffusion.samplers import ODESampler
from diffmd_fast.diffusion.sde import ConditionalVESDE

BAD_ATOM = 5  # an H of ethanol, relabelled F (z = 9) in the bad molecule
STARTS = (10, 300, 600)
SDE = ConditionalVESDE()
RK4 = ODESampler(eps=0.1, method="rk4")  # fixed steps: molecules never interact through the solver
DOPRI5 = ODESampler(eps=1e-3, atol=1e-5, rtol=1e-5)  # adaptive: one step size shared by the batch


def outward(batch: FrameBatch) -> torch.Tensor:
    """(N, 3) unit vectors from each molecule's centroid to its atoms in frame x(t)."""
    n = torch.bincount(batch.batch).unsqueeze(-1).to(batch.x.dtype)
    centroid = torch.zeros(batch.num_graphs, 3, dtype=batch.x.dtype).index_add_(0, batch.batch, batch.x) / n
    r = batch.x - centroid[batch.batch]
    return r / r.norm(dim=-1, keepdim=True)


class FakeScore(torch.nn.Module):
    """Per-atom analytic score pulling every atom to the constant-velocity guess x(t) + v(t); atoms
    with z = 9 are pulled ``shift`` Å away from their molecule instead (a drift), or get a NaN score."""

    def __init__(self, shift: float = 0.0, nan: bool = False) -> None:
        super().__init__()
        self.shift, self.nan = shift, nan

    def forward(self, batch: FrameBatch, x, std, graph=None):
        bad = (batch.z == 9).unsqueeze(-1)  # (N, 1)
        target = torch.where(bad, batch.x + self.shift * outward(batch), 2.0 * batch.x - batch.x_prev)
        score = -(x - target) / std**2
        return torch.where(bad, torch.full_like(score, math.nan), score) if self.nan else score


def ethanol_batch(bad: int | None = 1, keep=(0, 1, 2)) -> FrameBatch:
    """Ethanol windows at STARTS[k] for k in ``keep``; molecule ``bad`` (a STARTS index) has atom 5 as F."""
    traj = load_trajectory(bundled("ethanol"))
    batch = start_batch([traj] * len(keep), [STARTS[k] for k in keep], dtype=torch.float64)
    z = batch.z.clone()
    if bad is not None and bad in keep:
        z[9 * keep.index(bad) + BAD_ATOM] = 9
    return dataclasses.replace(batch, z=z)


def assert_others_equal_run_without_bad(res, sampler, model, frames):
    alone = rollout(model, SDE, sampler, ethanol_batch(keep=(0, 2)), frames)
    assert all(r is None for r in alone.stopped)
    for b, b_alone in ((0, 0), (2, 1)):
        assert res.stopped[b] is None and res.valid_frames[b] == frames
        assert np.array_equal(res.molecule(b), alone.molecule(b_alone))


def test_nan_score_molecule_stops_at_frame_1_and_others_run_as_without_it():
    model = FakeScore(nan=True)
    res = rollout(model, SDE, DOPRI5, ethanol_batch(), 4)
    rep = res.stopped[1]
    assert (rep.molecule, rep.frame, rep.atom, rep.reason) == (1, 1, BAD_ATOM, "non_finite_score")
    assert res.valid_frames == (4, 0, 4) and res.reports == [rep]
    assert np.isnan(res.molecule(1)).all() and res.valid_molecule(1).shape == (0, 9, 3)
    assert np.isfinite(res.molecule(0)).all()
    assert_others_equal_run_without_bad(res, DOPRI5, model, 4)


def test_exploding_atom_is_stopped_with_its_step():
    res = rollout(FakeScore(shift=5.0), SDE, RK4, ethanol_batch(), 3)
    rep = res.stopped[1]
    assert (rep.frame, rep.atom, rep.reason, rep.limit) == (1, BAD_ATOM, "exploded_step", 1.0)
    assert 1.0 < rep.value < 6.0 and res.valid_frames == (3, 0, 3)


def _first_failure(gen: np.ndarray, start: np.ndarray, z: np.ndarray, reason: str, cfg: GuardConfig):
    """1-based first frame of ``gen`` (T, n, 3) failing ``reason``, computed independently in numpy."""
    if reason == "bond_broken":
        bonds = bonds_from_reference(start[None], z)
        d0 = np.linalg.norm(start[bonds[:, 0]] - start[bonds[:, 1]], axis=-1)
        d = np.linalg.norm(gen[:, bonds[:, 0]] - gen[:, bonds[:, 1]], axis=-1)
        bad = (np.abs(d - d0) > cfg.bond_tolerance).any(axis=1)
    else:
        r0 = np.linalg.norm(start - start.mean(0), axis=-1).max()
        r = np.linalg.norm(gen - gen.mean(axis=1, keepdims=True), axis=-1)
        bad = (r > r0 + cfg.radius_margin).any(axis=1)
    return int(np.argmax(bad)) + 1


@pytest.mark.parametrize("reason, step, cfg", [
    ("bond_broken", 0.7, GuardConfig()),  # RK4 at eps = 0.1 covers ~1/4 of the pull: ~0.18 Å/frame
    ("left_bounding_radius", 1.5, GuardConfig(bond_tolerance=math.inf)),
])
def test_drifting_atom_stops_at_the_first_failing_frame(reason, step, cfg):
    frames, model, batch = 14, FakeScore(shift=step), ethanol_batch()
    free = rollout(model, SDE, RK4, batch, frames, guard=GuardConfig.finite_only())
    start = batch.x[batch.batch == 1].numpy()
    expected = _first_failure(free.molecule(1), start, batch.z[batch.batch == 1].numpy(), reason, cfg)
    assert 2 < expected < frames  # it was healthy for a while, then failed
    res = rollout(model, SDE, RK4, batch, frames, guard=cfg)
    rep = res.stopped[1]
    assert (rep.molecule, rep.frame, rep.atom, rep.reason) == (1, expected, BAD_ATOM, reason)
    if reason == "bond_broken":
        assert rep.partner == 0 and rep.value > cfg.bond_tolerance  # the H at index 5 sits on carbon 0
    assert res.valid_frames[1] == expected - 1
    assert np.array_equal(res.valid_molecule(1), free.molecule(1)[:expected - 1])
    assert np.isnan(res.molecule(1)[expected - 1:]).all()
    assert_others_equal_run_without_bad(res, RK4, model, frames)


def test_strict_rollout_raises_a_floating_point_error_with_the_report():
    with pytest.raises(FloatingPointError, match="molecule 1 stopped at generated frame 1") as err:
        rollout(FakeScore(nan=True), SDE, DOPRI5, ethanol_batch(), 2, strict=True)
    assert isinstance(err.value, RolloutStopped) and err.value.report.atom == BAD_ATOM


def test_all_molecules_stopped_ends_the_rollout_early():
    res = rollout(FakeScore(shift=5.0), SDE, RK4, ethanol_batch(bad=0, keep=(0,)), 5)
    assert res.valid_frames == (0,) and res.nfe_per_frame[1:].sum() == 0 and np.isnan(res.molecule(0)).all()


def test_guard_reports_non_finite_positions_before_other_reasons():
    batch = ethanol_batch(bad=None)
    guard = RolloutGuard(GuardConfig(), batch, topology_graph(batch.x, batch.z, batch.batch))
    x = batch.x.clone()
    x[9 + 3] = math.nan  # molecule 1, atom 3
    x[2 * 9 + 7, 0] += 50.0  # molecule 2, atom 7: explodes, leaves the radius, breaks its bond
    no_score_fault = torch.zeros(27, dtype=torch.bool)
    failed = guard.check(batch.x, x, no_score_fault)
    assert failed.tolist() == [False, True, True]
    reps = guard.reports(failed, batch.x, x, no_score_fault, frame=7)
    assert [(r.molecule, r.frame, r.atom, r.reason) for r in reps] == [(1, 7, 3, "non_finite"),
                                                                       (2, 7, 7, "exploded_step")]
    assert "atom 7 moved 50 Å" in reps[1].message()


@pytest.mark.parametrize("field", ["max_step", "radius_margin", "bond_tolerance"])
@pytest.mark.parametrize("value", [0.0, -1.0, math.nan])
def test_guard_config_rejects_non_positive_thresholds(field, value):
    with pytest.raises(ValueError, match=f"GuardConfig.{field}"):
        GuardConfig(**{field: value})


class ShiftSecond(torch.nn.Module):
    """Molecule 1 of the batch drifts ~0.2 Å/frame (bond breaks after a few frames), molecule 2 is
    NaN from the start; molecule 0 moves at constant velocity."""

    def forward(self, batch: FrameBatch, x, std, graph=None):
        target = 2.0 * batch.x - batch.x_prev
        drift = ((batch.batch == 1) & (torch.arange(x.shape[0]) % 9 == BAD_ATOM)).unsqueeze(-1)
        target = torch.where(drift, batch.x + 0.8 * outward(batch), target)
        score = -(x - target) / std**2
        return torch.where((batch.batch == 2).unsqueeze(-1), torch.full_like(score, math.nan), score)


def test_generate_writes_only_valid_frames_and_reports_stops(tmp_path, monkeypatch, capsys):
    data = tmp_path / "eth.npz"
    save_npz(load_trajectory(bundled("ethanol")).slice(0, 200), data)
    cfg = Config().with_overrides(["train.dtype=float64", "sampler.method=rk4", "sampler.eps=0.1"])
    sampler = ODESampler(eps=0.1, method="rk4")
    fake = TrainedRun(ShiftSecond(), SDE, sampler, cfg, Path("fake.pt"), {"temperature_K": 500.0})
    monkeypatch.setattr(runs, "load_run", lambda *a, **k: fake)
    out = tmp_path / "gen.extxyz"
    code = cli_main(["generate", "--checkpoint", str(tmp_path), "--data", str(data), "--start", "10,50,90",
                     "--frames", "12", "--out", str(out), "--quiet"])
    printed = capsys.readouterr()
    err = printed.err
    assert code == 3
    assert "12 frames x 3 trajectories (0.006 ps each; 2 stopped earlier, reported below)" in printed.out
    assert "start 50: molecule 1 stopped at generated frame" in err and "bond to atom" in err
    assert "start 90: molecule 2 stopped at generated frame 1: atom 0 got a NaN/inf score" in err
    full, cut = load_trajectory(tmp_path / "gen_t10.npz"), load_trajectory(tmp_path / "gen_t50.npz")
    assert full.num_frames == 12 and 1 <= cut.num_frames < 12
    assert np.isfinite(full.positions).all() and np.isfinite(cut.positions).all()
    assert load_trajectory(tmp_path / "gen_t50.extxyz").num_frames == cut.num_frames
    assert cut.provenance["stopped"]["frame"] == cut.num_frames + 1
    assert cut.provenance["stopped"]["reason"] == "bond_broken"
    assert not list(tmp_path.glob("gen_t90*"))  # no valid frame: no file at all


def _guarded_frame(move):
    """(guard, x) for ethanol_batch(bad=None): frame x(t) with ``move`` (x of molecule 1) applied."""
    batch = ethanol_batch(bad=None)
    guard = RolloutGuard(GuardConfig(max_step=math.inf), batch, topology_graph(batch.x, batch.z, batch.batch))  # the pair checks alone
    x = batch.x.clone()
    lo = 9  # molecule 1's atom 0
    move(x[lo:lo + 9])
    return guard, batch, x


@pytest.mark.parametrize("reason", ["close_contact", "topology_change"])
def test_pair_checks_stop_fused_atoms_and_new_bonds(reason):
    """Ethanol: C0 C1 O2 H3..H8 with H8 on O2. Fused: H4 put 0.2 Å from C1 (limit 0.6 x 1.07 Å);
    a new bond: the hydroxyl H8 moved 1.0 Å from C0, which it is not bonded to (limit 1.2 x 1.07 Å)."""
    def move(mol):
        target, atom, d = (1, 4, 0.2) if reason == "close_contact" else (0, 8, 1.0)
        direction = mol[atom] - mol[target]
        mol[atom] = mol[target] + d * direction / direction.norm()
    guard, batch, x = _guarded_frame(move)
    bad = torch.zeros(x.shape[0], dtype=torch.bool)
    failed = guard.check(batch.x, x, bad)
    assert failed.tolist() == [False, True, False]
    (rep,) = guard.reports(failed, batch.x, x, bad, frame=5)
    pair = {rep.atom, rep.partner}
    assert rep.reason == reason and rep.frame == 5
    if reason == "close_contact":
        assert pair == {1, 4} and rep.value == pytest.approx(0.2) and rep.limit == pytest.approx(0.6 * (0.76 + 0.31))
    else:
        assert pair == {0, 8} and rep.value == pytest.approx(1.0) and rep.limit == pytest.approx(1.2 * (0.76 + 0.31))
        assert "not bonded to in the start frame" in rep.message()


def test_pair_checks_leave_a_thermal_frame_alone_and_switch_off_at_zero():
    traj = load_trajectory(bundled("ethanol"))
    batch = ethanol_batch(bad=None)
    guard = RolloutGuard(GuardConfig(max_step=math.inf), batch, topology_graph(batch.x, batch.z, batch.batch))
    later = start_batch([traj] * 3, [s + 400 for s in STARTS], dtype=torch.float64)  # 200 fs on: real thermal frames
    bad = torch.zeros(batch.x.shape[0], dtype=torch.bool)
    assert not guard.check(batch.x, later.x, bad).any()
    x = batch.x.clone()
    x[9 + 4] = x[9 + 1] + 0.05
    off = RolloutGuard(GuardConfig(contact_scale=0.0, new_bond_scale=0.0, max_step=math.inf), batch, topology_graph(batch.x, batch.z, batch.batch))
    assert not off.check(batch.x, x, bad).any()
    with pytest.raises(ValueError, match="contact_scale"):
        GuardConfig(contact_scale=-1.0)


def test_subset_guard_keeps_the_pair_checks_of_the_survivors():
    batch = ethanol_batch(bad=None)
    guard = RolloutGuard(GuardConfig(max_step=math.inf), batch, topology_graph(batch.x, batch.z, batch.batch))
    keep = torch.tensor([True, False, True])
    from diffmd_fast.dynamics.stepper import _select
    sub_batch = _select(batch, keep)
    sub = guard.subset(keep, sub_batch)
    assert sub.pairs.shape[0] == 2 * 36 and sub.ids.tolist() == [0, 2]
    x = sub_batch.x.clone()
    x[9 + 4] = x[9 + 1] + 0.05  # molecule 2 of the start, now index 1
    bad = torch.zeros(x.shape[0], dtype=torch.bool)
    failed = sub.check(sub_batch.x, x, bad)
    assert failed.tolist() == [False, True]
    (rep,) = sub.reports(failed, sub_batch.x, x, bad, frame=1)
    assert rep.molecule == 2 and rep.reason == "close_contact"
