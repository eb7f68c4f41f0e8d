"""Run-directory artefacts a person reads: metrics.csv, loss.png and report.md."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from ..data.writers import write_text


def write_csv(records: list[dict], path: Path) -> Path:
    keys = sorted({k for r in records for k in r}, key=lambda k: (k != "epoch", k))
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    w.writerows(records)
    return write_text(path, buf.getvalue())


def plot_history(records: list[dict], path: Path) -> Path:
    from matplotlib.figure import Figure

    from ..evaluation.plots import save_figure

    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.add_subplot()
    ep = [r["epoch"] for r in records]
    ax.plot(ep, [r["train_loss"] for r in records], "-o", markersize=3, label="train DSM loss")
    val = [(r["epoch"], r["val_loss"]) for r in records if "val_loss" in r]
    if val:
        ax.plot(*zip(*val), "-s", markersize=3, label="validation DSM loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    arm = [(r["epoch"], r["val_armse"], r.get("val_armse_static", np.nan)) for r in records if "val_armse" in r]
    if arm:
        ax2 = ax.twinx()
        e, a, s = zip(*arm)
        ax2.plot(e, a, "r-^", markersize=3, label="val rollout ARMSE (Å)")
        ax2.plot(e, s, "r:", label="static ARMSE (Å)")
        ax2.set_ylabel("ARMSE (Å)")
        ax2.legend(fontsize="small", loc="upper center")
    fig.tight_layout()
    return save_figure(fig, path)


def write_train_report(result, cfg, trajs) -> Path:
    out = Path(result.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"# DiffMD training run `{out}`", "",
             "Data: " + ", ".join(f"{t.name} ({t.formula}, {t.num_frames} frames x {t.dt_fs} fs)" for t in trajs), "",
             f"Epochs completed: {result.epochs}, optimiser steps: {result.steps}", ""]
    # metrics.jsonl: the history, and last the part of an epoch the training budget cut short
    jsonl = out / "metrics.jsonl"
    records = [json.loads(line) for line in jsonl.read_text().splitlines() if line] if jsonl.is_file() else result.history
    if records:
        write_csv(records, out / "metrics.csv")
        plot_history(records, out / "loss.png")
        last = records[-1]
        lines += ["Last epoch: " + ", ".join(f"{k} = {v:.4g}" if isinstance(v, float) else f"{k} = {v}"
                                             for k, v in last.items()), "", "![loss](loss.png)", ""]
    # the run's own config.toml: the configuration resolved by training (measured values such as
    # model.sigma_data in place of their "measure it" defaults), not the one asked for
    saved = out / "config.toml"
    resolved = saved.read_text().rstrip() if saved.is_file() else cfg.to_toml()
    lines += ["Resolved configuration: `config.toml` (also inside every checkpoint).", "", "```toml", resolved, "```"]
    return write_text(out / "report.md", "\n".join(lines) + "\n")
