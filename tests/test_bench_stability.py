"""The stability benchmark runs end to end at a tiny size and caches its cells (no timings asserted)."""
from __future__ import annotations

import json
import math

import numpy as np

import pytest

from diffmd_fast.benchmarks import one_step, stability


def _not_json(literal: str):
    raise ValueError(f"{literal} is not JSON")


def test_benchmark_smoke_and_resume(tmp_path, capsys):
    args = ["--strides", "2", "--samplers", "heun1", "--ps", "0.02", "--starts", "2", "--runs", str(tmp_path / "runs"),
            "--json", str(tmp_path / "out.json"), "--set", "train.epochs=1", "--set", "train.max_steps=2",
            "--set", "model.num_layers=1", "--set", "model.hidden=8", "--set", "model.heads=2",
            "--set", "model.ffn=8", "--set", "train.val_rollout_frames=0", "--set", "rollout.compile=false",
            "--set", "train.calibration_frames=48"]
    cells = stability.main(args)
    assert len(cells) == 1 and cells[0].stride == 2 and cells[0].frame_fs == 1.0 and cells[0].frames == 20
    out = json.loads((tmp_path / "out.json").read_text(), parse_constant=_not_json)  # strict JSON: no NaN literals
    assert {"stability_ps_mean", "h_r_jsd", "temperature_K", "fs_per_s_total"} <= set(out["cells"][0])
    # a barely trained model's step: finite and of the order of the constant-velocity guess's error
    assert 0 < cells[0].one_step_error_A < 10 * cells[0].constant_velocity_error_A
    assert 0.001 < cells[0].constant_velocity_error_A < 0.1
    assert "| ethanol | 2 (1) | heun1 |" in capsys.readouterr().out
    # over hundreds of test windows, paired with the prior alone's on the same windows; the Verlet step with
    # the reference's own forces is far closer than the constant-velocity guess
    c = cells[0]
    assert c.one_step_windows == one_step.ONE_STEP_WINDOWS and math.isfinite(c.one_step_prior_A)
    assert math.isclose(c.one_step_gain_A, c.one_step_prior_A - c.one_step_error_A, rel_tol=1e-9)
    assert 0 < c.one_step_gain_se_A < c.one_step_prior_A
    assert 0 < c.one_step_reference_force_A < 0.5 * c.constant_velocity_error_A
    # the reference's own halves at the same segment: a number in (0, 1], and below 1 (a few ps are noisy)
    assert 0 < c.vdos_reference_halves < 1
    assert 0 < c.h_r_jsd_reference_halves < 0.05
    # the spectra behind the overlap, beside the cell, drawn per molecule
    (spectra,) = (tmp_path / "runs" / "cells").glob("*_vdos.npz")
    with np.load(spectra) as f:
        assert f["vdos"].shape == f["vdos_reference"].shape == f["frequency_cm1"].shape
        assert float(np.minimum(f["vdos"], f["vdos_reference"]).sum()) == pytest.approx(c.vdos_overlap)
    assert (tmp_path / "runs" / "plots" / "vdos_ethanol_s2.png").stat().st_size > 0
    again = stability.main(args)  # served from the cached cell, no retraining
    assert again == cells
    # a cell cached before the windowed one-step errors gets them on the next run, rollouts untouched
    (cache,) = (tmp_path / "runs" / "cells").glob("*.json")
    old = json.loads(cache.read_text())
    old.update(one_step_windows=0, one_step_prior_A=float("nan"), one_step_error_A=0.5, vdos_reference_halves=None,
               h_r_jsd_reference_halves=None)
    cache.write_text(json.dumps(old))
    assert stability.main(args) == cells
    assert json.loads(cache.read_text(), parse_constant=_not_json)["one_step_windows"] == one_step.ONE_STEP_WINDOWS
    # a model trained otherwise is refused, not reused; without --json the table goes beside the runs
    with pytest.raises(ValueError, match="ethanol_s2 was trained otherwise .*'train.max_steps=3'"):
        stability.main([a if a != "train.max_steps=2" else "train.max_steps=3" for a in args])
    stability.main([a for a in args if a not in ("--json", str(tmp_path / "out.json"))])
    assert (tmp_path / "runs" / "stability.json").exists()


def test_reference_hr_halves_reads_a_conformer_change_as_noise():
    """The h(r) JSD of a reference's halves: near 0 when both halves sample one distribution, and the size
    of the change when the molecule sits in one conformer for the first half and another for the second."""
    from diffmd_fast.benchmarks.online_score import reference_hr_halves

    rng = np.random.default_rng(0)
    chain = np.array([[0.0, 0.0, 0.0], [1.5, 0.0, 0.0], [2.0, 1.4, 0.0], [3.5, 1.4, 0.0]])  # (4, 3) Å, trans-like
    folded = chain.copy()
    folded[3] = [1.2, 2.6, 0.0]  # the last atom swung back: another 1-4 distance
    jitter = lambda n: 0.05 * rng.standard_normal((n, 4, 3))
    same = np.concatenate([chain + jitter(2000), chain + jitter(2000)])
    switched = np.concatenate([chain + jitter(2000), folded + jitter(2000)])
    assert reference_hr_halves(same) < 0.005
    assert reference_hr_halves(switched) > 0.05
    assert math.isnan(reference_hr_halves(chain[None]))


def test_prior_only_cell_is_the_valence_force_field_alone(tmp_path):
    """With model.bond_prior, the prior-only cell rolls out the anchor without the network: Verlet MD
    of harmonic bonds and angles fitted to the data, which keeps ethanol whole near the data's
    temperature however little the network was trained; force-matched, with its Urey-Bradley springs,
    which the row's training description counts."""
    args = ["--strides", "2", "--samplers", "prior-only", "--ps", "0.2", "--starts", "2", "--runs", str(tmp_path / "runs"),
            "--json", str(tmp_path / "out.json"), "--set", "train.epochs=1", "--set", "train.max_steps=2",
            "--set", "model.num_layers=1", "--set", "model.hidden=8", "--set", "model.heads=2",
            "--set", "model.ffn=8", "--set", "train.val_rollout_frames=0", "--set", "rollout.compile=false", "--set", "model.bond_prior=true",
            "--set", "model.prior_force_matching=true"]
    (cell,) = stability.main(args)
    assert cell.sampler == "prior-only" and cell.stable_rollouts == 2
    assert "+ 7 Urey-Bradley springs" in cell.training  # ethanol's seven angle types
    assert abs(cell.temperature_error) < 0.25 and cell.h_r_jsd < 0.05


def test_reference_group_temperatures_carry_the_spread_of_their_blocks():
    """The reference's hydrogen and heavy-atom temperatures come with a standard error from blocks of
    the run: near zero for a stationary run, and the size of the swing for one whose heavy atoms
    change temperature halfway (what a small molecule's heavy atoms do over picoseconds)."""
    import numpy as np
    from ase import units

    from diffmd_fast.data.elements import masses

    rng = np.random.default_rng(0)
    numbers = np.array([6, 6, 8, 7, 1, 1, 1, 1, 1, 1])
    m = masses(numbers)

    def run(heavy_K):  # (T, n, 3) Å: free flight with Maxwell-Boltzmann velocities redrawn every 1 fs step
        sigma = np.sqrt(units.kB * np.where(numbers == 1, 400.0, heavy_K[:, None]) / m) * units.fs  # Å/fs
        v = rng.standard_normal((len(heavy_K), len(numbers), 3)) * sigma[..., None]
        return np.cumsum(v, axis=0) + rng.standard_normal((len(numbers), 3)) * 3.0

    steady = stability.reference_group_temperatures(run(np.full(4000, 400.0)), numbers, 1, 1.0)
    swing = stability.reference_group_temperatures(run(np.repeat([300.0, 500.0], 2000)), numbers, 1, 1.0)
    assert steady[3] < 5.0 and swing[3] > max(10.0, 5 * steady[3])  # heavy atoms: K
    assert abs(steady[1] - swing[1]) < 0.05 * steady[1] and abs(steady[2] - swing[2]) < 5.0  # same mean, H unaffected
    cell = stability.Cell("m", 1, 1.0, "heun1", 1, 1, 1, 1.0, 1.0, 0.0, 400.0, 400.0, 0.0, 1.0, 1.0, 1.0, 1.0, "none",
                          temperature_heavy_ref_se_K=swing[3])
    assert f"± {swing[3]:.0f}" in stability.markdown([cell])
