"""Long float32 rollout of the bundled molecules: how long does a DiffMD trajectory stay physical?

Short-to-long: a small model is trained (a few minutes at most) on the first 60 % of each bundled
trajectory (or loaded with --checkpoint RUN_DIR), then every molecule is rolled out together from
the last training frame for up to --frames frames with the rollout guards on. Per molecule it
reports the valid frames (before a guard stopped it), the stability time (metrics.stability_frames:
first frame a bond leaves its reference range by > 0.5 Å), the bond-violation fraction over the
valid frames, whether atoms still move, and the guard's stop report; prints a markdown table and
writes JSON.

    python scripts/long_rollout.py --frames 10000 --out out/long_rollout.json
    python scripts/long_rollout.py --checkpoint runs/eth --frames 2000 --set sampler.atol=1e-4

--max-minutes caps the rollout: a 10-frame probe measures the speed and the frame count is cut to
what fits (the JSON says what ran); the guard thresholds stay at guards.GuardConfig's defaults.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from diffmd_fast.training.checkpoint import load_run
from diffmd_fast.cli.common import markdown_table, write_json
from diffmd_fast.config import Config, ModelConfig, TrainConfig
from diffmd_fast.data import bundled, load_trajectory, start_batch
from diffmd_fast.evaluation.metrics import bond_ranges, bond_violation_fraction, bonds_from_reference, mobility, stability_frames
from diffmd_fast.dynamics.rollout import rollout
from diffmd_fast.diffusion.samplers import make_sampler
from diffmd_fast.diffusion.sde import make_sde
from diffmd_fast.training.loop import train

TRAIN_FRACTION = 0.6
SMALL_MODEL = ModelConfig(num_layers=2, hidden=32, heads=4, ffn=64, dropout=0.0)


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--molecules", default="ethanol,aspirin,c7o2h10_0", help="bundled names, comma separated")
    ap.add_argument("--frames", type=int, default=10_000, help="frames to generate per molecule")
    ap.add_argument("--checkpoint", metavar="RUN_DIR", help="use this training run instead of training one")
    ap.add_argument("--run-dir", default="runs/long_rollout", help="where the quick training run goes")
    ap.add_argument("--train-steps", type=int, default=1500, help="optimiser steps of the quick training")
    ap.add_argument("--max-minutes", type=float, default=20.0, help="wall-time cap of the rollout itself")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                    help="config override for training/sampling, e.g. sampler.atol=1e-4")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default="long_rollout.json", help="JSON output path")
    return ap.parse_args(argv)


def get_model(args, trajs):
    """(model, config, training seconds): a checkpoint's, or a quickly trained small one."""
    if args.checkpoint:
        run = load_run(args.checkpoint, overrides=args.set)
        return run.model.float(), run.config, 0.0
    cfg = Config(model=SMALL_MODEL, train=TrainConfig(lr=2e-3, batch_size=64, epochs=10_000, max_steps=args.train_steps,
                                                      val_every=10_000, dtype="float32", device="cpu"))
    cfg = cfg.with_overrides(args.set)
    t0 = time.perf_counter()
    res = train(cfg, [t.slice(0, int(TRAIN_FRACTION * t.num_frames)) for t in trajs], None, args.run_dir)
    return res.model.float().eval(), cfg, time.perf_counter() - t0


def score_molecule(traj, t0: int, gen_valid: np.ndarray, frames: int, report, stride: int) -> dict:
    """Metrics of one molecule's valid generated frames against its whole reference trajectory."""
    bonds = bonds_from_reference(traj.positions[t0:t0 + 1], traj.numbers)
    ranges = bond_ranges(traj.positions, bonds)  # (B, 2) Å over the full reference
    n = gen_valid.shape[0]
    row = {"molecule": traj.name, "atoms": int(traj.numbers.shape[0]), "start_frame": t0, "frames_asked": frames,
           "valid_frames": n, "stability_frames": 0, "stability_fs": 0.0, "bond_violation_fraction": float("nan"),
           "moving": False, "stop": "none" if report is None else report.message(),
           "stop_report": None if report is None else report.to_dict()}
    if n:
        stab = stability_frames(gen_valid, bonds, ranges)
        row.update(stability_frames=stab, stability_fs=stab * traj.dt_fs * stride,
                   bond_violation_fraction=bond_violation_fraction(gen_valid, bonds, ranges),
                   moving=bool(mobility(gen_valid).moving) if n > 1 else False)
    return row


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    trajs = [load_trajectory(bundled(name)) for name in args.molecules.split(",")]
    model, cfg, train_s = get_model(args, trajs)
    sde, sampler, stride = make_sde(cfg.sde), make_sampler(cfg.sampler), cfg.train.stride
    starts = [int(TRAIN_FRACTION * t.num_frames) - 1 for t in trajs]  # last frame the model trained on
    start = start_batch(trajs, starts, stride=stride, dtype=torch.float32)

    def run(frames: int):
        return rollout(model, sde, sampler, start, frames, generator=torch.Generator().manual_seed(args.seed),
                       progress=sys.stderr.isatty())

    probe = run(10)
    frames = min(args.frames, max(10, int(args.max_minutes * 60 * probe.frames_per_s)))
    print(f"trained {train_s:.0f} s; probe {probe.frames_per_s:.1f} frames/s, {probe.mean_nfe:.1f} NFE/frame; "
          f"rolling out {frames} of {args.frames} frames", flush=True)
    res = run(frames)
    rows = [score_molecule(traj, t0, res.valid_molecule(b), frames, res.stopped[b], stride)
            for b, (traj, t0) in enumerate(zip(trajs, starts))]
    print(markdown_table(rows, [("molecule", "molecule"), ("atoms", "atoms"), ("frames_asked", "frames asked"),
                                ("valid_frames", "valid frames"), ("stability_frames", "stable frames"),
                                ("stability_fs", "stable fs"), ("bond_violation_fraction", "bond violations"),
                                ("moving", "moving"), ("stop", "guard")]))
    summary = {"frames_requested": args.frames, "frames_asked": frames, "frames_sampled": res.frames_run,
               "train_seconds": train_s,
               "frames_per_s": res.frames_per_s, "mean_nfe": res.mean_nfe, "wall_s": res.wall_s,
               "dtype": "float32", "config": cfg.to_dict(), "checkpoint": args.checkpoint or args.run_dir,
               "molecules": rows}
    print(f"sampled {res.frames_run} frames (the rollout ends when every molecule has stopped) at "
          f"{res.frames_per_s:.2f} frames/s, {res.mean_nfe:.1f} NFE/frame; wrote {write_json(summary, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
