"""The main job: train a small DiffMD on bundled GFN2-xTB data, roll it out, and compare it with
the baselines on the same starts.

    diffmd demo                      # ethanol, ~5 minutes on 2 CPU cores
    diffmd demo --data aspirin --out runs/demo-aspirin --frames 40

Short-to-long task: the first TRAIN frames train every model, the next VAL frames validate, and
rollouts start at evenly spaced frames of the rest. Writes into OUT: results.md/json (the table
printed at the end), plots/*.png, trajectories/*.extxyz (open in OVITO or VMD, or ase gui),
diffmd/ (the checkpointed run, usable with `diffmd generate`) and report.md.
"""
from __future__ import annotations

NAME = "demo"
HELP = "the main job: train, generate and evaluate on bundled data"


def add_arguments(p):
    from .common import add_data_argument

    add_data_argument(p, required=False, help_extra="; default: bundled ethanol")
    p.add_argument("--out", default="runs/demo", metavar="DIR", help="output directory (default runs/demo)")
    p.add_argument("--config", metavar="CFG.toml", help="DiffMD config (default: the packaged configs/demo.toml)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE", help="override a DiffMD config field")
    p.add_argument("--split", default="2000,1000", metavar="TRAIN,VAL", help="frames for training and validation; the rest is test")
    p.add_argument("--frames", type=int, default=20, help="frames per rollout (0.5 fs each for the bundled MD17-style data)")
    p.add_argument("--starts", type=int, default=8, help="rollout starts spread over the test frames")
    p.add_argument("--baselines", default="static,egnn,rf,gmn,tfn", help="comma-separated baselines to compare")
    p.add_argument("--baseline-epochs", type=int, default=5, help="training epochs of each baseline")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args) -> int:
    import time
    from importlib import resources
    from pathlib import Path

    from ..config import Config
    from ..data import short_to_long_split
    from ..experiments.harness import ExperimentConfig, compare, results_table
    from ..data.writers import write_text

    t0 = time.perf_counter()
    from .common import load_input

    traj = load_input(args.data or "ethanol", args, need_dt=True)
    n_train, n_val = (int(v) for v in args.split.split(","))
    split = short_to_long_split(traj, train=n_train, val=n_val, test=traj.num_frames - n_train - n_val)
    cfg_path = args.config or resources.files("diffmd_fast") / "configs" / "demo.toml"
    cfg = Config.from_toml(cfg_path, overrides=args.set)
    exp = ExperimentConfig(baselines=tuple(b for b in args.baselines.split(",") if b),
                           baseline_epochs=args.baseline_epochs, rollout_frames=args.frames,
                           rollout_starts=args.starts)
    out = Path(args.out)
    print(f"diffmd demo: {traj.name} ({traj.formula}, {traj.num_frames} frames x {traj.dt_fs} fs, "
          f"{traj.provenance.get('method', '?')} at {traj.provenance.get('temperature_K', '?')} K); "
          f"train {n_train}, val {n_val}, test {split.test.num_frames} frames -> {out}")
    results = compare(cfg, exp, [split.train], [split.val], [split.test], out, progress=not args.quiet)
    table = results_table(results)
    minutes = (time.perf_counter() - t0) / 60
    report = out / "report.md"
    write_text(report,
        f"# DiffMD demo on {traj.name}\n\n{exp.rollout_starts} rollouts of {exp.rollout_frames} frames "
        f"({exp.rollout_frames * traj.dt_fs:g} fs) from the test part; metrics averaged over rollouts.\n\n"
        f"{table}\n\n![RMSD over time, mean over the rollouts](plots/rmsd_over_time.png)\n\n"
        f"Distances and RMSF of the first rollout against its reference:\n\n"
        f"![distance distributions](plots/distance_distributions.png)\n\n![RMSF](plots/rmsf.png)\n\n"
        f"Trajectories (first start): `trajectories/*.extxyz`. DiffMD run: `diffmd/` "
        f"(`diffmd info {out / 'diffmd'}`). Finished in {minutes:.1f} min.\n")
    print("\n" + table + "\n")
    print(f"report: {report}\nplots: {out / 'plots'}\ntrajectories: {out / 'trajectories'}  ({minutes:.1f} min)")
    return 0
