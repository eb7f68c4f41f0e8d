"""Copy trained runs without their step-friction record, so that `bench stability --runs DST` resumes each
one (its training already done) and measures the step's friction afresh with that command's `--set`
(e.g. `train.calibrate_stretches=true`): the same weights, only the calibration differs.

    python benches/panel/recalibrate.py SRC_RUNS DST_RUNS [MOLECULE_s4 ...]

SRC_RUNS holds `bench stability` run directories (MOLECULE_sSTRIDE); without names, every one of them.
The cached cells of the prior alone (which no calibration touches) are copied too."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

from diffmd_fast.config import Config
from diffmd_fast.training.checkpoint import load_latest, save_checkpoint


def recalibration_copy(src: Path, dst: Path) -> str:
    """``dst``: the newest checkpoint of the run ``src`` without its step-friction record, and its config
    files and metrics. Returns the checkpoint's file name."""
    state, path = load_latest(src)
    state["data"].pop("step_friction", None)
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("config.toml", "config.json", "metrics.jsonl"):
        if (src / name).exists():
            shutil.copy(src / name, dst / name)
    save_checkpoint(dst, state, Config.from_dict(state["config"]), keep=1)
    return path.name


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        sys.exit(__doc__)
    src, dst = Path(argv[0]), Path(argv[1])
    names = argv[2:] or sorted(p.name for p in src.iterdir() if (p / "DONE").exists())
    for name in names:
        print(f"{src / name} -> {dst / name}: {recalibration_copy(src / name, dst / name)}")
    cells = src / "cells"
    if cells.is_dir():
        (dst / "cells").mkdir(parents=True, exist_ok=True)
        for cell in cells.glob("*_prior-only_*"):
            if cell.name.split("_prior-only_")[0] in names:
                shutil.copy(cell, dst / "cells" / cell.name)


if __name__ == "__main__":
    main(sys.argv[1:])
