"""The main job: train a small DiffMD on bundled GFN2-xTB data, roll it out, and compare it with
the baselines on the same starts (in phase, 20 frames); then train a long-rollout DiffMD
(configs/long.toml) and roll it out for --long-ps picoseconds from every start, with the long-run
metrics (stability, h(r), temperature, VDOS) and a GFN2-xTB speed row.

    diffmd demo                      # ethanol, ~9 minutes on 2 CPU cores
    diffmd demo --data aspirin --out runs/demo-aspirin --frames 40

Short-to-long task: the first TRAIN frames train every model, the next VAL frames validate, and
rollouts start at evenly spaced frames of the rest. Writes into OUT: results.md/json (the table
printed at the end), plots/*.png, trajectories/*.extxyz (open in OVITO or VMD, or ase gui),
diffmd/ and diffmd-long/ (the checkpointed runs, usable with `diffmd generate`) and report.md.
"""
from __future__ import annotations

NAME = "demo"
HELP = "the main job: train, generate and evaluate on bundled data"


def add_arguments(p):
    from .common import add_data_argument

    add_data_argument(p, required=False, help_extra="; default: bundled ethanol")
    p.add_argument("--out", default="runs/demo", metavar="DIR", help="output directory (default runs/demo)")
    p.add_argument("--config", metavar="CFG.toml", help="DiffMD config (default: the packaged configs/demo.toml)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override a DiffMD config field (of both DiffMD models)")
    p.add_argument("--long-config", metavar="CFG.toml",
                   help="config of the long-rollout DiffMD (default: the packaged configs/long.toml)")
    p.add_argument("--split", default="2000,1000", metavar="TRAIN,VAL", help="frames for training and validation; the rest is test")
    p.add_argument("--frames", type=int, default=20, help="frames per rollout (0.5 fs each for the bundled MD17-style data)")
    p.add_argument("--starts", type=int, default=8, help="rollout starts spread over the test frames")
    p.add_argument("--baselines", default="static,egnn,rf,gmn,tfn,se3tr,scfnn", help="comma-separated baselines to compare")
    p.add_argument("--baseline-epochs", type=int, default=5, help="training epochs of each baseline")
    p.add_argument("--long-ps", type=float, default=10.0,
                   help="then roll DiffMD out this many ps from each start, with the long-run metrics (0: skip)")
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
    from .common import frame_counts, load_input

    traj = load_input(args.data or "ethanol", args, need_dt=True)
    n_train, n_val = frame_counts(args.split, ("TRAIN", "VAL"))
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
    long_section = ""
    if args.long_ps > 0:
        long_section = _long_run(args, traj, split, out)
    minutes = (time.perf_counter() - t0) / 60
    report = out / "report.md"
    write_text(report,
        f"# DiffMD demo on {traj.name}\n\n{exp.rollout_starts} rollouts of {exp.rollout_frames} frames "
        f"({exp.rollout_frames * traj.dt_fs * cfg.train.stride:g} fs) from the test part; metrics averaged over "
        f"rollouts.\n\n{table}\n\n![RMSD over time, mean over the rollouts](plots/rmsd_over_time.png)\n\n"
        f"Distances and RMSF of the first rollout against its reference:\n\n"
        f"![distance distributions](plots/distance_distributions.png)\n\n![RMSF](plots/rmsf.png)\n\n"
        f"{long_section}"
        f"Trajectories (first start): `trajectories/*.extxyz`. DiffMD run: `diffmd/` "
        f"(`diffmd info {out / 'diffmd'}`). Finished in {minutes:.1f} min.\n")
    print("\n" + table + "\n")
    print(f"report: {report}\nplots: {out / 'plots'}\ntrajectories: {out / 'trajectories'}  ({minutes:.1f} min)")
    return 0


def _long_run(args, traj, split, out) -> str:
    """Train the long-rollout DiffMD (configs/long.toml: a valence force-field prior under the network,
    one score evaluation per frame, thermostat and momentum projection) on the same split, roll it out for --long-ps from every
    start, time GFN2-xTB beside it; print and return a report section."""
    from importlib import resources

    from ..config import Config
    from ..training.loop import train
    from ..experiments.long_rollout import long_rollout, write_long_rollout_outputs
    from ..training.run import load_run
    from .common import markdown_table

    import torch

    from ..benchmarks.rollout import XTB_FS, xtb_row

    cfg_path = args.long_config or resources.files("diffmd_fast") / "configs" / "long.toml"
    train(Config.from_toml(cfg_path, overrides=args.set), [split.train], [split.val], out / "diffmd-long",
          progress=not args.quiet)
    run = load_run(out / "diffmd-long")
    result, gens = long_rollout(run, traj, split.test, ps=args.long_ps, starts=args.starts, progress=not args.quiet)
    write_long_rollout_outputs(result, gens, traj, out)
    s = result.summary()
    # the engine that made the data, same machine and threads, 400 timed steps: is DiffMD faster?
    xtb = xtb_row(traj, result.starts[0], 400, 5, torch.get_num_threads(),
                  float(traj.provenance.get("temperature_K") or s["temperature_ref_mean_K"]), 1, XTB_FS)
    xtb_fs = 1000.0 * xtb["ps_per_s"]
    row = {**s, "stable": f"{s['stable_starts']}/{s['starts']}", "xtb_fs_per_s": xtb_fs,
           "vs_xtb": f"{s['fs_per_s'] / xtb_fs:.2f}x"}
    table = markdown_table([row], [("ps_per_start", "ps per start"), ("stable", "stable starts"),
                                   ("stability_ps", "stable ps (mean)"), ("h_r_jsd", "h(r) JSD"),
                                   ("temperature_mean_K", "T (K)"), ("temperature_ref_mean_K", "T ref (K)"),
                                   ("vdos_overlap", "VDOS overlap"), ("nfe_per_frame", "NFE/frame"),
                                   ("fs_per_s", "fs per wall s"), ("xtb_fs_per_s", "GFN2-xTB fs per wall s"),
                                   ("vs_xtb", "vs xTB")])
    print(f"\nlong rollouts: {s['starts']} starts x {s['ps_per_start']:g} ps ({s['frames']} frames of "
          f"{s['frame_fs']:g} fs), thermostat/momentum per the run's [rollout] config\n{table}")
    return (f"## Long rollouts\n\nA second DiffMD trained for long rollouts (`diffmd-long/`, configs/long.toml: "
            f"EDM preconditioning about the Verlet step of a valence force field (bonds, angles, torsions) fitted to the data, "
            f"input noise with response targets and pushforward training, one score evaluation per frame): "
            f"{s['starts']} starts x {s['ps_per_start']:g} ps ({s['frames']} frames of "
            f"{s['frame_fs']:g} fs) with the physics of its [rollout] config; stability as in MDsim (a bond "
            f"more than 0.5 Å from its reference mean), h(r), temperature and VDOS over the stable frames against "
            f"the whole reference. Speed: all starts together against one GFN2-xTB MD run (ASE + tblite) at a "
            f"{XTB_FS:g} fs step on the same machine and threads.\n\n{table}\n\n![temperature](plots/long_temperature.png)\n\n"
            f"![h(r)](plots/long_h_r.png)\n\n![VDOS](plots/long_vdos.png)\n\n")
