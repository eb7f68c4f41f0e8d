"""Score generated trajectories against the reference: ARMSE and physical checks, table and plots.

    diffmd evaluate --reference ethanol --generated gen.npz --json metrics.json --plots plots/
    diffmd evaluate --reference ethanol --generated gen.extxyz --start 5000 --json m.json \
        --compare egnn=egnn.npz --compare static=static.npz

Two kinds of metrics, per trajectory, in METRICS.json:

Phase-aligned (reference frames at the generated frames' times, from --start, default the start frame
the generator recorded, with the generator's frame stride; over the frames the reference holds,
``aligned_frames``): armse (Å, mean per-frame RMSD without alignment, as the paper), armse_static (the
start frame held still), armse_mean_structure, stability_frames_range (first frame a bond leaves its
reference min-max range by > 0.5 Å), bond_violation_fraction, distance_jsd (Jensen-Shannon divergence of
interatomic distance histograms, base 2), rmsf_error (Å), mobility (Å/frame) and whether atoms keep moving.

Long-run (evaluation.longrun; no phase alignment, the whole generated run against the whole reference
taken every stride frames; Fu et al. 2023, "Forces are not enough"): stability_frames and stability_ps
(first frame a bond is > 0.5 Å from its mean reference length), h_r_mae and h_r_jsd (pair-distance
density, 500 bins to 10 Å), temperature_mean_K / temperature_std_K and the reference's
temperature_ref_mean_K / temperature_ref_std_K (kinetic temperature from implied velocities, centre of
mass removed, 3N-6 degrees of freedom), vdos_overlap (in [0, 1]: Σ min of the two normalised vibrational
spectra), vdos_peak_cm1, vdos_ref_peak_cm1, vdos_resolution_cm1 and the Nyquist limit of the frame time,
vdos_nyquist_cm1 / vdos_nyquist_THz. Generated distributions use the stable part only; with no stable
frame they are null.
"""
from __future__ import annotations

NAME = "evaluate"
HELP = "metrics, tables and plots against a reference"

COLUMNS = [("model", "model"), ("aligned_frames", "aligned frames"), ("armse", "ARMSE (Å)"),
           ("armse_static", "static ARMSE (Å)"), ("stability_frames_range", "in-range frames"),
           ("bond_violation_fraction", "bond violations"), ("distance_jsd", "distance JSD"),
           ("rmsf_error", "RMSF error (Å)"), ("moving", "moving")]
LONG_COLUMNS = [("model", "model"), ("frames", "frames"), ("stability_frames", "stable frames"),
                ("stability_ps", "stable ps"), ("h_r_mae", "h(r) MAE"), ("h_r_jsd", "h(r) JSD"),
                ("temperature_mean_K", "T mean (K)"), ("temperature_std_K", "T std (K)"),
                ("vdos_overlap", "VDOS overlap"), ("vdos_peak_cm1", "VDOS peak (cm⁻¹)")]


def add_arguments(p):
    from .common import add_data_argument

    add_data_argument(p, flag="--reference")
    p.add_argument("--generated", required=True, metavar="TRAJ", help="generated trajectory (npz or extxyz)")
    p.add_argument("--compare", action="append", default=[], metavar="NAME=TRAJ",
                   help="another generated trajectory (e.g. a baseline) from the same start; repeatable")
    p.add_argument("--start", type=int, metavar="FRAME", help="start frame in the reference (default: recorded by the generator)")
    p.add_argument("--stride", type=int, metavar="S", help="MD frames per generated frame (default: recorded, else 1)")
    p.add_argument("--json", required=True, metavar="METRICS.json", help="where to write the metrics")
    p.add_argument("--plots", metavar="DIR", help="write RMSD-over-time, distance-distribution, RMSF, temperature, "
                                                  "h(r) and VDOS plots (PNG) here")


def aligned_reference(ref, gen, start: int | None, stride: int):
    """The reference frames at the generated frames' times, start+stride, ..., start+T*stride, as far as the
    reference goes: fewer than T (possibly none) when a long run outlasts it; none without a start
    frame (a run started from one structure is not in phase with any reference frame)."""
    if gen.num_atoms != ref.num_atoms or not (gen.numbers == ref.numbers).all():
        raise ValueError(f"generated trajectory has atoms {gen.formula}, reference {ref.formula}: not the same molecule")
    if start is None:
        return ref.positions[:0]
    if not 0 <= start < ref.num_frames:
        raise ValueError(f"start frame {start} is outside the reference {ref.name} ({ref.num_frames} frames)")
    last = min(start + gen.num_frames * stride, ref.num_frames - 1)
    if last > start and not ref.consecutive(start, last):
        raise ValueError(f"reference {ref.name}: frames {start}..{last} are not consecutive MD frames (or their spacing "
                         f"is not known), so they cannot be compared with a rollout frame by frame")
    return ref.positions[start + stride: last + 1: stride]


def score(ref, gen, start: int | None, stride: int):
    """(flat metrics dict, longrun.LongRun) of one generated trajectory against the reference."""
    from ..evaluation import longrun, metrics

    target = aligned_reference(ref, gen, start, stride)
    k = len(target)
    aligned = metrics.evaluate(gen.positions[:k], target, ref.numbers, start=ref.positions[start]) if k else {}
    if k:  # the long-run stability_frames (from the reference mean) takes the plain name
        aligned["stability_frames_range"] = aligned.pop("stability_frames")
    lr = longrun.long_run_analysis(gen.positions, ref.positions[::stride], ref.numbers, gen.dt_fs,
                                   ref_dt_fs=None if ref.dt_fs is None else ref.dt_fs * stride)
    return {**aligned, "frames": gen.num_frames, "aligned_frames": k, "dt_fs": gen.dt_fs, **lr.metrics}, lr


def run(args) -> int:
    from pathlib import Path

    import numpy as np

    from ..evaluation import plots
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
        print(f"{args.generated} records no start frame (a run from one structure?): phase-aligned metrics "
              "skipped; pass --start to compare frame by frame")
    else:
        start = int(start)
    stride = args.stride or int(first.provenance.get("stride", 1))
    results, runs, rows = {}, {}, []
    for name, gen in named.items():
        results[name], runs[name] = score(ref, gen, start, stride)
        rows.append({"model": name, **results[name]})
    out = {"reference": ref.name, "reference_frames": ref.num_frames, "start_frame": start, "stride": stride,
           "frames": first.num_frames, "dt_fs": None if ref.dt_fs is None else ref.dt_fs * stride,
           **results["diffmd"], "models": results}
    write_json(out, args.json)
    print(markdown_table(rows, COLUMNS))
    print()
    print(markdown_table(rows, LONG_COLUMNS))
    m = results["diffmd"]
    ref_t = m["temperature_ref_mean_K"]
    every = f"every {ref.dt_fs:g} fs" if ref.dt_fs is not None else "(time step unknown)"
    print(f"reference: {ref.num_frames} frames {every}, taken every {stride}"
          + (f", T {ref_t:.0f} ± {m['temperature_ref_std_K']:.0f} K" if ref_t is not None else "")
          + (f"; VDOS Nyquist limit {m['vdos_nyquist_cm1']:.0f} cm⁻¹ ({m['vdos_nyquist_THz']:.0f} THz)"
             if m["vdos_nyquist_cm1"] is not None else "")
          + (f", bins {m['vdos_resolution_cm1']:.0f} cm⁻¹" if m["vdos_resolution_cm1"] is not None else ""))
    for name, gen in named.items():
        for note in runs[name].notes:
            print(f"{name}: {note}")
        if start is not None and results[name]["aligned_frames"] < gen.num_frames:
            print(f"{name}: the reference covers {results[name]['aligned_frames']} of {gen.num_frames} frames; "
                  "phase-aligned metrics use those")
    if args.plots:
        d = Path(args.plots)
        target = aligned_reference(ref, first, start, stride)
        k = len(target)
        pos = {n: g.positions[:k] for n, g in named.items() if g.num_frames >= k}
        made = []
        if k:
            static = np.broadcast_to(ref.positions[start], target.shape)
            made += [plots.plot_rmsd_over_time({**pos, "static": static}, target, d / "rmsd_over_time.png",
                                               dt_fs=None if ref.dt_fs is None else ref.dt_fs * stride),
                     plots.plot_distance_distributions(pos, target, d / "distance_distributions.png"),
                     plots.plot_rmsf(pos, target, d / "rmsf.png", numbers=ref.numbers)]
        lr = runs["diffmd"]
        made.append(plots.plot_hr({n: r.hr for n, r in runs.items()}, lr.hr_ref, lr.hr_edges, d / "h_r.png"))
        if lr.temperature_ref is not None:
            made.append(plots.plot_temperature({n: r.temperature for n, r in runs.items()}, lr.temperature_ref,
                                               d / "temperature.png", dt_fs=first.dt_fs, ref_dt_fs=ref.dt_fs * stride))
        if lr.vdos_cm1 is not None:
            made.append(plots.plot_vdos({n: (r.vdos_cm1, r.vdos) for n, r in runs.items() if r.vdos is not None},
                                        (lr.vdos_cm1, lr.vdos_ref), d / "vdos.png",
                                        nyquist_cm1=m["vdos_nyquist_cm1"]))
        print("plots: " + ", ".join(map(str, made)))
    print(f"metrics: {args.json}")
    return 0
