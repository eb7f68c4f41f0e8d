"""The paper's Tables 1 and 2, rendered from the finished cells of the grid (experiments.grid).

Layout as in the paper: one column per molecule (Table 1) or held-out isomer (Table 2), one row per
model, ARMSE in Å; the best value of a column in bold (``**x**``), the second underlined
(``<u>x</u>``), "NA" for a model whose rollout diverged, and a "Relative impro." row: (best
baseline − best DiffMD) / best baseline, the paper's definition (its Table 1, aspirin:
(0.813 − 0.648) / 0.813 = 20.2 %), taken over the better of the two DiffMD rows. A cell that has
not run (yet) shows "–" and is listed under the table. A row "(static frame, for scale)" gives
the ARMSE of repeating the start frame, which every model should beat.

A second table per experiment gives the physical checks the paper lacks, per column:
MDsim stability (ps until a bond leaves its mean length by > 0.5 Å, capped by the rollout length),
h(r) JSD of the stable part against the test block, and mobility (generated / reference mean
frame-to-frame displacement: 1 moves like MD, 0 is frozen).

The captions state the data, the budget per cell, the network sizes and the machine, all read
from the cells themselves, so a table rendered later (``--render-only``) says what made it.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..data.writers import json_text, write_text
from .grid import O2O_COLUMN, PAPER_MODELS, TABLE1, TABLE2, Grid

MISSING = "–"  # the cell has not run
NA = "NA"  # the model diverged (the paper's mark)
MD17_ORDER = ("aspirin", "benzene", "ethanol", "malonaldehyde", "naphthalene", "salicylic_acid", "toluene", "uracil")
TITLES = {TABLE1: ("Table 1: short-to-long, ARMSE (Å)", "Table 1b: short-to-long, physical checks"),
          TABLE2: ("Table 2: one-to-others on the held-out isomers, ARMSE (Å)",
                   "Table 2b: one-to-others, physical checks")}


@dataclass(frozen=True)
class Layout:
    """Rows (model key, label, is DiffMD) top to bottom and columns left to right of one table."""

    rows: tuple[tuple[str, str, bool], ...]
    columns: tuple[str, ...]


def load_cells(out: str | Path) -> dict[str, dict[tuple[str, str], dict]]:
    """table -> (model, cell file stem) -> the cell's payload, for every finished cell under ``out``."""
    found: dict[str, dict[tuple[str, str], dict]] = {TABLE1: {}, TABLE2: {}}
    for table in found:
        for path in sorted((Path(out) / "cells" / table).glob("*/*.json")):
            if not path.name.startswith("."):  # a cell being written (atomic_path's temp file)
                found[table][(path.parent.name, path.stem)] = json.loads(path.read_text())
    return found


def _metrics(cells: Mapping[tuple[str, str], dict], table: str, model: str, column: str) -> dict | None:
    """One column's metrics of one model (None: the cell has not run)."""
    cell = cells.get((model, column if table == TABLE1 else O2O_COLUMN))
    return None if cell is None else cell["columns"].get(column)


def _is_diffmd(cell: dict) -> bool:
    return cell["spec"]["model"]["kind"] == "diffmd"


def layout_from_cells(table: str, cells: Mapping[tuple[str, str], dict], out: str | Path) -> Layout:
    """Rows and columns of whatever cells exist: baselines in the paper's order, then DiffMD rows;
    Table 1 molecules in the paper's order; Table 2 isomers from the split the run recorded."""
    by_model = {model: cell for (model, _), cell in cells.items()}
    order = {k: i for i, k in enumerate(PAPER_MODELS)}
    keys = sorted(by_model, key=lambda k: (_is_diffmd(by_model[k]), order.get(k, len(order)), k))
    rows = tuple((k, by_model[k]["label"], _is_diffmd(by_model[k])) for k in keys)
    seen = list(dict.fromkeys(col for cell in cells.values() for col in cell["columns"]))
    split = Path(out) / "cells" / TABLE2 / "split.json"
    if table == TABLE2 and split.is_file():
        return Layout(rows, tuple(json.loads(split.read_text())["test"]))
    mol = {k: i for i, k in enumerate(MD17_ORDER)}
    return Layout(rows, tuple(sorted(seen, key=lambda c: (mol.get(c, len(mol)), c))))


def layout_from_grid(table: str, grid: Grid, cells: Mapping[tuple[str, str], dict], out: str | Path) -> Layout:
    """The grid's rows, and its columns (Table 2: the held-out isomers the run recorded)."""
    rows = tuple((r.key, r.label, r.describe()["kind"] == "diffmd") for r in grid.rows)
    columns = tuple(grid.s2l) if table == TABLE1 else layout_from_cells(table, cells, out).columns
    return Layout(rows, columns)


def _armse(m: dict | None) -> float | str | None:
    if m is None:
        return None
    return NA if m["armse"] is None else float(m["armse"])


def _fmt(v: float | str | None, mark: str = "") -> str:
    if v is None:
        return MISSING
    if isinstance(v, str):
        return v
    text = f"{v:.3f}"
    return {"best": f"**{text}**", "second": f"<u>{text}</u>"}.get(mark, text)


def _ranks(values: Mapping[str, float | str | None]) -> dict[str, str]:
    """model -> "best" / "second" among the finite values of one column (ties: the upper row)."""
    finite = sorted((v, i, k) for i, (k, v) in enumerate(values.items()) if isinstance(v, float))
    return {k: mark for (_, _, k), mark in zip(finite, ("best", "second"))}


def relative_improvement(values: Mapping[str, float | str | None], diffmd: Sequence[str]) -> float | str | None:
    """(best baseline − best DiffMD) / best baseline over one column's ARMSEs; NA when every DiffMD
    row diverged, None when a side has no number (missing cells, or every baseline diverged)."""
    ours = [v for k, v in values.items() if k in diffmd and isinstance(v, float)]
    base = [v for k, v in values.items() if k not in diffmd and isinstance(v, float)]
    if not ours and any(values.get(k) == NA for k in diffmd):
        return NA
    if not ours or not base or min(base) <= 0:
        return None
    return (min(base) - min(ours)) / min(base)


def _static(cells, table: str, layout: Layout, column: str) -> float | None:
    """Static-frame ARMSE of a column, from a stride-1 cell when there is one (every reference frame)."""
    found = []
    for key, _, _ in layout.rows:
        m = _metrics(cells, table, key, column)
        if m is not None and m["armse_static"] is not None:
            stride = cells[(key, column if table == TABLE1 else O2O_COLUMN)]["rollout"]["stride"]
            found.append((stride, m["armse_static"]))
    return min(found)[1] if found else None


def _physical(m: dict | None) -> str:
    if m is None:
        return MISSING

    def num(v, f):
        return "n/a" if v is None else format(v, f)

    # stability and h(r) count stopped rollouts up to their stop; mobility needs whole rollouts
    mobility = NA if m["diverged"] else num(m["mobility_ratio"], ".2f")
    stopped = f" ({m['diverged']}/{m['rollouts']} stopped)" if m["diverged"] else ""
    return f"{num(m['stability_ps'], '.3f')} · {num(m['h_r_jsd'], '.3f')} · {mobility}{stopped}"


def _distinct(values) -> list:
    return list(dict.fromkeys(v for v in values if v is not None))


def _caption(table: str, layout: Layout, cells: Mapping[tuple[str, str], dict], missing: list[str]) -> list[str]:
    present = list(cells.values())
    if not present:
        return ["no cell has finished yet"]
    data = [c["data"] for c in present]
    proto = present[0]["spec"]["protocol"]
    method = ", ".join(_distinct(f"{d['method'] or 'unknown method'} MD at {d['temperature_K'] or '?'} K, "
                                 f"{d['dt_fs']:g} fs frames" for d in data))
    if table == TABLE1:
        split = (f"train on the first {proto['split'][0]} frames of each molecule, validate on the next "
                 f"{proto['split'][1]}, roll out in the next {'/'.join(_distinct(str(d['test_frames']) for d in data))}")
    else:
        split = (f"train on {len(data[0]['train'])} isomers ({data[0]['train_frames']} frames), roll out on the "
                 f"{proto['o2o_test']} with the largest drift")
    by_row = {key: [c for (k, _), c in cells.items() if k == key] for key, _, _ in layout.rows}
    rows = [(label, cs) for (key, label, _), cs in zip(layout.rows, by_row.values()) if cs]
    strided = _distinct(f"{label} {c['rollout']['frame_fs']:g} fs" for label, cs in rows for c in cs
                        if c["rollout"]["stride"] != 1)
    lines = [
        f"Data: {proto['data']} ({method}); {split}.",
        f"Rollouts: {proto['starts']} starts per test trajectory, each {present[0]['rollout']['span_fs']:g} fs of "
        f"model frames one data frame apart" + (f" (except {', '.join(strided)} frames)" if strided else "")
        + "; ARMSE averaged over the starts, NA when any rollout diverged.",
        "Budget per cell: " + "; ".join(f"{label} {' / '.join(_distinct(c['budget'] for c in cs))} "
                                        f"(mean {sum(c['train_s'] for c in cs) / len(cs):.0f} s trained)"
                                        for label, cs in rows) + ".",
        "Sizes: " + "; ".join(f"{label} {' / '.join(_distinct(c['size'] for c in cs))}" for label, cs in rows) + ".",
        "Machine: " + "; ".join(_distinct(f"{e['machine']}; diffmd_fast {e['diffmd_fast']}, torch {e['torch']}"
                                          for e in (c["environment"] for c in present))) + ".",
    ]
    if missing:
        lines.append(f"Missing cells ({MISSING}): " + ", ".join(missing) + ".")
    return lines


def render_table(table: str, layout: Layout, cells: Mapping[tuple[str, str], dict]) -> tuple[str, dict]:
    """Markdown (the ARMSE table and the physical-checks table, with captions) and JSON of one table."""
    cols, diffmd = layout.columns, [k for k, _, d in layout.rows if d]
    armse = {k: {c: _armse(_metrics(cells, table, k, c)) for c in cols} for k, _, _ in layout.rows}
    marks = {c: _ranks({k: armse[k][c] for k, _, _ in layout.rows}) for c in cols}
    rel = {c: relative_improvement({k: armse[k][c] for k, _, _ in layout.rows}, diffmd) for c in cols}
    static = {c: _static(cells, table, layout, c) for c in cols}
    missing = [f"{label} × {c}" for k, label, _ in layout.rows for c in cols if _metrics(cells, table, k, c) is None]
    caption = _caption(table, layout, cells, missing)
    head = ["| Methods | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    title, phys_title = TITLES[table]
    body = [f"| {label} | " + " | ".join(_fmt(armse[k][c], marks[c].get(k, "")) for c in cols) + " |"
            for k, label, _ in layout.rows]
    body.append("| Relative impro. | " + " | ".join(
        r if isinstance(r, str) else (MISSING if r is None else f"{100 * r:.1f}%") for r in rel.values()) + " |")
    body.append("| (static frame, for scale) | " + " | ".join(_fmt(static[c]) for c in cols) + " |")
    phys = [f"| {label} | " + " | ".join(_physical(_metrics(cells, table, k, c)) for c in cols) + " |"
            for k, label, _ in layout.rows]
    md = "\n".join([f"### {title}", "", *head, *body, "", *caption, "",
                    f"### {phys_title}", "",
                    "Each cell: MDsim stability (ps, at most the rollout length; a rollout the guards stopped "
                    "counts up to its stop) · h(r) JSD · mobility "
                    "(generated / reference displacement per frame); not in the paper.", "", *head, *phys])
    payload = {
        "title": title, "columns": list(cols),
        "rows": [{"model": k, "label": label, "diffmd": d, "armse": armse[k],
                  "physical": {c: _metrics(cells, table, k, c) for c in cols}} for k, label, d in layout.rows],
        "relative_improvement": rel, "static": static, "missing": missing, "caption": caption,
    }
    return md, payload


def render_results(out: str | Path, grid: Grid | None = None,
                   tables: Sequence[str] = (TABLE1, TABLE2)) -> tuple[str, dict]:
    """Markdown and JSON of ``tables`` from the cells under ``out``: laid out as ``grid`` (its rows
    and columns, every cell it has and has not run) or, without one, as whatever cells exist."""
    cells = load_cells(out)
    parts, payload = [], {}
    for table in tables:
        layout = (layout_from_grid(table, grid, cells[table], out) if grid is not None
                  else layout_from_cells(table, cells[table], out))
        if not layout.rows or not layout.columns:
            continue
        md, payload[table] = render_table(table, layout, cells[table])
        parts.append(md)
    return "\n\n".join(parts) + "\n", payload


def write_results(out_dir: str | Path, markdown: str, payload: dict) -> tuple[Path, Path]:
    """OUT/tables.md and OUT/tables.json (atomic writes)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md, js = out / "tables.md", out / "tables.json"
    write_text(md, markdown)
    write_text(js, json_text(payload, indent=2))
    return md, js


__all__ = ["Layout", "MISSING", "NA", "layout_from_cells", "layout_from_grid", "load_cells", "relative_improvement",
           "render_results", "render_table", "write_results"]
