"""The results grid: cached cells are skipped, shards partition the cells, tables render in the
paper's layout from cell files, and one tiny end-to-end run on the bundled data."""
from __future__ import annotations

import json

import numpy as np

import pytest

from diffmd_fast.cli import main
from diffmd_fast.data import benchmark, bundled
from diffmd_fast.experiments.grid import (TABLE1, TABLE2, Cell, Grid, Protocol, make_rows, run_grid, shard)
from diffmd_fast.experiments.harness import ExperimentConfig
from diffmd_fast.experiments.tables import relative_improvement, render_results

PROTOCOL = Protocol(s2l_data="test", o2o_data="test", split=(300, 100, 0), o2o_test=1, span=4, starts=1,
                    history_stride=1)


def _grid(columns=("ethanol", "aspirin"), models=("static", "egnn")) -> Grid:
    def no_data(spec):
        raise AssertionError("the fake runner reads no data")

    return Grid(make_rows(list(models), ExperimentConfig()), PROTOCOL, {c: c for c in columns}, {}, load=no_data)


class Counting:
    """A cell runner that records which cells it ran and returns a minimal valid payload."""

    def __init__(self):
        self.ran: list[Cell] = []

    def __call__(self, grid, cell, work):
        self.ran.append(cell)
        return {"spec": grid.spec(grid.row(cell.model), cell.table), "model": cell.model, "columns": {}}


def test_grid_skips_finished_cells_and_reruns_a_deleted_one(tmp_path):
    grid = _grid()
    first = Counting()
    run_grid(grid, tmp_path, runner=first, progress=False)
    assert first.ran == grid.cells() and len(first.ran) == 4
    again = Counting()
    run_grid(grid, tmp_path, runner=again, progress=False)
    assert again.ran == []
    gone = grid.cells()[2]
    gone.path(tmp_path).unlink()
    third = Counting()
    run_grid(grid, tmp_path, runner=third, progress=False)
    assert third.ran == [gone]


def test_a_cell_made_with_other_settings_is_an_error(tmp_path):
    run_grid(_grid(), tmp_path, runner=Counting(), progress=False)
    other = Grid(make_rows(["static", "egnn"], ExperimentConfig(baseline_hidden=8)), PROTOCOL,
                 {"ethanol": "ethanol", "aspirin": "aspirin"}, {}, load=bundled)
    with pytest.raises(ValueError, match=r"other settings \(differs in model\.hidden\)"):
        run_grid(other, tmp_path, runner=Counting(), progress=False)


@pytest.mark.parametrize("world", [1, 2, 3, 5])
def test_shards_partition_the_cells(tmp_path, world):
    grid = _grid(columns=("a", "b", "c"), models=("static", "egnn", "rf"))
    cells = grid.cells()
    runs = []
    for rank in range(world):
        runner = Counting()
        run_grid(grid, tmp_path / "out", rank=rank, world=world, runner=runner, progress=False)
        assert runner.ran == shard(cells, rank, world) == cells[rank::world]
        runs += runner.ran
    assert sorted(runs, key=cells.index) == cells  # every cell exactly once
    with pytest.raises(ValueError, match="rank"):
        shard(cells, world, world)


# ---- rendering from hand-made cells ------------------------------------------------------------

def _cell(model, label, kind, columns: dict, stride=1):
    """A cell payload as run_cell writes it; columns: name -> ARMSE (None: diverged)."""
    metrics = {c: {"armse": v, "armse_static": 0.5, "rollouts": 2, "diverged": 0 if v is not None else 2,
                   "stability_ps": 0.05 if v is not None else 0.004, "stability_frames": 100.0 if v is not None else 8.0,
                   "h_r_jsd": 0.01, "mobility_ratio": 0.9 if v is not None else None}
               for c, v in columns.items()}
    return {"model": model, "label": label, "columns": metrics, "size": "hidden 8", "budget": "≤ 1 min",
            "spec": {"protocol": {"data": "hand-made", "split": [300, 100, 0], "o2o_test": 1, "span": 100, "starts": 2,
                                  "history_stride": 2}, "model": {"kind": kind}},
            "train_s": 10.0, "rollout": {"stride": stride, "frame_fs": 0.5 * stride, "span_fs": 50.0},
            "data": {"train": ["x"], "train_frames": 300, "val_frames": 100, "test": ["x"], "test_frames": 600,
                     "dt_fs": 0.5, "method": "GFN2-xTB", "temperature_K": 500.0},
            "environment": {"machine": "test box", "diffmd_fast": "0", "torch": "0"}}


def _write(root, table, column_file, payload):
    path = root / "cells" / table / payload["model"] / f"{column_file}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload))


def test_tables_mark_best_second_na_missing_and_relative_improvement(tmp_path):
    for model, label, kind, vals in [
        ("rf", "RF", "baseline", {"ethanol": None, "aspirin": 3.7}),  # diverged on ethanol
        ("egnn", "EGNN", "baseline", {"ethanol": 0.719, "aspirin": 0.868}),
        ("gmn", "GMN", "baseline", {"ethanol": 0.751}),  # aspirin cell never ran
        ("diffmd-paper", "DiffMD (paper mode)", "diffmd", {"ethanol": 0.637, "aspirin": 0.9}),
        ("diffmd-long", "DiffMD (long-rollout mode)", "diffmd", {"ethanol": 0.70, "aspirin": 0.648}),
    ]:
        for col, v in vals.items():
            _write(tmp_path, TABLE1, col, _cell(model, label, kind, {col: v}, stride=2 if model == "diffmd-long" else 1))
    (tmp_path / "cells" / TABLE1 / "gmn" / ".aspirin.json.x1y2.json").write_text("{half a cell")  # being written
    md, data = render_results(tmp_path)
    armse_part = md.split("Table 1b")[0]
    lines = {ln.split(" | ")[0].lstrip("| "): ln for ln in armse_part.splitlines() if ln.startswith("| ")}
    t1 = data[TABLE1]
    assert t1["columns"] == ["aspirin", "ethanol"]  # the paper's order
    assert [r["model"] for r in t1["rows"]] == ["rf", "egnn", "gmn", "diffmd-paper", "diffmd-long"]
    assert lines["RF"] == "| RF | 3.700 | NA |"
    assert lines["GMN"] == "| GMN | – | 0.751 |"
    assert lines["DiffMD (paper mode)"] == "| DiffMD (paper mode) | 0.900 | **0.637** |"
    assert lines["DiffMD (long-rollout mode)"] == "| DiffMD (long-rollout mode) | **0.648** | <u>0.700</u> |"
    assert lines["EGNN"] == "| EGNN | <u>0.868</u> | 0.719 |"
    assert t1["relative_improvement"]["aspirin"] == pytest.approx((0.868 - 0.648) / 0.868)
    assert t1["relative_improvement"]["ethanol"] == pytest.approx((0.719 - 0.637) / 0.719)
    assert lines["Relative impro."] == "| Relative impro. | 25.3% | 11.4% |"
    assert t1["missing"] == ["GMN × aspirin"] and "Missing cells (–): GMN × aspirin" in md
    # the physical-checks table: stopped rollouts still say how long they stayed intact
    assert "| RF | 0.050 · 0.010 · 0.90 | 0.004 · 0.010 · NA (2/2 stopped) |" in md
    assert "DiffMD (long-rollout mode) 1 fs" in md and "test box" in md and "≤ 1 min" in md
    assert TABLE2 not in data


def test_relative_improvement_edge_cases():
    assert relative_improvement({"a": 1.0, "d": "NA"}, ["d"]) == "NA"
    assert relative_improvement({"a": "NA", "d": 1.0}, ["d"]) is None
    assert relative_improvement({"a": 2.0, "d": 2.5}, ["d"]) == pytest.approx(-0.25)  # DiffMD worse: negative


def test_table2_has_one_column_per_held_out_isomer(tmp_path):
    (tmp_path / "cells" / TABLE2).mkdir(parents=True)
    (tmp_path / "cells" / TABLE2 / "split.json").write_text(json.dumps({"test": ["iso_b", "iso_a"]}))
    _write(tmp_path, TABLE2, "isomers", _cell("egnn", "EGNN", "baseline", {"iso_a": 1.1, "iso_b": 0.5}))
    _write(tmp_path, TABLE2, "isomers", _cell("diffmd-paper", "DiffMD (paper mode)", "diffmd", {"iso_a": 1.0, "iso_b": None}))
    _, data = render_results(tmp_path)
    t2 = data[TABLE2]
    assert t2["columns"] == ["iso_b", "iso_a"]
    assert t2["relative_improvement"] == {"iso_b": "NA", "iso_a": pytest.approx((1.1 - 1.0) / 1.1)}


# ---- end to end --------------------------------------------------------------------------------

TINY = ["model.num_layers=1", "model.hidden=16", "model.heads=2", "model.ffn=16", "model.dropout=0.0",
        "train.epochs=1", "train.max_steps=2", "train.batch_size=16", "train.val_rollout_frames=0",
        "sampler.atol=1e-3", "sampler.rtol=1e-3"]


def test_results_grid_end_to_end_on_bundled_ethanol(tmp_path, capsys):
    sets = [a for item in TINY for a in ("--set", item)]
    argv = ["results", "--s2l", "ethanol", "--split", "300,100,200", "--frames", "4", "--starts", "1",
            "--models", "static,egnn,diffmd-long", "--baseline-epochs", "1", "--baseline-hidden", "8",
            "--baseline-layers", "1", "--out", str(tmp_path), "--quiet", *sets]
    assert main(argv) == 0
    assert "ran 3 cell(s)" in capsys.readouterr().out
    cell = json.loads((tmp_path / "cells" / TABLE1 / "diffmd-long" / "ethanol.json").read_text())
    m = cell["columns"]["ethanol"]
    assert m["armse"] > 0 and m["rollouts"] == 1 and cell["train_s"] > 0
    assert cell["rollout"]["frames"] == 1  # long.toml stride 4: 4 data frames are 1 model frame
    assert (cell["data"]["train_frames"], cell["data"]["val_frames"], cell["data"]["test_frames"]) == (300, 100, 200)
    assert (tmp_path / "runs" / TABLE1 / "diffmd-long" / "ethanol" / "log.txt").read_text()  # the training log
    md = (tmp_path / "tables.md").read_text()
    assert "| DiffMD (long-rollout mode) |" in md and "| static frame |" in md and "Table 1b" in md
    assert main(argv) == 0  # everything cached: nothing runs again
    assert "ran 0 cell(s)" in capsys.readouterr().out
    assert main(["results", "--render-only", "--out", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "tables.json").read_text())[TABLE1]["missing"] == []


def test_paper_protocol_reads_the_benchmark_sets(tmp_path, monkeypatch, capsys):
    asked = []

    def benchmark_files(set_name, root=None):
        asked.append((set_name, root))
        if set_name != "md17-gfn2":
            raise FileNotFoundError(f"{set_name} is missing; run `diffmd data make {set_name}`")
        return {"ethanol": bundled("ethanol")}

    monkeypatch.setattr(benchmark, "benchmark_files", benchmark_files)
    argv = ["results", "--protocol", "paper", "--data-dir", str(tmp_path / "data"), "--split", "300,100", "--frames",
            "2", "--starts", "1", "--models", "static", "--out", str(tmp_path / "out"), "--quiet"]
    assert main([*argv, "--tables", "1"]) == 0
    assert asked == [("md17-gfn2", str(tmp_path / "data"))]
    assert "| static frame |" in (tmp_path / "out" / "tables.md").read_text()
    assert main(argv) == 2  # Table 2's set is missing: one line naming the command that makes it
    assert "diffmd data make c7o2h10-gfn2" in capsys.readouterr().err


def test_every_model_is_spread_over_two_ranks():
    grid = _grid(columns=("a", "b", "c", "d"), models=("static", "egnn", "rf", "gmn"))
    for rank in (0, 1):
        mine = [c for c in shard(grid.cells(), rank, 2) if c.table == TABLE1]
        assert {c.model for c in mine} == {"static", "egnn", "rf", "gmn"}
        assert len(mine) == 8


def test_a_stopped_rollout_counts_up_to_its_stop_in_the_physical_checks():
    from diffmd_fast.data import bundled, load_trajectory
    from diffmd_fast.experiments.grid import _column_metrics

    traj = load_trajectory(bundled("ethanol")).slice(0, 400)
    whole = traj.positions[101:141].copy()  # (40, 9, 3) the reference itself: stable throughout
    stopped = whole.copy()
    stopped[10:] = np.nan  # a guard stopped it after 10 frames
    items = [(traj, 100), (traj, 100)]
    m = _column_metrics(traj.name, {"armse": float("nan"), "armse_static": 0.1}, [whole, stopped], items, 1)
    assert m["diverged"] == 1 and m["armse"] is None and m["mobility_ratio"] is None
    assert m["stability_frames"] == pytest.approx((40 + 10) / 2)  # 40 and 10 frames, not NA
    assert m["h_r_jsd"] is not None
    gone = _column_metrics(traj.name, {"armse_static": 0.1}, [None, stopped], items, 1)
    assert gone["stability_frames"] == pytest.approx((0 + 10) / 2)
