"""Roll out new frames from a trained checkpoint, streamed to disk and resumable.

    diffmd generate --checkpoint runs/ethanol --data ethanol --start 5000 --frames 200 --out gen.extxyz
    diffmd generate --checkpoint runs/ethanol --data ethanol --start 3000,4000,5000 --frames 200 --out gen.npz
    diffmd generate --checkpoint runs/ethanol --data mol.xyz --temperature 500 --frames 1000000 --out long.traj

Start: with --start, the window of the reference trajectory --data at those frames (the frame and
the two before it at the model's stride). Without --start, --data holds one structure: its
velocities are taken from the file when it has them (momenta in extxyz/.traj), else drawn from the
Maxwell-Boltzmann distribution at --temperature K (seeded by --seed, zero net linear and angular
momentum), and the two history frames are built from them at the model's frame time (a
constant-velocity history, see diffmd_fast.dynamics.start). No reference trajectory is needed.

Physics: every frame gets the checkpoint's [rollout] corrections (momentum projection, Langevin
thermostat; --set rollout.thermostat=none for the paper's uncorrected sampler). The thermostat's
target is --temperature when given, else rollout.temperature_K, else the training data's
temperature recorded in the checkpoint (older checkpoints, which do not record it, need --temperature).

Output: frames are appended to TRAJ as they are generated (extended XYZ for .extxyz/.xyz/.npz,
ASE's binary format for .traj) in chunks of --chunk frames, so memory stays bounded whatever
--frames is. After each chunk the sampler state (RNG included) is saved atomically beside the
output as TRAJ.state.pt; re-running the same command after a kill continues from the last saved
frame and ends with files byte-identical to an uninterrupted run's. The sidecar stays, marked
complete, so that re-running a finished command says so instead of redoing it, and the same command
with a larger --frames continues it (to the file one run of that length writes); remove it (and the
outputs) to generate afresh. When --frames <= 10000 an npz with the run's provenance is also
written at the end (read back from the streamed file); longer runs keep only the streamed file.
Several starts roll out together as one batch and get a _t<start> suffix; under torchrun each rank
takes its share of the starts (and its own TRAJ.rank<r>.state.pt; with the Langevin thermostat,
whose noise is drawn for the whole batch from one stream, a sharded run is statistically
equivalent to a single-process run, not identical).

Before the first frame the start structure is checked against what the checkpoint knows
(diffmd_fast.dynamics.preflight): fused atoms, another number of molecules than the training data,
or atom environments and bond, angle or torsion types it was not trained on are refused with one
line naming them; --allow-unseen rolls such a structure out anyway, with a warning, and gives the
prior's missing terms generic constants (never a zero force constant). A periodic structure is made
whole first; a condensed phase (atoms touching periodic images) is refused.

Output names keep every dot of the stem (gen.T300.extxyz, gen.T300.npz). An existing output is
never replaced by a new run unless --overwrite is given; re-running the same command resumes it.

Rollout guards (diffmd_fast.dynamics.guards) stop a trajectory whose molecule turns non-finite,
explodes, fuses two atoms, breaks a bond or forms a new one; the others go on. A stopped trajectory's files hold only its valid
frames (never a NaN frame; none at all if its first frame failed), its npz provenance carries the
stop report, the report is printed on stderr and the exit status is 3.
"""
from __future__ import annotations

NAME = "generate"
HELP = "roll out trajectories from a checkpoint and a start frame or structure (streamed, resumable)"
NPZ_MAX_FRAMES = 10_000  # beyond this the npz (the whole run in memory at the end) is skipped


def add_arguments(p):
    from .common import add_data_argument

    p.add_argument("--checkpoint", required=True, metavar="RUN_DIR", help="training run directory (its newest good checkpoint is used)")
    add_data_argument(p, help_extra="; with --start the trajectory holding the start frames, without it one "
                                    "structure (extxyz/.traj/xyz/... with or without velocities)")
    p.add_argument("--start", "--start-frame", dest="start", default=None, metavar="FRAME[,FRAME...]",
                   help="start frame index/indices in --data (the last known frame); omit to start from the single "
                        "structure in --data; under torchrun write --start-frame, since torchrun's own parser takes "
                        "--start for its --start-method")
    p.add_argument("--temperature", type=float, default=None, metavar="K",
                   help="Maxwell-Boltzmann temperature of the start velocities when --data has none, and the "
                        "thermostat's target")
    p.add_argument("--frames", type=int, required=True, metavar="N", help="frames to generate after the start")
    p.add_argument("--out", required=True, metavar="TRAJ",
                   help="output path: .extxyz/.xyz or .traj (streamed), or .npz (streamed as .extxyz)")
    p.add_argument("--chunk", type=int, default=500, metavar="N", help="frames between appends and state saves")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override a config field for sampling, e.g. sampler.kind=pc, rollout.thermostat=none")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    p.add_argument("--seed", type=int, default=1, help="seed of the sampler noise, thermostat and start velocities")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--allow-unseen", action="store_true",
                   help="roll out a structure with atom environments, bond/angle/torsion types or a molecule count the "
                        "checkpoint was not trained on (warns; generic prior terms for the missing ones)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs instead of refusing to")


def run(args) -> int:
    from pathlib import Path

    from ..dynamics.sink import STREAM_SUFFIX
    from ..training.distributed import init_distributed, resolve_device, shutdown

    if args.frames < 1:
        raise ValueError(f"--frames must be >= 1, got {args.frames}")
    if args.chunk < 1:
        raise ValueError(f"--chunk must be >= 1, got {args.chunk}")
    if args.temperature is not None and not args.temperature > 0:
        raise ValueError(f"--temperature must be > 0 K, got {args.temperature}")
    if Path(args.out).suffix not in STREAM_SUFFIX:
        raise ValueError(f"--out {args.out}: the suffix must be one of {', '.join(STREAM_SUFFIX)}")
    try:
        all_starts = None if args.start is None else [int(s) for s in str(args.start).split(",")]
    except ValueError:
        raise ValueError(f"--start {args.start}: give frame indices of --data, e.g. 5000 or 3000,4000,5000") from None
    if all_starts is not None and len(set(all_starts)) < len(all_starts):
        raise ValueError(f"--start {args.start} lists a frame twice; each start gets its own files")
    info = init_distributed(args.device)
    try:
        if all_starts is None and info.rank > 0:  # one structure: one trajectory, rolled out by rank 0
            return 0
        starts = None if all_starts is None else all_starts[info.rank::info.world_size]
        return _generate(args, starts, all_starts is not None and len(all_starts) > 1,
                         info.device if info.enabled else resolve_device(args.device),
                         f".rank{info.rank}" if info.enabled else "")
    finally:
        shutdown(info)


def _start(run, args, starts, device):
    """(RolloutStart, the reference Trajectory or None, labels): the rollout's start from --start frames
    of --data, or from the one structure in --data (dynamics checks included)."""
    from .common import load_input, load_structure

    what = f"--data {args.data}"
    if starts is None:
        start = run.start_from_structure(load_structure(args.data), temperature_K=args.temperature, seed=args.seed,
                                         device=device, allow_unseen=args.allow_unseen, what=what)
        return start, None, [None]
    ref = load_input(args.data, args, need_dt=True)
    return run.start_from_frames(ref, starts, device=device, allow_unseen=args.allow_unseen, what=what), ref, list(starts)


def _generate(args, starts: list[int] | None, suffixed: bool, device, rank_tag: str) -> int:
    import sys
    from pathlib import Path

    import torch

    from ..dynamics.fluctuation import step_fluctuation_in
    from ..dynamics.sink import FrameSink
    from ..training import run as runs

    if starts == []:  # more ranks than starts
        return 0
    run = runs.load_run(args.checkpoint, device, args.set)
    start, ref, labels = _start(run, args, starts, device)
    for note in start.notes:
        print(f"warning: {note}", file=sys.stderr)
    rollout_cfg = run.rollout(args.temperature)
    stepper = run.stepper(start, rollout=rollout_cfg, generator=torch.Generator(device=device).manual_seed(args.seed))
    out = Path(args.out)
    settings = {"checkpoint": str(Path(run.path).resolve()), "data": str(args.data), "starts": starts,
                "seed": args.seed, "set": list(args.set), "temperature": args.temperature, "out": str(out),
                "device": device.type}
    sink = FrameSink(out, labels, start.batch.z.cpu().numpy(), start.batch.batch.cpu().numpy(), start.frame_fs, settings,
                     frames=args.frames, suffixed=suffixed, rank_tag=rank_tag, chunk=args.chunk)
    status = sink.resume(stepper, overwrite=args.overwrite)
    if status == "done":
        print(f"{out}: already complete ({args.frames} frames); remove {sink.state_path} to generate again")
    else:
        if status == "resumed":
            print(f"resuming {out} at frame {stepper.t} of {args.frames} from {sink.state_path}", file=sys.stderr)
        if rollout_cfg.step_fluctuation and not step_fluctuation_in(stepper.corrections):
            record = run.data.get("step_friction") or {}
            why = record.get("not_measured") or "trained with train.calibration_frames = 0, or before the measurement"
            print(f"note: {run.path} has no measured step friction ({why}): rolling out without the step's "
                  "fluctuation", file=sys.stderr)
        _roll_out(args, run, ref, start, rollout_cfg, stepper, sink)
    return _report_stops(stepper, labels, sink.frames)


def _roll_out(args, run, ref, start, rollout_cfg, stepper, sink) -> None:
    """Drive ``stepper`` to --frames with ``sink`` attached, then close the files (with the npz of
    short runs) and print what was made."""
    import sys
    import time
    from pathlib import Path

    if start.velocity_note:
        print(f"start velocities: {start.velocity_note}", file=sys.stderr)
    stepper.attach(sink)
    nfe0, wall0, earlier = stepper.total_nfe, time.perf_counter(), stepper.t
    done = stepper.run(args.frames - stepper.t, progress=not args.quiet, desc="generate", frame_fs=start.frame_fs)
    wall = time.perf_counter() - wall0
    rate, nfe = done / wall if wall > 0 else float("inf"), (stepper.total_nfe - nfe0) / max(done, 1)
    npz = None
    if args.frames <= NPZ_MAX_FRAMES:
        npz = ((ref.name if ref is not None else Path(args.data).stem) + "-diffmd",
               _provenance(run, args, ref, start, rollout_cfg, nfe, rate, stepper))
    written = sink.finish(stepper, npz)
    ps = done * start.frame_fs / 1000
    stopped = sum(report is not None for report in stepper.stopped)
    each = f"{ps:.4g} ps each" + (f"; {stopped} stopped earlier, reported below" if stopped else "")
    if earlier:  # a resumed run: this call's frames, after the earlier calls'
        each += f"; after {earlier} frames of an earlier call, {stepper.t} in all"
    print(f"generated {done} frames x {len(sink.paths)} trajectories ({each}) at {rate:.2f} frames/s "
          f"({ps / wall if wall > 0 else float('inf'):.3g} ps/s), {nfe:.1f} score evaluations per frame; "
          f"wrote {', '.join(written) or 'nothing (no trajectory kept a valid frame)'}")


def _provenance(run, args, ref, start, rollout_cfg, nfe: float, rate: float, stepper) -> dict:
    """What the npz of a generated trajectory records of how it was made: among it the corrections
    applied to every frame and the step frictions (1/fs) the fluctuation balanced."""
    import dataclasses

    return {"generator": "diffmd_fast DiffMD rollout", "checkpoint": str(run.path), "source": str(args.data),
            "source_provenance": None if ref is None else ref.provenance, "start_velocities": start.velocity_note,
            "stride": run.config.train.stride, "frame_fs": start.frame_fs, "sampler": run.config.to_dict()["sampler"],
            "rollout": dataclasses.asdict(rollout_cfg),
            "thermostat_target_K": rollout_cfg.temperature_K if rollout_cfg.thermostat != "none" else None,
            "mean_nfe_per_frame": nfe, "frames_per_s": rate, "frames_requested": args.frames,
            "corrections": [type(c).__name__ for c in stepper.corrections],
            "step_friction_per_fs": _applied_friction(stepper)}


def _applied_friction(stepper) -> dict | None:
    """{element or "X-H stretch": γ (1/fs)} of the stepper's step fluctuation, None without one."""
    from ..dynamics.fluctuation import friction_labels, step_fluctuation_in

    fluct = step_fluctuation_in(stepper.corrections)
    return None if fluct is None else friction_labels(fluct.friction_per_fs, fluct.stretch_friction_per_fs)


def _report_stops(stepper, labels, frames) -> int:
    """Print every stop report on stderr; 3 if any molecule stopped, else 0."""
    import sys

    reports = [(label, r, n) for label, r, n in zip(labels, stepper.stopped, frames) if r is not None]
    for label, report, n in reports:
        where = "the structure" if label is None else f"start {label}"
        kept = f"keeping its {n} valid frames" if n else "no valid frame to keep"
        print(f"{where}: {report.message()}; {kept}", file=sys.stderr)
    if reports:
        print(f"{len(reports)} of {len(labels)} trajectories stopped early (see above)", file=sys.stderr)
        return 3
    return 0
