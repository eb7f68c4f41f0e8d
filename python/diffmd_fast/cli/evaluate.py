"""Score generated trajectories against the reference: ARMSE and physical checks, table and plots.

    diffmd evaluate --reference ethanol --generated gen.npz --json metrics.json --plots plots/
    diffmd evaluate --reference ethanol --generated gen.extxyz --start 5000 --json m.json \
        --compare egnn=egnn.npz --compare static=static.npz

Reference frames are aligned to the generated ones from --start (default: the start frame the
generator recorded) with the generator's frame stride. METRICS.json holds, per trajectory:
armse (Å, mean per-frame RMSD without alignment, as the paper), armse_static (the start frame
held still), armse_mean_structure, stability_frames (first frame a bond leaves its reference range
by > 0.5 Å), bond_violation_fraction, distance_jsd (Jensen-Shannon divergence of interatomic
distance histograms, base 2), rmsf_error (Å), mobility (Å/frame) and whether atoms keep moving.
"""
from __future__ import annotations

NAME = "evaluate"
HELP = "metrics, tables and plots against a reference"

COLUMNS = [("model", "model"), ("armse", "ARMSE (Å)"), ("armse_static", "static ARMSE (Å)"),
           ("stability_frames", "stable frames"), ("bond_violation_fraction", "bond violations"),
           ("distance_jsd", "distance JSD"), ("rmsf_error", "RMSF error (Å)"), ("moving", "moving")]


def add_arguments(p):
    from .common import add_data_argument

    add_data_argument(p, flag="--reference")
    p.add_argument("--generated", required=True, metavar="TRAJ", help="generated trajectory (npz or extxyz)")
    p.add_argument("--compare", action="append", default=[], metavar="NAME=TRAJ",
                   help="another generated trajectory (e.g. a baseline) from the same start; repeatable")
    p.add_argument("--start", type=int, metavar="FRAME", help="start frame in the reference (default: recorded by the generator)")
    p.add_argument("--stride", type=int, metavar="S", help="MD frames per generated frame (default: recorded, else 1)")
    p.add_argument("--json", required=True, metavar="METRICS.json", help="where to write the metrics")
    p.add_argument("--plots", metavar="DIR", help="write RMSD-over-time, distance-distribution and RMSF plots (PNG) here")


def aligned_reference(ref, gen, start: int, stride: int):
    """The reference frames at the generated frames' times: start+stride, ..., start+T*stride."""
    T = gen.num_frames
    last = start + T * stride
    if start < 0 or last >= ref.num_frames:
        raise ValueError(f"reference {ref.name} has {ref.num_frames} frames; {T} generated frames from start {start} "
                         f"with stride {stride} need frame {last}")
    if not ref.consecutive(start, last):
        raise ValueError(f"reference {ref.name}: frames {start}..{last} are not consecutive MD frames (or their spacing "
                         f"is not known), so they cannot be compared with a rollout frame by frame")
    if gen.num_atoms != ref.num_atoms or not (gen.numbers == ref.numbers).all():
        raise ValueError(f"generated trajectory has atoms {gen.formula}, reference {ref.formula}: not the same molecule")
    return ref.positions[start + stride: last + 1: stride]


def run(args) -> int:
    from pathlib import Path

    import numpy as np

    from ..evaluation import metrics, plots
    from ..data import load_trajectory
    from .common import load_input, markdown_table, write_json

    ref = load_input(args.reference, args)
    named = {"diffmd": load_trajectory(args.generated)}
    for item in args.compare:
        name, sep, path = item.partition("=")
        if not sep:
            raise ValueError(f"--compare expects NAME=TRAJ, got {item!r}")
        named[name] = load_trajectory(path)
    first = named["diffmd"]
    start = args.start if args.start is not None else first.provenance.get("start_frame")
    if start is None:
        raise ValueError(f"{args.generated} does not record its start frame; pass --start")
    stride = args.stride or int(first.provenance.get("stride", 1))
    target = aligned_reference(ref, first, int(start), stride)
    results, rows = {}, []
    for name, gen in named.items():
        m = metrics.evaluate(gen.positions, aligned_reference(ref, gen, int(start), stride), ref.numbers,
                             start=ref.positions[int(start)])
        results[name] = m
        rows.append({"model": name, **m})
    out = {"reference": ref.name, "start_frame": int(start), "stride": stride, "frames": first.num_frames,
           "dt_fs": None if ref.dt_fs is None else ref.dt_fs * stride, **results["diffmd"], "models": results}
    write_json(out, args.json)
    print(markdown_table(rows, COLUMNS))
    if args.plots:
        d = Path(args.plots)
        pos = {n: g.positions for n, g in named.items()}
        static = np.broadcast_to(ref.positions[int(start)], target.shape)
        made = [plots.plot_rmsd_over_time({**pos, "static": static}, target, d / "rmsd_over_time.png",
                                          dt_fs=None if ref.dt_fs is None else ref.dt_fs * stride),
                plots.plot_distance_distributions(pos, target, d / "distance_distributions.png"),
                plots.plot_rmsf(pos, target, d / "rmsf.png", numbers=ref.numbers)]
        print("plots: " + ", ".join(map(str, made)))
    print(f"metrics: {args.json}")
    return 0
