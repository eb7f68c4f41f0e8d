"""Score generated trajectories against the reference: ARMSE and physical checks, table and plots.

    diffmd evaluate --reference ethanol --generated gen.npz --json metrics.json --plots plots/
    diffmd evaluate --reference ethanol --generated gen.extxyz --start 5000 --json m.json \
        --compare egnn=egnn.npz --compare static=static.npz

Sampling: the generated frames are compared with the reference at their own times. Their frame time
comes from the file (extxyz / .traj per-frame ``time_fs``, npz ``frame_fs`` / ``dt_fs``); the reference is
taken every stride = frame time / reference time step frames, which must be a whole number (a frame time
shorter than the reference's step, or between two multiples of it, is refused). A file that records no
time (or whose time step the reader only assumed) falls back to --stride, else the stride the generator
recorded, else 1; --stride that contradicts a recorded time is refused. Every --compare trajectory must
have the first one's frame time. The atoms must be the reference's in the reference's order: the same
atoms in another order, or a first frame that fits the reference much better with same-element atoms
swapped (evaluation.metrics.atom_order), is refused with the index or the permutation.

Two kinds of metrics, per trajectory, in METRICS.json (with the ``stride`` and the frame time
``dt_fs`` used):

Phase-aligned (reference frames at the generated frames' times, from --start, default the start frame
the generator recorded; over the frames the reference holds, ``aligned_frames``): armse (Å, mean
per-frame RMSD without alignment, as the paper), armse_static (the start frame held still),
armse_mean_structure, stability_frames_range (first frame a bond leaves its reference min-max range by
> 0.5 Å), bond_violation_fraction, distance_jsd (Jensen-Shannon divergence of interatomic distance
histograms, base 2), rmsf_error (Å), mobility (Å/frame) and whether atoms keep moving.

Long-run (evaluation.longrun; no phase alignment, the whole generated run against the whole reference
taken every stride frames; Fu et al. 2023, "Forces are not enough"): stability_frames and stability_ps
(first frame a bond is > 0.5 Å from its mean reference length), h_r_mae and h_r_jsd (pair-distance
density, 500 bins to 10 Å), h_r_jsd_1_2 / _1_3 / _1_4 / _1_5 (the JSD over the pairs 1, 2, 3 and 4 or
more bonds apart: bond lengths, angles, torsions, the rest), temperature_mean_K / temperature_std_K and the reference's
temperature_ref_mean_K / temperature_ref_std_K (kinetic temperature from implied velocities, centre of
mass removed, 3N-6 degrees of freedom), vdos_overlap (in [0, 1]: Σ min of the two normalised vibrational
spectra), vdos_peak_cm1, vdos_ref_peak_cm1, vdos_resolution_cm1 and the Nyquist limit of the frame time,
vdos_nyquist_cm1 / vdos_nyquist_THz (both spectra at the generated frame time, none above its Nyquist
limit). Generated distributions use the stable part only; with no stable frame they are null.
"""
from __future__ import annotations

NAME = "evaluate"
HELP = "metrics, tables and plots against a reference"
TIME_TOL = 1e-3  # reference steps: a frame time this close to a whole number of them is that number

COLUMNS = [("model", "model"), ("aligned_frames", "aligned frames"), ("armse", "ARMSE (Å)"),
           ("armse_static", "static ARMSE (Å)"), ("stability_frames_range", "in-range frames"),
           ("bond_violation_fraction", "bond violations"), ("distance_jsd", "distance JSD"),
           ("rmsf_error", "RMSF error (Å)"), ("moving", "moving")]
LONG_COLUMNS = [("model", "model"), ("frames", "frames"), ("stability_frames", "stable frames"),
                ("stability_ps", "stable ps"), ("h_r_mae", "h(r) MAE"), ("h_r_jsd", "h(r) JSD"),
                ("h_r_jsd_1_2", "JSD 1-2"), ("h_r_jsd_1_3", "JSD 1-3"), ("h_r_jsd_1_4", "JSD 1-4"),
                ("h_r_jsd_1_5", "JSD 1-5+"), ("temperature_mean_K", "T mean (K)"), ("temperature_std_K", "T std (K)"),
                ("vdos_overlap", "VDOS overlap"), ("vdos_peak_cm1", "VDOS peak (cm⁻¹)")]


def add_arguments(p):
    from .common import add_data_argument

    add_data_argument(p, flag="--reference")
    p.add_argument("--generated", required=True, metavar="TRAJ", help="generated trajectory (npz, extxyz or .traj)")
    p.add_argument("--compare", action="append", default=[], metavar="NAME=TRAJ",
                   help="another generated trajectory (e.g. a baseline) from the same start; repeatable")
    p.add_argument("--start", type=int, metavar="FRAME", help="start frame in the reference (default: recorded by the generator)")
    p.add_argument("--stride", type=int, metavar="S",
                   help="reference frames per generated frame for files that record no frame time (default: the "
                        "recorded stride, else 1); must agree with a recorded frame time")
    p.add_argument("--json", required=True, metavar="METRICS.json", help="where to write the metrics")
    p.add_argument("--plots", metavar="DIR", help="write RMSD-over-time, distance-distribution, RMSF, temperature, "
                                                  "h(r) and VDOS plots (PNG) here")


def frame_time_fs(gen) -> float | None:
    """fs between the generated frames as the file records them: the generator's ``frame_fs`` (npz
    provenance), else the trajectory's time step from the file (npz ``dt_fs``, extxyz / .traj per-frame
    ``time_fs``); None when the file records none or the reader only assumed one (MD17's 0.5 fs)."""
    from ..data.readers import DT_ASSUMED

    recorded = gen.provenance.get("frame_fs")
    if recorded:
        return float(recorded)
    return None if gen.dt_fs is None or gen.provenance.get(DT_ASSUMED) else float(gen.dt_fs)


def sampling(ref, gen, what: str, given: int | None = None, default: int | None = None) -> tuple[int, float | None]:
    """(stride, frame_fs): reference frames per generated frame, and the generated frame time (fs; None
    when unknown). With a recorded frame time and the reference's time step, stride = frame time /
    reference step; otherwise ``given`` (--stride), else the generator's recorded stride, else ``default``,
    else 1, and the frame time is that many reference steps when a stride was given or recorded.

    Raises ValueError (one line, naming ``what``) when the generated frames are not evenly spaced, are
    closer than the reference's step, are not a whole number of its steps apart (within TIME_TOL), or
    ``given`` contradicts the recorded frame time."""
    if given is not None and given < 1:
        raise ValueError(f"--stride must be >= 1, got {given}")
    if not gen.evenly_spaced:
        raise ValueError(f"{what}: its frames are not evenly spaced in time, so they cannot be compared with the "
                         "reference frame by frame")
    frame_fs = frame_time_fs(gen)
    if frame_fs is None or ref.dt_fs is None:
        recorded = gen.provenance.get("stride")
        stride = given or (int(recorded) if recorded else None) or default
        if frame_fs is None and stride is not None and ref.dt_fs is not None:
            frame_fs = ref.dt_fs * stride
        return stride or 1, frame_fs
    ratio = frame_fs / ref.dt_fs
    if ratio < 1 - TIME_TOL:
        raise ValueError(f"{what}: its frames are {frame_fs:g} fs apart, less than the reference {ref.name}'s "
                         f"time step {ref.dt_fs:g} fs, so the reference holds no frame at most of their times")
    stride = int(round(ratio))
    if abs(ratio - stride) > TIME_TOL:
        raise ValueError(f"{what}: its frames are {frame_fs:g} fs apart, {ratio:.4g} times the reference {ref.name}'s "
                         f"time step {ref.dt_fs:g} fs; the reference can only be taken every whole number of frames")
    if given is not None and given != stride:
        raise ValueError(f"--stride {given} contradicts {what}: its frames are {frame_fs:g} fs apart, {stride} "
                         f"reference steps of {ref.dt_fs:g} fs; leave --stride out")
    return stride, ref.dt_fs * stride


def check_atoms(ref, gen, what: str) -> None:
    """Raises ValueError (one line) unless ``gen`` holds the reference's atoms in the reference's order."""
    from ..evaluation.metrics import element_order_difference

    problem = element_order_difference(gen.numbers, ref.numbers)
    if problem is not None:
        raise ValueError(f"{what} has {problem}; the atoms must be in the reference's order")


def check_atom_order(ref, gen, frame: int, what: str) -> None:
    """Raises ValueError (one line, with the permutation) when the first generated frame fits reference
    frame ``frame`` much better with some same-element atoms swapped: its atoms look numbered otherwise."""
    from ..evaluation.metrics import atom_order

    fit = atom_order(gen.positions[0], ref.positions[frame], ref.numbers)
    if not fit.permuted:
        return
    moves = fit.moves()
    shown = ", ".join(f"{i}->{j}" for i, j in moves[:12]) + (f", ... ({len(moves)} atoms)" if len(moves) > 12 else "")
    raise ValueError(f"{what}: the atom order looks permuted against the reference: its frame 0 is "
                     f"{fit.rmsd_given:.2f} Å RMSD from reference frame {frame} as numbered, {fit.rmsd_reordered:.2f} Å "
                     f"with generated atom i taken as reference atom j for i->j = {shown}; write the atoms in the "
                     "reference's order")


def aligned_reference(ref, gen, start: int | None, stride: int, what: str = "generated trajectory"):
    """The reference frames at the generated frames' times, start+stride, ..., start+T*stride, as far as the
    reference goes: fewer than T (possibly none) when a long run outlasts it; none without a start
    frame (a run started from one structure is not in phase with any reference frame). Raises
    ValueError for other atoms or another atom order (check_atoms, check_atom_order), a start outside
    the reference, or reference frames that are not consecutive."""
    check_atoms(ref, gen, what)
    if start is None:
        return ref.positions[:0]
    if not 0 <= start < ref.num_frames:
        raise ValueError(f"start frame {start} is outside the reference {ref.name} ({ref.num_frames} frames)")
    last = min(start + gen.num_frames * stride, ref.num_frames - 1)
    if last > start and not ref.consecutive(start, last):
        raise ValueError(f"reference {ref.name}: frames {start}..{last} are not consecutive MD frames (or their spacing "
                         f"is not known), so they cannot be compared with a rollout frame by frame")
    check_atom_order(ref, gen, start + stride if last >= start + stride else start, what)
    return ref.positions[start + stride: last + 1: stride]


def score(ref, gen, start: int | None, stride: int, frame_fs: float | None, what: str = "generated trajectory"):
    """(flat metrics dict, longrun.LongRun) of one generated trajectory against the reference taken every
    ``stride`` frames; ``frame_fs`` (fs, None: unknown) is the time between generated frames, and the
    reference frames taken are that far apart too."""
    from ..evaluation import longrun, metrics

    target = aligned_reference(ref, gen, start, stride, what)
    k = len(target)
    aligned = metrics.evaluate(gen.positions[:k], target, ref.numbers, start=ref.positions[start]) if k else {}
    if k:  # the long-run stability_frames (from the reference mean) takes the plain name
        aligned["stability_frames_range"] = aligned.pop("stability_frames")
    lr = longrun.long_run_analysis(gen.positions, ref.positions[::stride], ref.numbers, frame_fs)
    return {**aligned, "frames": gen.num_frames, "aligned_frames": k, "stride": stride, "dt_fs": frame_fs,
            **lr.metrics}, lr


def _load(args):
    """(reference, {name: generated trajectory}, start frame or None, stride, frame_fs or None)."""
    from ..data import load_trajectory
    from .common import load_input

    ref = load_input(args.reference, args)
    named = {"diffmd": load_trajectory(args.generated)}
    for item in args.compare:
        name, sep, path = item.partition("=")
        if not sep:
            raise ValueError(f"--compare expects NAME=TRAJ, got {item!r}")
        named[name] = load_trajectory(path)
    first = named["diffmd"]
    stride, frame_fs = sampling(ref, first, f"--generated {args.generated}", args.stride)
    for name, gen in list(named.items())[1:]:
        other = sampling(ref, gen, f"--compare {name}", args.stride, default=stride)
        if other[0] != stride:
            raise ValueError(f"--compare {name}: its frames are {other[0]} reference frames apart, those of "
                             f"--generated {stride}: evaluate them separately")
    start = args.start if args.start is not None else first.provenance.get("start_frame")
    for name, gen in list(named.items())[1:]:  # one start frame scores them all: it must be theirs too
        own = gen.provenance.get("start_frame")
        if own is not None and start is not None and int(own) != int(start):
            raise ValueError(f"--compare {name} starts at reference frame {own}, the phase-aligned scores at {start}: "
                             "compare trajectories from the same start, or evaluate them separately")
    if start is None:
        print(f"{args.generated} records no start frame (a run from one structure?): phase-aligned metrics "
              "skipped; pass --start to compare frame by frame")
    # each trajectory's start for the phase-aligned scores: a --compare run that records none shares the
    # start only when --start says so (one made from a lone structure has no reference frame to align to)
    starts = {name: None if start is None or (args.start is None and name != "diffmd"
                                               and gen.provenance.get("start_frame") is None) else int(start)
              for name, gen in named.items()}
    for name in named:
        if start is not None and starts[name] is None:
            print(f"--compare {name} records no start frame: its phase-aligned metrics skipped; pass --start if it "
                  f"starts at reference frame {start} too")
    return ref, named, starts, stride, frame_fs


def run(args) -> int:
    from .common import markdown_table, write_json

    ref, named, starts, stride, frame_fs = _load(args)
    start = starts["diffmd"]
    results, runs, rows = {}, {}, []
    for name, gen in named.items():
        what = f"--generated {args.generated}" if name == "diffmd" else f"--compare {name}"
        results[name], runs[name] = score(ref, gen, starts[name], stride, frame_fs, what)
        rows.append({"model": name, **results[name]})
    out = {"reference": ref.name, "reference_frames": ref.num_frames, "start_frame": start,
           "frames": named["diffmd"].num_frames, **results["diffmd"], "models": results}
    write_json(out, args.json)
    print(markdown_table(rows, COLUMNS))
    print()
    print(markdown_table(rows, LONG_COLUMNS))
    _print_notes(ref, named, results, runs, starts, stride, frame_fs)
    if args.plots:
        _plots(args.plots, ref, named, runs, starts, stride, frame_fs)
    print(f"metrics: {args.json}")
    return 0


def _print_notes(ref, named, results, runs, starts, stride, frame_fs) -> None:
    """The reference's sampling and each trajectory's notes; ``starts`` {name: its phase-aligned start or None}."""
    m = results["diffmd"]
    ref_t = m["temperature_ref_mean_K"]
    every = f"every {ref.dt_fs:g} fs" if ref.dt_fs is not None else "(time step unknown)"
    frames = f"generated frames {frame_fs:g} fs apart" if frame_fs is not None else "generated frame time unknown"
    print(f"reference: {ref.num_frames} frames {every}, taken every {stride} ({frames})"
          + (f", T {ref_t:.0f} ± {m['temperature_ref_std_K']:.0f} K" if ref_t is not None else "")
          + (f"; VDOS Nyquist limit {m['vdos_nyquist_cm1']:.0f} cm⁻¹ ({m['vdos_nyquist_THz']:.0f} THz)"
             if m["vdos_nyquist_cm1"] is not None else "")
          + (f", bins {m['vdos_resolution_cm1']:.0f} cm⁻¹" if m["vdos_resolution_cm1"] is not None else ""))
    for name, gen in named.items():
        for note in runs[name].notes:
            print(f"{name}: {note}")
        if starts[name] is not None and results[name]["aligned_frames"] < gen.num_frames:
            print(f"{name}: the reference covers {results[name]['aligned_frames']} of {gen.num_frames} frames; "
                  "phase-aligned metrics use those")


def _plots(directory, ref, named, runs, starts, stride, frame_fs) -> None:
    from pathlib import Path

    import numpy as np

    from ..evaluation import plots

    d = Path(directory)
    first, start = named["diffmd"], starts["diffmd"]
    target = aligned_reference(ref, first, start, stride)
    k = len(target)
    pos = {n: g.positions[:k] for n, g in named.items() if g.num_frames >= k and starts[n] is not None}
    made = []
    if k:
        static = np.broadcast_to(ref.positions[start], target.shape)
        made += [plots.plot_rmsd_over_time({**pos, "static": static}, target, d / "rmsd_over_time.png", dt_fs=frame_fs),
                 plots.plot_distance_distributions(pos, target, d / "distance_distributions.png"),
                 plots.plot_rmsf(pos, target, d / "rmsf.png", numbers=ref.numbers)]
    lr = runs["diffmd"]
    made.append(plots.plot_hr({n: r.hr for n, r in runs.items()}, lr.hr_ref, lr.hr_edges, d / "h_r.png"))
    if lr.temperature_ref is not None:
        made.append(plots.plot_temperature({n: r.temperature for n, r in runs.items()}, lr.temperature_ref,
                                           d / "temperature.png", dt_fs=frame_fs))
    if lr.vdos_cm1 is not None:
        made.append(plots.plot_vdos({n: (r.vdos_cm1, r.vdos) for n, r in runs.items() if r.vdos is not None},
                                    (lr.vdos_cm1, lr.vdos_ref), d / "vdos.png",
                                    nyquist_cm1=lr.metrics["vdos_nyquist_cm1"]))
    print("plots: " + ", ".join(map(str, made)))
