"""The paper's Tables 1 and 2 as a resumable grid of cells, one trained model each.

Cells: Table 1 has one cell per (model, molecule), trained on the first frames of that molecule's
trajectory and rolled out from starts in its test block (data.splits.short_to_long_split); Table 2
one cell per model, trained on the training isomers and rolled out on every held-out isomer (the
ones with the largest drift, data.splits.one_to_others_split), one column per held-out isomer.

Resuming: a finished cell is one JSON file, ``OUT/cells/<table>/<model>/<column>.json``, written
atomically (temp file + rename), holding its metrics, training seconds, sizes, budget, protocol and
versions. A re-run skips finished cells, so a killed run continues where it stopped (a DiffMD cell
also resumes its training from the checkpoints in ``OUT/runs/<table>/<model>/<column>/``). A
finished cell made under another protocol or model setting is an error, never silently mixed in.

Sharding: under torchrun, rank r of w runs the cells i with i % w == r of the fixed cell order, each
rank training its own models alone; the tables are rendered afterwards from whatever cells exist
(experiments.tables).

Rollouts: every model of a column starts from the same frames and covers the same time, ``span``
data frames: a model with stride s (DiffMD long-rollout mode: 2) generates span / s frames and is
scored against every s-th reference frame.
"""
from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import redirect_stdout
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import __version__
from ..baselines import REGISTRY
from ..config import Config
from ..data import Trajectory, one_to_others_split, short_to_long_split
from ..data.writers import write_text
from ..evaluation.longrun import long_run_metrics
from .harness import ExperimentConfig, _score, _starts, completed, run_baseline, run_diffmd

TABLE1, TABLE2 = "table1", "table2"
O2O_COLUMN = "isomers"  # file name of a Table 2 cell: one cell holds every held-out isomer
PAPER_BASELINES = ("tfn", "rf", "se3tr", "egnn", "gmn", "scfnn")
DIFFMD_ROWS = ("diffmd-paper", "diffmd-long")
PAPER_MODELS = PAPER_BASELINES + DIFFMD_ROWS
LABELS = {"tfn": "TFN", "rf": "RF", "se3tr": "SE(3)-Tr.", "egnn": "EGNN", "gmn": "GMN", "scfnn": "SCFNN",
          "static": "static frame"}


@dataclass(frozen=True)
class BaselineRow:
    """A next-frame baseline from the registry, trained with the harness's shared recipe (stride 1)."""

    name: str
    exp: ExperimentConfig

    @property
    def key(self) -> str:
        return self.name

    @property
    def label(self) -> str:
        return LABELS.get(self.name, self.name)

    @property
    def stride(self) -> int:
        return 1

    def describe(self) -> dict:
        """What the row's numbers depend on (stored in every cell, compared on resume)."""
        hidden, layers = self.exp.baseline_sizes.get(self.name, (self.exp.baseline_hidden, self.exp.baseline_layers))
        return {"kind": "baseline", "name": self.name, "hidden": hidden, "layers": layers,
                "epochs": self.exp.baseline_epochs, "batch": self.exp.baseline_batch,
                "max_minutes": self.exp.baseline_max_minutes, "seed": self.exp.seed}

    def size(self) -> str:
        d = self.describe()
        return "no parameters" if self.name == "static" else f"hidden {d['hidden']}, {d['layers']} layers"

    def budget(self) -> str:
        limit = f", ≤ {self.exp.baseline_max_minutes:g} min" if self.exp.baseline_max_minutes > 0 else ""
        return f"≤ {self.exp.baseline_epochs} epochs{limit}"

    def train_rollout(self, train, val, items, frames: int, work: Path, progress: bool):
        return run_baseline(self.name, self.exp, train, val, items, frames, self.stride, progress)


@dataclass(frozen=True)
class DiffMDRow:
    """DiffMD trained and rolled out with one config (configs/paper.toml or configs/long.toml)."""

    key: str
    label: str
    config: Config

    @property
    def stride(self) -> int:
        return self.config.train.stride

    def describe(self) -> dict:
        return {"kind": "diffmd", "config": self.config.to_dict()}

    def size(self) -> str:
        m = self.config.model
        return f"{m.num_layers} EGLs, hidden {m.hidden}, {m.heads} heads, FFN {m.ffn}"

    def budget(self) -> str:
        t = self.config.train
        parts = [f"≤ {t.epochs} epochs of batch {t.batch_size}"]
        parts += [f"≤ {t.max_steps} steps"] if t.max_steps else []
        parts += [f"≤ {t.max_minutes:g} min"] if t.max_minutes > 0 else []
        return ", ".join(parts)

    def train_rollout(self, train, val, items, frames: int, work: Path, progress: bool):
        return run_diffmd(self.config, train, val, items, frames, work, progress, distributed=False)


Row = BaselineRow | DiffMDRow


def diffmd_rows(overrides: Sequence[str] = (), max_minutes: float = 0.0) -> dict[str, DiffMDRow]:
    """The two DiffMD rows: paper mode (configs/paper.toml) and long-rollout mode (configs/long.toml),
    both with ``section.field=value`` overrides and a training budget of ``max_minutes`` (0: none)."""
    root = resources.files("diffmd_fast") / "configs"
    extra = [f"train.max_minutes={max_minutes}"] if max_minutes > 0 else []
    rows = {"diffmd-paper": ("DiffMD (paper mode)", "paper.toml"), "diffmd-long": ("DiffMD (long-rollout mode)", "long.toml")}
    return {key: DiffMDRow(key, label, Config.from_toml(root / name, overrides=[*overrides, *extra]))
            for key, (label, name) in rows.items()}


def make_rows(names: Sequence[str], exp: ExperimentConfig, overrides: Sequence[str] = (),
              max_minutes: float = 0.0) -> list[Row]:
    """Rows by name: registered baselines and ``diffmd-paper`` / ``diffmd-long``. Every model gets
    ``max_minutes`` of training (0: no limit). Raises ValueError naming an unknown model."""
    diffmd = diffmd_rows(overrides, max_minutes)
    exp = replace(exp, baseline_max_minutes=max_minutes) if max_minutes > 0 else exp
    unknown = [n for n in names if n not in diffmd and n not in REGISTRY]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; known: baselines {sorted(REGISTRY)} and {sorted(diffmd)}")
    if len(set(names)) != len(names):
        raise ValueError(f"a model is named twice in {list(names)}")
    return [diffmd[n] if n in diffmd else BaselineRow(n, exp) for n in names]


@dataclass(frozen=True)
class Protocol:
    """What the cells' numbers depend on besides their model; each cell stores (and on resume
    compares) the part that concerns its table (``for_table``)."""

    s2l_data: str  # what Table 1's trajectories are, e.g. "md17-gfn2"
    o2o_data: str  # what Table 2's trajectories are, e.g. "c7o2h10-gfn2"
    split: tuple[int, int, int]  # Table 1: consecutive train, validation, test frames (test 0: the rest)
    o2o_test: int  # Table 2: held-out isomers
    span: int  # data frames each rollout covers
    starts: int  # rollout starts per test trajectory
    history_stride: int  # largest model stride: starts leave 2 × this many frames of history

    def for_table(self, table: str) -> dict:
        """The fields a cell of ``table`` depends on (Table 1 ignores the isomer split and vice versa)."""
        common = {"span": self.span, "starts": self.starts, "history_stride": self.history_stride}
        if table == TABLE1:
            return {"data": self.s2l_data, "split": list(self.split), **common}
        return {"data": self.o2o_data, "o2o_test": self.o2o_test, **common}


@dataclass(frozen=True)
class Cell:
    table: str  # TABLE1 or TABLE2
    model: str  # row key
    column: str  # molecule (Table 1) or O2O_COLUMN (Table 2)

    def path(self, out: str | Path) -> Path:
        return Path(out) / "cells" / self.table / self.model / f"{self.column}.json"

    def work_dir(self, out: str | Path) -> Path:
        return Path(out) / "runs" / self.table / self.model / self.column


@dataclass
class Grid:
    """The cells of both tables, and what it takes to run one.

    ``s2l``: Table 1 column -> trajectory spec; ``o2o``: isomer -> trajectory spec (either may be
    empty: that table has no cells); ``load`` reads a spec. Trajectories are read once, on first use,
    and renamed to their key (the column names of the tables).
    """

    rows: list[Row]
    protocol: Protocol
    s2l: Mapping[str, str]
    o2o: Mapping[str, str]
    load: Callable[[str], Trajectory]
    _loaded: dict[str, Trajectory] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        p = self.protocol
        bad = [r.key for r in self.rows if p.history_stride % r.stride]
        if bad or p.span % p.history_stride:
            raise ValueError(f"the rollout span ({p.span} frames) must be a multiple of {p.history_stride}, and that "
                             f"of the stride of every model (not so for {bad})")

    def cells(self) -> list[Cell]:
        """Table 1 molecule by molecule, then Table 2. Molecule j lists the models rotated by j, so
        that with shards taking every w-th cell each model's cells spread over the ranks (with a
        fixed order, w = 2 and an even number of models, one rank would get every DiffMD cell)."""
        keys = [r.key for r in self.rows]
        table1 = [Cell(TABLE1, keys[(i + j) % len(keys)], col) for j, col in enumerate(self.s2l)
                  for i in range(len(keys))]
        return table1 + ([Cell(TABLE2, k, O2O_COLUMN) for k in keys] if self.o2o else [])

    def row(self, key: str) -> Row:
        return next(r for r in self.rows if r.key == key)

    def trajectory(self, key: str, spec: str) -> Trajectory:
        if key not in self._loaded:
            traj = self.load(spec)
            if traj.dt_fs is None:
                raise ValueError(f"{spec}: the time between frames is not stored; pass --dt-fs FS")
            self._loaded[key] = replace(traj, name=key)
        return self._loaded[key]

    def split(self, cell: Cell) -> tuple[list[Trajectory], list[Trajectory], list[Trajectory]]:
        """(train, validation, test) trajectories of a cell."""
        if cell.table == TABLE1:
            traj = self.trajectory(cell.column, self.s2l[cell.column])
            n_train, n_val, n_test = self.protocol.split
            s = short_to_long_split(traj, train=n_train, val=n_val, test=n_test or traj.num_frames - n_train - n_val)
            return [s.train], [s.val] if s.val is not None else [], [s.test]
        s = one_to_others_split([self.trajectory(k, v) for k, v in self.o2o.items()], num_test=self.protocol.o2o_test)
        return s.train, list(s.val or []), s.test

    def spec(self, row: Row, table: str) -> dict:
        """The settings a finished cell of ``row`` in ``table`` must match to be reused (JSON-normalised)."""
        return json.loads(json.dumps({"protocol": self.protocol.for_table(table), "model": row.describe()}))


def shard(cells: Sequence[Cell], rank: int, world: int) -> list[Cell]:
    """Rank ``rank``'s share of ``world``: the cells i with i % world == rank."""
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"need 0 <= rank < world, got rank {rank} of {world}")
    return [c for i, c in enumerate(cells) if i % world == rank]


def rank_and_world() -> tuple[int, int]:
    """(RANK, WORLD_SIZE) as torchrun sets them; (0, 1) when run alone."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def environment() -> dict:
    """Versions and machine, recorded in every cell (the tables' captions quote them)."""
    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"diffmd_fast": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version(),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {torch.get_num_threads()} torch thread(s)"
                       + (f", {cuda}" if cuda else "")}


def _finite(v) -> float | None:
    return float(v) if v is not None and math.isfinite(float(v)) else None


def _mean(values: list) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals and len(vals) == len(values) else None


def _column_metrics(name: str, summary: dict, gens, items, stride: int) -> dict:
    """One column's numbers: ARMSE (Å) and mobility, None unless every rollout ran its whole length,
    and the physical checks, which also count the rollouts a guard stopped.

    Stability (Fu et al. 2023: frames until a bond is > 0.5 Å from its mean length over the test
    block) and h(r) JSD (stable part against the whole test block) come from evaluation.longrun,
    over each rollout's finite frames: a rollout the guards stopped is stable at most up to its stop,
    one that diverged outright (None, or no finite frame) for 0 frames. Mobility is the generated
    over the reference mean frame-to-frame displacement, in phase.
    """
    pairs = [(g, tr) for g, (tr, _) in zip(gens, items) if tr.name == name]
    diverged = sum(not completed(g) for g, _ in pairs)
    out = {"armse": None, "armse_static": _finite(summary.get("armse_static")), "rollouts": len(pairs),
           "diverged": diverged, "stability_ps": None, "stability_frames": None, "h_r_jsd": None, "mobility_ratio": None}
    stable_frames, stable_ps, jsd = [], [], []
    for g, tr in pairs:
        finite = 0 if g is None else int(np.isfinite(g).all(axis=(1, 2)).cumprod().sum())  # frames before any NaN
        if finite < 2:  # too short for the long-run analysis: stable for what there is
            stable_frames.append(finite)
            stable_ps.append(finite * tr.dt_fs * stride / 1000)
            continue
        m = long_run_metrics(g[:finite], tr.positions, tr.numbers, tr.dt_fs * stride, ref_dt_fs=tr.dt_fs)
        stable_frames.append(m["stability_frames"])
        stable_ps.append(m["stability_ps"])
        jsd.append(m["h_r_jsd"])
    out.update(stability_frames=_mean(stable_frames), stability_ps=_mean(stable_ps),
               h_r_jsd=_mean(jsd) if jsd else None)
    if diverged:
        return out
    mob, mob_ref = summary.get("mobility"), summary.get("mobility_ref")
    out.update(armse=_finite(summary.get("armse")), mobility_ratio=_finite(mob / mob_ref) if mob_ref else None)
    return out


def run_cell(grid: Grid, cell: Cell, work: Path, progress: bool = False) -> dict:
    """Train ``cell``'s model, roll it out from the column's starts and score it: the cell's JSON payload."""
    t0 = time.perf_counter()
    row, p = grid.row(cell.model), grid.protocol
    train_set, val_set, test_set = grid.split(cell)
    items = _starts(test_set, p.span // p.history_stride, p.history_stride, p.starts)
    frames = p.span // row.stride
    gens, train_s, fps = row.train_rollout(train_set, val_set, items, frames, work, progress)
    result = _score(row.label, gens, items, frames, row.stride, train_s, fps)
    columns = {t.name: _column_metrics(t.name, result.per_trajectory[t.name], gens, items, row.stride)
               for t in test_set}
    first = test_set[0]
    prov = first.provenance
    return {
        "table": cell.table, "model": row.key, "label": row.label, "column": cell.column, "columns": columns,
        "size": row.size(), "budget": row.budget(), "spec": grid.spec(row, cell.table),
        "train_s": train_s, "cell_s": time.perf_counter() - t0, "rollout_frames_per_s": fps,
        "rollout": {"starts": len(items), "frames": frames, "stride": row.stride, "frame_fs": first.dt_fs * row.stride,
                    "span_fs": p.span * first.dt_fs},
        "data": {"train": [t.name for t in train_set], "train_frames": sum(t.num_frames for t in train_set),
                 "val_frames": sum(t.num_frames for t in val_set), "test": [t.name for t in test_set],
                 "test_frames": sum(t.num_frames for t in test_set), "dt_fs": first.dt_fs,
                 "method": prov.get("method"), "temperature_K": prov.get("temperature_K")},
        "environment": environment(), "finished_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _finished(grid: Grid, cell: Cell, out: Path) -> bool:
    """True when the cell's JSON exists; ValueError when it was made with other settings."""
    path = cell.path(out)
    if not path.is_file():
        return False
    stored = json.loads(path.read_text()).get("spec")
    want = grid.spec(grid.row(cell.model), cell.table)
    if stored != want:
        raise ValueError(f"{path} was made with other settings (differs in {', '.join(_differences(stored, want))}); "
                         f"use another --out or delete that cell")
    return True


def _differences(a, b, prefix: str = "") -> list[str]:
    """Dotted paths of the leaves where two JSON-like values differ (e.g. ``model.config.train.lr``)."""
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return [] if a == b else [prefix or "(all)"]
    return [d for k in sorted(set(a) | set(b)) for d in _differences(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else k)]


def run_grid(grid: Grid, out: str | Path, *, rank: int = 0, world: int = 1, progress: bool = True,
             runner: Callable[[Grid, Cell, Path], dict] | None = None) -> list[Cell]:
    """Run this rank's unfinished cells (``runner`` defaults to :func:`run_cell`) and write each
    cell's JSON as it finishes; returns the cells run. A cell's stdout (training log) goes to
    ``work/log.txt``. Raises ValueError when a finished cell was made with other settings."""
    out = Path(out)
    runner = runner or run_cell
    mine = shard(grid.cells(), rank, world)
    todo = [c for c in mine if not _finished(grid, c, out)]
    if grid.o2o and any(c.table == TABLE2 for c in todo):
        _, _, test = grid.split(Cell(TABLE2, "", O2O_COLUMN))
        write_text(out / "cells" / TABLE2 / "split.json", json.dumps({"test": [t.name for t in test]}, indent=2))
    bar = tqdm(total=len(mine), initial=len(mine) - len(todo), desc=f"cells, rank {rank}/{world}", unit="cell",
               disable=not progress, position=rank, file=sys.stderr)
    for cell in todo:
        bar.set_postfix_str(f"{cell.table} {cell.model} {cell.column}")
        work = cell.work_dir(out)
        work.mkdir(parents=True, exist_ok=True)
        with open(work / "log.txt", "a", buffering=1) as log, redirect_stdout(log):  # line-buffered: a killed run keeps its log
            payload = runner(grid, cell, work)
        write_text(cell.path(out), json.dumps(payload, indent=2, allow_nan=False))
        bar.update(1)
    bar.close()
    return todo


def wait_for_ranks(world: int) -> None:
    """Under torchrun (world > 1): return once every rank has called this, i.e. run all its cells.

    A gloo process group joined only here, with a timeout of days: cells take hours, and nothing else
    is exchanged between ranks."""
    if world <= 1:
        return
    import torch.distributed as dist

    created = not dist.is_initialized()
    if created:
        dist.init_process_group("gloo", timeout=timedelta(days=3))
    dist.barrier()
    if created:
        dist.destroy_process_group()
