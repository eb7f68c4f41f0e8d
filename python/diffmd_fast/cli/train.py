"""Train DiffMD on one or more trajectories (short-to-long split by default).

    diffmd train --data ethanol --out runs/ethanol --set train.epochs=20 --set model.num_layers=2
    diffmd train --data a.npz --data b.npz --out runs/ab --config cfg.toml --split 2000,500,500
    torchrun --nproc-per-node 2 -m diffmd_fast.cli train --data ethanol --out runs/ddp   # DDP

Configuration: TOML sections [model] [sde] [sampler] [train] [rollout] (see diffmd_fast/config.py for every
field, its unit and the paper default), then --set section.field=value overrides. The run
directory gets config.json/.toml, checkpoints (resumed automatically when present),
metrics.jsonl and metrics.csv, a loss plot and report.md.
"""
from __future__ import annotations

NAME = "train"
HELP = "train a DiffMD score network"


def add_arguments(p):
    from .common import add_data_argument

    add_data_argument(p, help_extra="; repeat for several", append=True)
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory (created; resumed if it has checkpoints)")
    p.add_argument("--config", metavar="CFG.toml", help="TOML config (default: the paper's settings)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override one config field, e.g. train.epochs=5, model.backend=reference, sampler.kind=pc")
    p.add_argument("--split", metavar="TRAIN,VAL,TEST", help="short-to-long frame counts per trajectory "
                   "(default: 60%%/20%%/20%% of each trajectory; the paper used 20000,10000,10000)")
    p.add_argument("--no-resume", action="store_true", help="start afresh even if RUN_DIR has checkpoints")
    p.add_argument("--quiet", action="store_true", help="no progress bars: one JSON line per epoch instead (batch jobs)")


def split_all(trajs, spec):
    from ..data import short_to_long_split
    from .common import frame_counts

    out = []
    for t in trajs:
        if spec:
            n = frame_counts(spec, ("TRAIN", "VAL", "TEST"))
        else:
            n = [int(0.6 * t.num_frames), int(0.2 * t.num_frames)]
            n.append(t.num_frames - n[0] - n[1])
        out.append(short_to_long_split(t, train=n[0], val=n[1], test=n[2]))
    return out


def run(args) -> int:
    from ..config import Config
    from ..training.loop import train
    from .report import write_train_report

    cfg = Config.from_toml(args.config, overrides=args.set)
    from .common import load_input

    trajs = [load_input(s, args, need_dt=True) for s in args.data]
    splits = split_all(trajs, args.split)
    result = train(cfg, [s.train for s in splits], [s.val for s in splits if s.val is not None], args.out,
                   resume=not args.no_resume, progress=not args.quiet)
    report = write_train_report(result, cfg, trajs)
    print(f"trained {result.epochs} epochs ({result.steps} steps); run directory {result.out_dir}; report {report}")
    return 0
