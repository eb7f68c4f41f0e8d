"""Fill the paper's Table 1 (short-to-long, one column per molecule) and Table 2 (one-to-others,
one column per held-out isomer) for the baselines and DiffMD in paper and long-rollout mode; markdown
and JSON, plus the physical checks the paper lacks (stability, h(r), mobility).

Every (model, molecule) is one cell, cached as OUT/cells/...json when it finishes: re-running the
same command continues a killed run; under torchrun the cells are shared out over the ranks.

    diffmd data make md17-gfn2 && diffmd data make c7o2h10-gfn2          # the benchmark data, once
    diffmd results --protocol paper --out results/paper --split 2000,1000,10000 --max-minutes 0.5 \\
        --set model.hidden=64 --set model.ffn=128                       # a CPU budget (benches/results/README.md)
    torchrun --nproc-per-node 2 -m diffmd_fast.cli results --protocol paper --out results/paper ...
    diffmd results --render-only --out results/paper                   # tables from the cells so far
    diffmd results --s2l ethanol --o2o c7o2h10_0 --o2o c7o2h10_1 --o2o c7o2h10_2 --o2o-test 1 \\
        --split 1500,500 --out results/bundled --models egnn,diffmd-paper   # bundled smoke run
"""
from __future__ import annotations

NAME = "results"
HELP = "the paper's Tables 1 and 2 for DiffMD and the baselines (resumable grid of cells)"
DEFAULT_MODELS = "tfn,rf,se3tr,egnn,gmn,scfnn,diffmd-paper,diffmd-long"


def add_arguments(p):
    p.add_argument("--protocol", choices=["paper"],
                   help="paper: Table 1 on the 8 molecules of md17-gfn2, Table 2 on c7o2h10-gfn2 (`diffmd data make`)")
    p.add_argument("--data-dir", metavar="DIR", help="root of the benchmark data (default: its cache directory)")
    p.add_argument("--s2l", action="append", default=[], metavar="FILE", help="trajectory for Table 1 (repeatable)")
    p.add_argument("--o2o", action="append", default=[], metavar="FILE", help="isomer trajectory for Table 2 (repeatable)")
    p.add_argument("--tables", default="1,2", help="which tables to run (default 1,2)")
    p.add_argument("--split", default="20000,10000,10000", metavar="TRAIN,VAL[,TEST]",
                   help="Table 1 consecutive train/validation/test frames per molecule (no TEST: the rest); "
                        "paper: 20000,10000,10000")
    p.add_argument("--o2o-test", type=int, default=5, metavar="N", help="held-out isomers in Table 2 (largest drift)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (tables.md, tables.json, cells/, runs/)")
    p.add_argument("--models", default=DEFAULT_MODELS,
                   help=f"rows: registered baselines and diffmd-paper / diffmd-long (default {DEFAULT_MODELS})")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override a field of both DiffMD configs (configs/paper.toml, configs/long.toml)")
    p.add_argument("--max-minutes", type=float, default=0.0,
                   help="training wall clock per cell, every model (0: no limit besides epochs)")
    p.add_argument("--baseline-epochs", type=int, default=200, help="paper: 200")
    p.add_argument("--baseline-hidden", type=int, default=64, help="paper: 64")
    p.add_argument("--baseline-layers", type=int, default=4, help="paper: 4")
    p.add_argument("--baseline-size", action="append", default=[], metavar="NAME=HIDDENxLAYERS",
                   help="one baseline's size, e.g. tfn=16x1 (default for tfn and se3tr: 16x2, e3nn is slow on CPUs)")
    p.add_argument("--frames", type=int, default=100, help="data frames each rollout covers")
    p.add_argument("--starts", type=int, default=4, help="rollout starts per test trajectory")
    p.add_argument("--render-only", action="store_true", help="only render the tables from the cells under --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    from .common import add_data_options

    add_data_options(p)


def _sizes(items: list[str]) -> dict[str, tuple[int, int]]:
    from ..experiments.harness import ExperimentConfig

    sizes = dict(ExperimentConfig().baseline_sizes)  # the CPU sizes of the e3nn models, then the options
    for item in items:
        name, sep, size = item.partition("=")
        hidden, x, layers = size.partition("x")
        if not (sep and x and hidden.isdigit() and layers.isdigit()):
            raise ValueError(f"--baseline-size {item!r} must look like NAME=HIDDENxLAYERS, e.g. tfn=16x2")
        sizes[name] = (int(hidden), int(layers))
    return sizes


def _split(text: str) -> tuple[int, int, int]:
    from .common import frame_counts

    parts = frame_counts(text, ("TRAIN", "VAL", "TEST"), optional=1)
    return tuple(parts) + (0,) * (3 - len(parts))


def _sources(args, tables: set[str]) -> tuple[dict[str, str], dict[str, str], str, str]:
    """Table 1 and Table 2 trajectories (name -> file) and what each set is, for the captions."""
    from pathlib import Path

    if args.protocol == "paper":
        if args.s2l or args.o2o:
            raise ValueError("--protocol paper reads the benchmark data; drop --s2l/--o2o")
        from ..data.benchmark import benchmark_files

        sets = {"1": "md17-gfn2", "2": "c7o2h10-gfn2"}
        files = {t: {k: str(v) for k, v in benchmark_files(sets[t], args.data_dir).items()} for t in sorted(tables)}
        return files.get("1", {}), files.get("2", {}), sets["1"], sets["2"]
    if not args.s2l and not args.o2o:
        raise ValueError("give --protocol paper, or trajectories with --s2l (Table 1) and/or --o2o (Table 2)")
    s2l = {Path(s).stem: s for s in args.s2l} if "1" in tables else {}
    o2o = {Path(s).stem: s for s in args.o2o} if "2" in tables else {}
    return s2l, o2o, "files " + ", ".join(s2l.values()), "files " + ", ".join(o2o.values())


def run(args) -> int:
    from ..experiments.grid import TABLE1, TABLE2, Grid, Protocol, make_rows, rank_and_world, run_grid, wait_for_ranks
    from ..experiments.harness import ExperimentConfig
    from ..experiments.tables import render_results, write_results
    from .common import load_input

    tables = {t for t in args.tables.split(",") if t}
    if not tables or not tables <= {"1", "2"}:
        raise ValueError(f"--tables takes 1, 2 or 1,2, got {args.tables!r}")
    names = {"1": TABLE1, "2": TABLE2}
    which = [names[t] for t in sorted(tables)]
    rank, world = rank_and_world()
    grid = None
    if not args.render_only:
        s2l, o2o, s2l_data, o2o_data = _sources(args, tables)
        exp = ExperimentConfig(baselines=(), baseline_epochs=args.baseline_epochs, baseline_hidden=args.baseline_hidden,
                               baseline_layers=args.baseline_layers, baseline_sizes=_sizes(args.baseline_size))
        rows = make_rows([m for m in args.models.split(",") if m], exp, args.set, args.max_minutes)
        # history for stride 2 (long-rollout mode) whatever the rows: the starts stay the same
        # when rows are added to a run later
        protocol = Protocol(s2l_data=s2l_data, o2o_data=o2o_data, split=_split(args.split), o2o_test=args.o2o_test,
                            span=args.frames, starts=args.starts, history_stride=max(2, *(r.stride for r in rows)))
        grid = Grid(rows, protocol, s2l, o2o, load=lambda spec: load_input(spec, args, need_dt=True))
        ran = run_grid(grid, args.out, rank=rank, world=world, progress=not args.quiet)
        print(f"rank {rank}/{world}: ran {len(ran)} cell(s)")
        wait_for_ranks(world)
    if rank != 0:
        return 0
    markdown, payload = render_results(args.out, grid, which)
    md_path, js_path = write_results(args.out, markdown, payload)
    print(markdown)
    print(f"wrote {md_path} and {js_path}")
    return 0
