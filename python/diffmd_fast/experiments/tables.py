"""The paper's Tables 1 and 2 on our own GFN2-xTB data, for DiffMD and every baseline.

Table 1 (short-to-long): for each molecule, train on its first frames, validate on the next and
roll out from starts in the rest; one column per molecule, ARMSE (Å) per model.
Table 2 (one-to-others): train on most isomers, test on the held-out isomers with the largest
drift (data.splits.one_to_others_split); one column per held-out isomer.
Both are written as markdown and JSON. The paper's sizes (20k/10k/10k frames, 200 epochs) are the
defaults of the full benchmark data (`diffmd data make`); smaller settings run on the
bundled trajectories in minutes.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

from ..config import Config
from ..data import Trajectory, one_to_others_split, short_to_long_split
from ..data.writers import write_text
from .harness import ExperimentConfig, ModelResult, compare


def _table(title: str, columns: list[str], by_column: dict[str, list[ModelResult]], key: str = "armse") -> str:
    models = [r.model for r in next(iter(by_column.values()))]
    lines = [f"### {title}", "", "| model | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for i, model in enumerate(models):
        cells = []
        for col in columns:
            res = by_column[col][i] if col in by_column else None
            v = res.per_trajectory.get(col, res.metrics).get(key, math.nan) if res else math.nan
            cells.append("NA" if not math.isfinite(v) else f"{v:.4f}")
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    static = [f"{next(iter(by_column[c])).per_trajectory.get(c, {}).get('armse_static', math.nan):.4f}"
              for c in columns if c in by_column]
    lines.append("| (static frame, for scale) | " + " | ".join(static) + " |")
    return "\n".join(lines)


def short_to_long_table(trajs: Sequence[Trajectory], cfg: Config, exp: ExperimentConfig, split: tuple[int, int, int],
                        out_dir: str | Path, progress: bool = True) -> tuple[str, dict]:
    by_mol = {}
    for traj in trajs:
        s = short_to_long_split(traj, train=split[0], val=split[1], test=split[2])
        by_mol[traj.name] = compare(cfg, exp, [s.train], [s.val] if s.val is not None else [], [s.test],
                                    Path(out_dir) / "s2l" / traj.name, progress=progress)
    cols = list(by_mol)
    return _table("Table 1: short-to-long, ARMSE (Å)", cols, by_mol), {c: [r.__dict__ for r in by_mol[c]] for c in cols}


def one_to_others_table(trajs: Sequence[Trajectory], cfg: Config, exp: ExperimentConfig, num_test: int,
                        out_dir: str | Path, progress: bool = True) -> tuple[str, dict]:
    s = one_to_others_split(trajs, num_test=num_test)
    results = compare(cfg, exp, s.train, s.val or [], s.test, Path(out_dir) / "o2o", progress=progress)
    cols = [t.name for t in s.test]
    table = _table("Table 2: one-to-others, ARMSE (Å) on held-out isomers", cols, {c: results for c in cols})
    return table, {"train": [t.name for t in s.train], "test": cols, "results": [r.__dict__ for r in results]}


def write_results(out_dir: str | Path, markdown: str, payload: dict) -> tuple[Path, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md, js = out / "tables.md", out / "tables.json"
    write_text(md, markdown)
    write_text(js, json.dumps(payload, indent=2, default=str))
    return md, js
