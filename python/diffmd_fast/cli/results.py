"""Fill the paper's Table 1 (short-to-long, one column per molecule) and Table 2 (one-to-others,
one column per held-out isomer) for DiffMD and every baseline; markdown and JSON.

    diffmd results --s2l ethanol --s2l aspirin --o2o c7o2h10_0 --o2o c7o2h10_1 --o2o c7o2h10_2 \
        --split 1500,500 --o2o-test 1 --out results/bundled        # minutes, on the bundled data
    diffmd results --s2l data/md17/*.npz --o2o data/iso/*.npz --split 20000,10000 --out results/paper \
        --config paper.toml                                        # the paper's sizes (hours, GPU)
"""
from __future__ import annotations

NAME = "results"
HELP = "the paper's Tables 1 and 2 for DiffMD and the baselines"


def add_arguments(p):
    p.add_argument("--s2l", action="append", default=[], metavar="FILE", help="trajectory for Table 1 (repeatable)")
    p.add_argument("--o2o", action="append", default=[], metavar="FILE", help="isomer trajectory for Table 2 (repeatable)")
    p.add_argument("--split", default="20000,10000", metavar="TRAIN,VAL", help="Table 1 train/validation frames; the rest is test")
    p.add_argument("--o2o-test", type=int, default=5, metavar="N", help="held-out isomers in Table 2 (largest drift)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (tables.md, tables.json, per-run folders)")
    p.add_argument("--config", metavar="CFG.toml", help="DiffMD config (default: paper settings)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE", help="override a DiffMD config field")
    p.add_argument("--frames", type=int, default=100, help="frames per rollout")
    p.add_argument("--starts", type=int, default=4, help="rollout starts per test trajectory")
    p.add_argument("--baselines", default="static,egnn,rf,gmn,tfn")
    p.add_argument("--baseline-epochs", type=int, default=200, help="paper: 200")
    p.add_argument("--quiet", action="store_true")
    from .common import add_data_options

    add_data_options(p)


def run(args) -> int:
    from ..config import Config
    from ..experiments.harness import ExperimentConfig
    from ..experiments.tables import one_to_others_table, short_to_long_table, write_results
    from .common import load_input

    if not args.s2l and not args.o2o:
        raise ValueError("give trajectories with --s2l (Table 1) and/or --o2o (Table 2)")
    cfg = Config.from_toml(args.config, overrides=args.set)
    exp = ExperimentConfig(baselines=tuple(b for b in args.baselines.split(",") if b),
                           baseline_epochs=args.baseline_epochs, rollout_frames=args.frames, rollout_starts=args.starts)
    n_train, n_val = (int(v) for v in args.split.split(","))
    parts, payload = [], {}
    if args.s2l:
        trajs = [load_input(s, args, need_dt=True) for s in args.s2l]
        shortest = min(t.num_frames for t in trajs)
        md, payload["table1"] = short_to_long_table(trajs, cfg, exp, (n_train, n_val, shortest - n_train - n_val),
                                                    args.out, progress=not args.quiet)
        parts.append(md)
    if args.o2o:
        md, payload["table2"] = one_to_others_table([load_input(s, args, need_dt=True) for s in args.o2o], cfg, exp, args.o2o_test,
                                                    args.out, progress=not args.quiet)
        parts.append(md)
    markdown = "\n\n".join(parts) + "\n"
    md_path, js_path = write_results(args.out, markdown, payload)
    print(markdown)
    print(f"wrote {md_path} and {js_path}")
    return 0
