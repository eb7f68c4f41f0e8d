"""The comparison harness behind `diffmd demo` and `diffmd results`, at toy sizes."""
from __future__ import annotations

import json
import math

import pytest

from diffmd_fast.cli import main
from diffmd_fast.config import Config
from diffmd_fast.data import bundled, load_trajectory, short_to_long_split
from diffmd_fast.experiments.harness import ExperimentConfig, compare, results_table

TINY = ["model.num_layers=1", "model.hidden=16", "model.heads=2", "model.ffn=16", "model.dropout=0.0",
        "train.epochs=1", "train.max_steps=3", "train.batch_size=16", "train.val_rollout_frames=0",
        "sampler.atol=1e-3", "sampler.rtol=1e-3"]


def _png(path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 2000


def test_compare_writes_table_plots_and_trajectories(tmp_path):
    split = short_to_long_split(load_trajectory(bundled("ethanol")).slice(0, 400), train=200, val=50, test=150)
    exp = ExperimentConfig(baselines=("static", "egnn"), baseline_hidden=8, baseline_layers=1, baseline_epochs=1,
                           rollout_frames=3, rollout_starts=2)
    results = compare(Config().with_overrides(TINY), exp, [split.train], [split.val], [split.test], tmp_path,
                      progress=False)
    assert [r.model for r in results] == ["DiffMD", "static", "egnn"]
    static = results[1]
    assert static.rollouts == 2 and static.diverged == 0
    assert math.isclose(static.metrics["armse"], static.metrics["armse_static"], rel_tol=1e-6)  # float32 positions
    for r in results:
        assert set(r.per_trajectory) == {split.test.name}
    table = results_table(results)
    assert table.count("\n") == 4 and "DiffMD" in table
    saved = json.loads((tmp_path / "results.json").read_text())
    assert [r["model"] for r in saved["results"]] == ["DiffMD", "static", "egnn"]
    for png in ("rmsd_over_time.png", "distance_distributions.png", "rmsf.png"):
        assert _png(tmp_path / "plots" / png)
    assert {p.name for p in (tmp_path / "trajectories").iterdir()} >= {"reference.extxyz", "diffmd.extxyz"}


def test_results_command_fills_both_tables(tmp_path, capsys):
    assert main(["results", "--s2l", "c7o2h10_0", "--o2o", "c7o2h10_0", "--o2o", "c7o2h10_1", "--o2o", "c7o2h10_2",
                 "--o2o-test", "1", "--split", "300,100", "--frames", "2", "--starts", "1", "--models", "static",
                 "--out", str(tmp_path), "--quiet"]) == 0
    md = (tmp_path / "tables.md").read_text()
    assert "Table 1" in md and "Table 2" in md and "| static frame |" in md
    data = json.loads((tmp_path / "tables.json").read_text())
    assert set(data) == {"table1", "table2"} and len(data["table2"]["columns"]) == 1


def test_results_command_needs_data():
    with pytest.raises(SystemExit):
        main(["results"])
    assert main(["results", "--out", "x"]) == 2


def test_a_baseline_whose_training_diverges_is_scored_na(monkeypatch, tmp_path):
    from diffmd_fast.experiments import harness

    def explode(*args, **kwargs):
        raise FloatingPointError("non-finite gradient")

    monkeypatch.setattr(harness, "train_next_frame", explode)
    split = short_to_long_split(load_trajectory(bundled("ethanol")).slice(0, 400), train=200, val=50, test=150)
    items = harness._starts([split.test], 3, 1, 2)
    gens, _, fps = harness.run_baseline("egnn", ExperimentConfig(baseline_hidden=8, baseline_layers=1), [split.train],
                                        [split.val], items, 3, 1, progress=False)
    assert gens == [None, None] and fps == 0.0
