"""`diffmd bench rollout` at a tiny size: the table prints and the JSON has every row and field
(no timings are asserted)."""
import json

import numpy as np

from diffmd_fast.cli import main

TINY = ["model.num_layers=1", "model.hidden=8", "model.heads=2", "model.ffn=16", "train.batch_size=8",
        "sampler.method=euler", "sampler.eps=0.1"]


def test_bench_rollout_writes_rows_for_xtb_and_each_batch(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "rollout", "--frames", "3", "--batches", "1,3", "--xtb-steps", "4", "--train-steps", "1",
                 "--train-frames", "100", "--threads", "1", "--json", str(out), "--compile", "off",
                 *(a for s in TINY for a in ("--set", s))]) == 0
    printed = capsys.readouterr().out
    assert "| GFN2-xTB (ASE Langevin + tblite) | 1 |" in printed and "| DiffMD | 3 |" in printed
    data = json.loads(out.read_text())
    assert data["machine"]["threads"] == 1 and data["settings"]["data"] == "ethanol"
    assert [(r["method"].split()[0], r["batch"]) for r in data["rows"]] == [("GFN2-xTB", 1), ("DiffMD", 1),
                                                                           ("DiffMD", 3)]
    for row in data["rows"]:
        for key in ("ps_per_s", "total_ps_per_s", "frames", "frame_fs", "stable_ps", "hr_jsd", "mean_T_K", "stopped"):
            assert key in row
        assert row["ps_per_s"] > 0 and row["total_ps_per_s"] >= row["ps_per_s"]
        assert 0 <= row["stable_ps"] <= row["frames"] * row["frame_fs"] / 1000
    assert all(r["nfe_per_frame"] == 1.0 for r in data["rows"][1:])  # one Euler step a frame
    assert "| batch | mode | atoms | frame (ms) | score call: egt_score op (ms)" in printed
    for row in data["rows"][1:]:  # the per-call split of each DiffMD batch
        assert row["atoms"] == 9 * row["batch"]
        assert all(row[k] > 0 for k in ("ms_per_frame", "score_call_ms", "score_modules_ms", "egl_op_ms", "anchor_ms"))
    assert np.isfinite(data["rows"][0]["hr_jsd"]) and data["rows"][0]["mean_T_K"] > 0
