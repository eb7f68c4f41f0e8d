"""Show what a trajectory file or a training run directory holds.

    diffmd info ethanol                 # a bundled trajectory
    diffmd info data.npz                # frames, atoms, formula, time step (fs), provenance
    diffmd info runs/ethanol            # checkpoints, epochs, resolved config
"""
from __future__ import annotations

import json
from pathlib import Path

NAME = "info"
HELP = "what a data file or checkpoint holds"


def add_arguments(p):
    p.add_argument("path", metavar="FILE_OR_RUN_DIR", help="trajectory file, bundled name, or training run directory")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")


def run(args) -> int:
    path = Path(args.path)
    info = _run_info(path) if path.is_dir() else _data_info(args.path)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
    else:
        for key, value in info.items():
            if isinstance(value, dict):
                print(f"{key}:")
                for k, v in value.items():
                    print(f"  {k}: {v}")
            else:
                print(f"{key}: {value}")
    return 0


def _data_info(spec: str) -> dict:
    from ..data import load_data

    traj = load_data(spec)
    return {"name": traj.name, "formula": traj.formula, "frames": traj.num_frames, "atoms": traj.num_atoms,
            "time_step_fs": traj.dt_fs, "duration_fs": (traj.num_frames - 1) * traj.dt_fs,
            "energies": traj.energies is not None, "forces": traj.forces is not None,
            "provenance": dict(traj.provenance)}


def _run_info(run: Path) -> dict:
    from ..training.checkpoint import list_checkpoints, load_latest

    ckpts = list_checkpoints(run)
    if not ckpts and not (run / "config.json").is_file():
        raise FileNotFoundError(f"{run} is neither a trajectory nor a training run directory (no checkpoints)")
    info = {"run": str(run), "checkpoints": [p.name for p in ckpts]}
    found = load_latest(run) if ckpts else None
    if found is not None:
        state, path = found
        info.update(latest=path.name, epoch=state["epoch"], step=state["step"])
        hist = state.get("history") or []
        if hist:
            info["last_epoch_metrics"] = hist[-1]
        info["config"] = {f"{sec}.{k}": v for sec, vals in state["config"].items() for k, v in vals.items()}
    return info
