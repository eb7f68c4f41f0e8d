"""Roll out new frames from a trained checkpoint, starting from frames of a reference trajectory.

    diffmd generate --checkpoint runs/ethanol --data ethanol --start 5000 --frames 200 --out gen.extxyz
    diffmd generate --checkpoint runs/ethanol --data ethanol --start 3000,4000,5000 --frames 200 --out gen.npz

Frames are generated autoregressively: each new frame is sampled by the reverse diffusion
starting from the previous one and fed back with its velocity and acceleration. Several starts
roll out together as one batch. Each output is written as extxyz (ASE, OVITO, VMD) and npz; with
several starts the file names get a _t<start> suffix.

Rollout guards (diffmd_fast.dynamics.guards) stop a trajectory whose molecule turns non-finite, explodes or
breaks a bond; the others go on. A stopped trajectory's files hold only its valid frames (never a
NaN frame; none at all if its first frame failed), its provenance carries the stop report, the
report is printed on stderr and the exit status is 3.
"""
from __future__ import annotations

NAME = "generate"
HELP = "roll out trajectories from a checkpoint and a start frame"


def add_arguments(p):
    from .common import add_data_argument

    p.add_argument("--checkpoint", required=True, metavar="RUN_DIR", help="training run directory (its newest good checkpoint is used)")
    add_data_argument(p, help_extra=" holding the start frame and the two before it")
    p.add_argument("--start", "--start-frame", dest="start", required=True, metavar="FRAME[,FRAME...]",
                   help="start frame index/indices in --data (the last known frame); under torchrun write "
                        "--start-frame, since torchrun's own parser takes --start for its --start-method")
    p.add_argument("--frames", type=int, required=True, metavar="N", help="frames to generate after the start")
    p.add_argument("--out", required=True, metavar="TRAJ", help="output path (.extxyz or .npz; both are written)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override a config field for sampling, e.g. sampler.kind=pc, sampler.prior=velocity")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    p.add_argument("--seed", type=int, default=1, help="seed of the sampler noise (PC sampler)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    from ..training.distributed import init_distributed, resolve_device, shutdown

    if args.frames < 1:
        raise ValueError(f"--frames must be >= 1, got {args.frames}")
    all_starts = [int(s) for s in str(args.start).split(",")]
    info = init_distributed(args.device)
    try:
        return _generate(args, all_starts[info.rank::info.world_size], len(all_starts) > 1,
                         info.device if info.enabled else resolve_device(args.device))
    finally:
        shutdown(info)


def _generate(args, starts: list[int], suffixed: bool, device) -> int:
    import sys
    from pathlib import Path

    import torch

    from ..data import Trajectory, save_npz, start_batch, write_extxyz
    from ..dynamics.rollout import rollout
    from ..training.checkpoint import load_run
    from .common import load_input

    if not starts:  # more ranks than starts
        return 0
    run = load_run(args.checkpoint, device, args.set)
    model, sde, sampler, cfg, ckpt = run.model, run.sde, run.sampler, run.config, run.path
    ref = load_input(args.data, args, need_dt=True)
    stride = cfg.train.stride
    dtype = getattr(torch, cfg.train.dtype)
    start = start_batch([ref] * len(starts), starts, stride=stride, dtype=dtype, centre=True).to(device)
    gen = torch.Generator(device=device).manual_seed(args.seed)
    res = rollout(model, sde, sampler, start, args.frames, generator=gen, progress=not args.quiet)
    absolute = start.absolute(res.positions).cpu()  # (F, N, 3) float64 Å in the reference's frame
    out = Path(args.out)
    stem = out.with_suffix("")
    written = []
    for b, t0 in enumerate(starts):
        base = stem.with_name(f"{stem.name}_t{t0}") if suffixed else stem
        report = res.stopped[b]
        if report is not None:
            print(f"start {t0}: {report.message()}; keeping its {res.valid_frames[b]} valid frames", file=sys.stderr)
        if res.valid_frames[b] == 0:
            continue
        prov = {"generator": "diffmd_fast DiffMD rollout", "checkpoint": str(ckpt), "source": ref.name,
                "source_provenance": ref.provenance, "start_frame": t0, "stride": stride,
                "sampler": cfg.to_dict()["sampler"], "mean_nfe_per_frame": res.mean_nfe,
                "frames_per_s": res.frames_per_s, "frames_requested": args.frames,
                "stopped": None if report is None else report.to_dict()}
        valid = absolute[: res.valid_frames[b], start.batch.cpu() == b].numpy()
        traj = Trajectory(positions=valid, numbers=ref.numbers, dt_fs=ref.dt_fs * stride,
                          name=f"{ref.name}-diffmd-t{t0}", provenance=prov)
        written += [save_npz(traj, base.with_suffix(".npz")), write_extxyz(traj, base.with_suffix(".extxyz"))]
    print(f"generated {args.frames} frames x {len(starts)} trajectories at {res.frames_per_s:.2f} frames/s, "
          f"{res.mean_nfe:.1f} score evaluations per frame; wrote {', '.join(map(str, written)) or 'nothing'}")
    if res.reports:
        print(f"{len(res.reports)} of {len(starts)} trajectories stopped early (see above)", file=sys.stderr)
        return 3
    return 0
