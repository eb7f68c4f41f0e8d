"""The paper's benchmark data, made once with GFN2-xTB and cached (see diffmd_fast.data.benchmark).

    diffmd data make md17-gfn2 --jobs 2          # 8 MD17 molecules, 40,000 frames each (~25 core-min)
    diffmd data make c7o2h10-gfn2 --count 40     # C7H10O2 isomers, 5,000 frames each (~35 core-s each)
    diffmd data status                           # what is made, where, and what is missing

Files go to $DIFFMD_DATA (or the per-user cache directory) / SET / NAME.npz, with manifest.json
holding each file's checksum and the exact `diffmd simulate` command. Re-running `make` continues a
killed run and regenerates any file whose checksum no longer matches.
"""
from __future__ import annotations

NAME = "data"
HELP = "make or check the cached benchmark data (MD17 and C7H10O2 with GFN2-xTB)"


def add_arguments(p):
    from ..data.benchmark import BENCHMARK_SETS

    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    make = sub.add_parser("make", help="generate (or finish) benchmark sets")
    make.add_argument("sets", nargs="+", choices=sorted(BENCHMARK_SETS), metavar="SET",
                      help=f"one or more of: {', '.join(BENCHMARK_SETS)}")
    make.add_argument("--count", type=int, metavar="N",
                      help="molecules of each set to make (the CPU budget; default: all 8 MD17, 40 isomers)")
    make.add_argument("--jobs", type=int, default=2, help="molecules simulated at once, one process and core each")
    make.add_argument("--quiet", action="store_true", help="no progress bar")
    stat = sub.add_parser("status", help="list made, missing and corrupt files")
    stat.add_argument("sets", nargs="*", metavar="SET", help="default: every set")
    stat.add_argument("--count", type=int, metavar="N", help="molecules to check (default: as made)")
    for q in (make, stat):
        q.add_argument("--data-dir", metavar="DIR", help="data root (default: $DIFFMD_DATA or the user cache dir)")


def run(args) -> int:
    from pathlib import Path

    from ..data import benchmark

    root = Path(args.data_dir) if args.data_dir else benchmark.cache_dir()
    if args.action == "make":
        if args.jobs < 1:
            raise ValueError(f"--jobs must be >= 1, got {args.jobs}")
        for name in args.sets:
            manifest = benchmark.make(benchmark.get_set(name).take(args.count), root, jobs=args.jobs,
                                      progress=not args.quiet)
            entries = manifest["entries"].values()
            print(f"{name}: {len(entries)} molecules in {root / name} "
                  f"({sum(e['wall_s'] for e in entries) / 60:.1f} min of MD wall time summed over molecules)")
        return 0
    for name in args.sets or list(benchmark.BENCHMARK_SETS):
        made = benchmark.read_manifest(root, name)
        count = args.count or made.get("count")
        states = benchmark.status(benchmark.get_set(name).take(count), root)
        done = [m for m, s in states.items() if s == "done"]
        print(f"{name}: {len(done)}/{len(states)} made in {root / name}")
        for state in ("missing", "corrupt", "stale"):
            if names := [m for m, s in states.items() if s == state]:
                print(f"  {state}: {', '.join(names)}")
    return 0
