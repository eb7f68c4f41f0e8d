"""Does DiffMD accelerate MD? Simulated time per wall second of DiffMD rollouts against GFN2-xTB
MD on the same molecule, machine and thread count, with the quality of each rollout beside it.

Rows, all measured in one run:
  - GFN2-xTB: ASE Langevin (the reference data's temperature, 0.01/fs friction, a 1 fs step: what a
    user runs at 500 K; --xtb-fs) with tblite's calculator, one trajectory, from the same start frame
    as DiffMD's batch 1;
  - DiffMD at each batch size (default 1 and 100): the Stepper with the checkpoint's [rollout]
    corrections and the default guards, from evenly spaced frames of the reference's test part;
    with --compile both (the default) twice, in eager mode and with each frame one torch.compile
    graph (rollout.compile; its one-off compilation runs in the untimed warm-up and is reported).
A second table splits a frame's time: the whole step, one score call (the network as the one
``egt_score`` op), the same network run op by op through the modules, and the EGL attention op alone
(x layers).
Columns: ps/s per trajectory and in total (batch x per trajectory: the figure that says whether
many short DiffMD rollouts outrun one MD run), score evaluations (NFE) per frame, the mean time
until a bond leaves its reference mean length by more than 0.5 Å (ps; capped at the rollout
length; a molecule stopped by a guard counts up to its stop), the h(r) Jensen-Shannon divergence
of the pooled interatomic distances against the reference, and the mean kinetic temperature of
finite-difference velocities (K; the reference's in the header). Warm-up frames/steps are not
timed; each rate is the median of 5 timed chunks. Without --checkpoint a demo-size long-rollout model (configs/long.toml) is trained briefly on the first
--train-frames frames, so its quality columns mean little: pass a trained run for those.

    python benches/bench_rollout.py                        # or: diffmd bench rollout
    python benches/bench_rollout.py --checkpoint runs/eth --frames 1000 --xtb-steps 4000 --threads 2
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import tempfile
import time
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from .. import ops
from ..evaluation.longrun import bond_stability_frames, hr_errors, hr_histogram, temperature_series


def _quality(trajs: list[np.ndarray], ref, dt_fs: float) -> dict:
    """Stability (ps, mean over trajectories), h(r) JSD of the pooled frames and mean kinetic temperature
    (K), with the definitions of evaluation/longrun.py, against the whole reference."""
    valid = [x for x in trajs if x.shape[0] > 0]
    stable = [bond_stability_frames(x, ref.positions, ref.numbers) if len(x) else 0 for x in trajs]
    out = {"stable_ps": float(np.mean(stable)) * dt_fs / 1000, "hr_jsd": float("nan"), "mean_T_K": float("nan")}
    if valid:
        h_ref, edges = hr_histogram(ref.positions)
        out["hr_jsd"] = hr_errors(hr_histogram(np.concatenate(valid))[0], h_ref, edges)[1]
        temps = [temperature_series(x, ref.numbers, dt_fs) for x in valid if len(x) > 1]
        if temps:
            out["mean_T_K"] = float(np.concatenate(temps).mean())
    return out


def _diffmd_row(run, ref, starts: list[int], frames: int, warmup: int, device, seed: int, compile: bool) -> dict:
    from dataclasses import replace

    rollout_start = run.start_from_frames(ref, starts, device=device)
    start, frame_fs = rollout_start.batch, rollout_start.frame_fs
    stepper = run.stepper(rollout_start, rollout=replace(run.rollout(), compile=compile),
                          generator=torch.Generator(device=device).manual_seed(seed))
    kept: list[np.ndarray] = []
    stepper.attach(lambda s: kept.append(s.start.absolute(s.positions).cpu().numpy().copy()))
    t0 = time.perf_counter()
    stepper.run(warmup)
    warmup_s = time.perf_counter() - t0
    nfe0 = stepper.total_nfe
    sync = torch.cuda.synchronize if start.x.is_cuda else (lambda: None)

    def chunk(n: int) -> int:
        t = stepper.t
        stepper.run(n)
        sync()
        return stepper.t - t

    wall = _chunked_wall(chunk, frames)
    done = stepper.t - warmup
    positions = np.stack(kept[warmup:])  # (done, N, 3) the timed frames, NaN after a stop
    batch = start.batch.cpu().numpy()
    trajs = []
    for b in range(len(starts)):
        x = positions[:, batch == b]
        ok = np.isfinite(x).all(axis=(1, 2))
        trajs.append(x[: int(np.argmin(ok)) if not ok.all() else len(x)])
    per_traj = done * frame_fs / 1000 / wall if wall > 0 else float("nan")
    return {"method": "DiffMD, torch.compile" if compile else "DiffMD", "compile": compile, "warmup_s": warmup_s,
            "batch": len(starts), "atoms": start.x.shape[0], "frames": done, "frame_fs": frame_fs, "wall_s": wall,
            "ps_per_s": per_traj, "total_ps_per_s": per_traj * len(starts),
            "nfe_per_frame": (stepper.total_nfe - nfe0) / max(done, 1),
            "stopped": sum(r is not None for r in stepper.stopped), "ms_per_frame": wall / max(done, 1) * 1e3,
            **call_times(run.model, start), **_quality(trajs, ref, frame_fs)}


CHUNKS = 5  # timed chunks per row; the rate is the median chunk's (a shared machine's stalls hit single chunks)


def _chunked_wall(run, n: int) -> float:
    """Seconds for n steps of ``run(k) -> steps done``, estimated as the steps done x the median
    per-step time over CHUNKS equal chunks (robust to a neighbour's burst on a shared machine); a
    rollout whose molecules all stopped does no more steps."""
    per_step, done = [], 0
    for k in [n // CHUNKS + (i < n % CHUNKS) for i in range(CHUNKS)]:
        t0 = time.perf_counter()
        did = run(k) if k else 0
        if did:
            per_step.append((time.perf_counter() - t0) / did)
            done += did
    return float(np.median(per_step)) * done if done else 0.0


def _median_ms(fn, repeats: int, inner: int = 10) -> float:
    fn()
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        runs.append((time.perf_counter() - t0) / inner * 1e3)
    return float(np.median(runs))


def call_times(model, start, repeats: int = 7) -> dict:
    """Per-call times (ms, median) of one score evaluation on the window ``start``: the whole network
    as one ``egt_score`` op (what rollouts run), the same network op by op through the modules (autograd
    off, fused attention), the EGL attention op alone, once per layer (its share of either), and the
    anchor (x(t) + v(t), plus the valence prior's Verlet step with model.bond_prior) that every call
    computes first."""
    from ..valence.topology import window_graph

    graph = window_graph(start)  # the rollout's fixed topology: the data's bonds
    x_noisy = 2.0 * start.x - start.x_prev
    std = torch.full_like(start.x[:, :1], 0.05)  # Å
    layer, cfg = model.layers[0], model.cfg
    q = torch.randn(start.x.shape[0], cfg.heads, cfg.hidden // cfg.heads, dtype=start.x.dtype, device=start.x.device)
    v = start.velocity.contiguous()
    sync = torch.cuda.synchronize if start.x.is_cuda else (lambda: None)

    def timed(fn):
        return _median_ms(lambda: (fn(), sync()), repeats)

    with torch.no_grad():
        fused = timed(lambda: model(start, x_noisy, std, graph))
        model.fused_network = False
        try:
            modules = timed(lambda: model(start, x_noisy, std, graph))
        finally:
            model.fused_network = True
        attention = timed(lambda: ops.egl_attention(start.x, v, q, q, q, layer.w_sbf1, layer.w_sbf2, graph.row_ptr,
                                                    graph.col, cutoff=cfg.cutoff, num_radial=cfg.num_radial,
                                                    num_spherical=cfg.num_spherical))
        anchor = timed(lambda: model.anchor(start, graph))  # inside every score call
    return {"score_call_ms": fused, "score_modules_ms": modules, "egl_op_ms": attention * cfg.num_layers,
            "anchor_ms": anchor}


# fs: the GFN2-xTB MD step speeds are quoted against; what a user runs for a molecule at 500 K
# (2 fs loses SCF convergence), not the 0.5 fs the reference data were made at
XTB_FS = 1.0


def xtb_row(ref, start: int, steps: int, warmup: int, threads: int, temperature_K: float, seed: int,
            timestep_fs: float | None = None) -> dict:
    """GFN2-xTB MD (ASE Langevin + tblite, ``threads`` threads) of ``steps`` timed steps of
    ``timestep_fs`` fs (default: the reference's) from frame ``start`` of ``ref``: its simulated ps per
    wall second and the quality columns (at the reference's stride when the step is a multiple of its)."""
    from ase import Atoms, units
    from ase.constraints import FixCom
    from ase.md.langevin import Langevin
    from tblite.ase import TBLite

    from ..data.simulate import omp_threads

    dt = timestep_fs or ref.dt_fs
    atoms = Atoms(numbers=ref.numbers, positions=ref.positions[start])
    atoms.set_velocities((ref.positions[start] - ref.positions[start - 1]) / ref.dt_fs / units.fs)
    atoms.calc = TBLite(method="GFN2-xTB", verbosity=0)
    atoms.set_constraint(FixCom())  # as data/simulate.py, which made the bundled reference
    dyn = Langevin(atoms, dt * units.fs, temperature_K=temperature_K, friction=0.01 / units.fs, fixcm=False,
                   rng=np.random.default_rng(seed))
    kept = []
    dyn.attach(lambda: kept.append(atoms.get_positions()), interval=1)
    with omp_threads(threads):
        dyn.run(warmup)
        wall = _chunked_wall(lambda k: (dyn.run(k), k)[1], steps)
    per_traj = steps * dt / 1000 / wall
    return {"method": "GFN2-xTB (ASE Langevin + tblite)", "batch": 1, "frames": steps, "frame_fs": dt, "wall_s": wall,
            "ps_per_s": per_traj, "total_ps_per_s": per_traj, "nfe_per_frame": None, "stopped": 0,
            **_quality([np.stack(kept[warmup + 1:])], ref, dt)}


def _demo_run(ref, train_frames: int, steps: int, overrides: list[str], out: Path, device: str) -> Path:
    from ..config import Config
    from ..training.loop import train

    cfg = Config.from_toml(resources.files("diffmd_fast") / "configs" / "long.toml",
                           [f"train.max_steps={steps}", "train.val_rollout_frames=0", f"train.device={device}",
                            *overrides])
    train(cfg, ref.slice(0, train_frames), None, out)
    return out


def table(rows: list[dict], ref_T: float) -> str:
    xtb = next((r for r in rows if r["method"].startswith("GFN2")), None)
    lines = [f"| method | batch | frame (fs) | ps/s per trajectory | ps/s total | vs xTB | NFE/frame | frames | "
             f"stable (ps) | h(r) JSD | mean T (K; ref {ref_T:.0f}) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        speed = f"{r['total_ps_per_s'] / xtb['total_ps_per_s']:.3g}x" if xtb else "–"
        nfe = "–" if r["nfe_per_frame"] is None else f"{r['nfe_per_frame']:.1f}"
        stops = f" ({r['stopped']} stopped)" if r["stopped"] else ""
        lines.append(f"| {r['method']} | {r['batch']} | {r['frame_fs']:g} | {r['ps_per_s']:.3g} | "
                     f"{r['total_ps_per_s']:.3g} | {speed} | {nfe} | {r['frames']}{stops} | {r['stable_ps']:.3g} | "
                     f"{r['hr_jsd']:.3g} | {r['mean_T_K']:.0f} |")
    return "\n".join(lines)


def call_table(rows: list[dict]) -> str:
    """Where a frame's time goes, per DiffMD batch: the whole step against one score call (the fused
    network op), the same network op by op, the EGL attention op's own share, and the anchor's."""
    lines = ["| batch | mode | atoms | frame (ms) | score call: egt_score op (ms) | score, modules op by op (ms) | "
             "EGL attention op x layers (ms) | anchor, incl. valence prior (ms) | op-by-op / fused |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "score_call_ms" in r:
            mode = "torch.compile" if r.get("compile") else "eager"
            lines.append(f"| {r['batch']} | {mode} | {r['atoms']} | {r['ms_per_frame']:.3g} | {r['score_call_ms']:.3g} | "
                         f"{r['score_modules_ms']:.3g} | {r['egl_op_ms']:.3g} | {r.get('anchor_ms', float('nan')):.3g} | "
                         f"{r['score_modules_ms'] / r['score_call_ms']:.2g}x |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(prog="diffmd bench rollout", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", metavar="RUN_DIR", help="trained run (default: train a demo-size model briefly)")
    ap.add_argument("--data", default="ethanol", help="reference trajectory (file or bundled name)")
    ap.add_argument("--batches", default="1,100", help="DiffMD batch sizes, comma-separated")
    ap.add_argument("--frames", type=int, default=40, help="timed DiffMD frames per batch size")
    ap.add_argument("--xtb-steps", type=int, default=1000, help="timed GFN2-xTB MD steps")
    ap.add_argument("--xtb-fs", type=float, default=XTB_FS,
                    help="GFN2-xTB MD time step in fs: 1 fs, what a user runs at 500 K (2 fs loses SCF convergence)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed frames/steps before timing")
    ap.add_argument("--compile", default="both", choices=["off", "on", "both"],
                    help="DiffMD rows in eager mode, with each frame one torch.compile graph, or both")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(), help="threads of torch and tblite")
    ap.add_argument("--train-frames", type=int, default=2000, help="training frames of the demo model (and the "
                                                                    "start of the test part the rollouts start in)")
    ap.add_argument("--train-steps", type=int, default=60, help="optimiser steps of the demo model")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                    help="config override (of the demo model, or applied to --checkpoint)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", default="benches/results/bench_rollout_{device}.json")
    args = ap.parse_args(argv)
    from ..data import load_data
    from ..data.writers import json_text, write_text
    from ..training.run import load_run

    torch.set_num_threads(args.threads)
    ref = load_data(args.data)
    batches = [int(b) for b in args.batches.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        if args.checkpoint:
            run_dir, sets = args.checkpoint, args.set
        else:
            print(f"training a demo-size model for {args.train_steps} steps on {args.train_frames} frames ...",
                  flush=True)
            run_dir, sets = _demo_run(ref, args.train_frames, args.train_steps, args.set, Path(tmp) / "run",
                                      args.device), []
        run = load_run(run_dir, args.device, sets)
    stride = run.config.train.stride
    lo, hi = max(args.train_frames, 2 * stride), ref.num_frames - 1
    if hi < lo:
        raise ValueError(f"{ref.name}: no test frames after --train-frames {args.train_frames}")
    ref_T = float(temperature_series(ref.positions, ref.numbers, ref.dt_fs).mean())
    target_T = float(ref.provenance.get("temperature_K") or ref_T)
    first = int(lo)
    rows = [xtb_row(ref, first, args.xtb_steps, args.warmup, args.threads, target_T, args.seed, args.xtb_fs)]
    print(f"  GFN2-xTB: {rows[-1]['ps_per_s']:.3g} ps/s", flush=True)
    for b in batches:
        starts = sorted({int(t) for t in np.linspace(lo, hi, b).round()}) if b > 1 else [first]
        for compile in {"off": [False], "on": [True], "both": [False, True]}[args.compile]:
            rows.append(_diffmd_row(run, ref, starts, args.frames, args.warmup, torch.device(args.device), args.seed,
                                    compile))
            print(f"  {rows[-1]['method']} batch {len(starts)}: {rows[-1]['total_ps_per_s']:.3g} ps/s total "
                  f"(warm-up {rows[-1]['warmup_s']:.1f} s)", flush=True)
    from importlib.metadata import version

    machine = dict(platform=platform.platform(), processor=platform.processor(), cpus=mp.cpu_count(),
                   torch=torch.__version__, tblite=version("tblite"), device=args.device,
                   gpu=torch.cuda.get_device_name() if args.device == "cuda" else None, threads=args.threads,
                   loadavg_1min=os.getloadavg()[0])  # other processes' load skews every rate in the table
    settings = dict(checkpoint=str(run.path) if args.checkpoint else f"long.toml, {args.train_steps} steps",
                    data=ref.name, formula=ref.formula, frames=args.frames, xtb_steps=args.xtb_steps, xtb_fs=args.xtb_fs,
                    warmup=args.warmup, sampler=run.config.to_dict()["sampler"],
                    rollout=run.config.to_dict()["rollout"], reference_T_K=ref_T, xtb_T_K=target_T,
                    metrics="local (benchmarks/rollout.py); to move to evaluation/longrun.py")
    print(f"\nDiffMD vs GFN2-xTB MD, {ref.name} ({ref.formula}), {args.threads} thread(s) — {machine}\n")
    print(table(rows, ref_T))
    print(f"\nPer frame and per score call (batch of ethanol-like windows, {args.threads} thread(s)):\n")
    print(call_table(rows))
    path = args.json.format(device=args.device)
    write_text(path, json_text(dict(machine=machine, settings=settings, rows=rows)))
    print(f"\nwrote {path}")
    return dict(machine=machine, settings=settings, rows=rows)
