"""End-to-end DiffMD benchmark: training throughput and rollout speed, fused vs reference backend.

For aspirin-sized molecules (21 atoms, bundled GFN2-xTB aspirin) at batch 1 and 100 it measures
  - training: windows/s of a full optimiser step (DSM loss forward + backward + Adam),
  - rollout: frames/s of the probability-flow ODE sampler (dopri5, atol = rtol = 1e-5 unless
    changed; one frame advances every molecule of the batch, so molecule-frames/s = frames/s x
    batch) and score evaluations (NFE) per frame.
The network is freshly initialised (the NFE of a trained model differs); all backends share the
same weights. Prints a markdown table and writes JSON.

    python benches/bench_diffmd.py                    # paper-size EGT (6 x 128, FFN 2048)
    python benches/bench_diffmd.py --quick            # tiny model, few repeats (smoke test)
    python benches/bench_diffmd.py --batches 100 --no-rollout --threads 1   # the fused/reference training ratio, quiet-machine proxy

On a shared CPU box, wall-clock with several threads swings with other processes' load (OpenMP
threads wait on descheduled peers), so the training figure also reports process CPU time per
window; with --threads 1 that is the most repeatable number.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

import diffmd_fast
from diffmd_fast.config import ModelConfig, SamplerConfig, SDEConfig
from diffmd_fast.data import bundled, load_trajectory, make_loader, start_batch
from diffmd_fast.data.writers import json_text
from diffmd_fast.ops.graph import complete_graph
from diffmd_fast.diffusion.losses import draw_noise, dsm_loss
from diffmd_fast.dynamics.rollout import rollout
from diffmd_fast.diffusion.samplers import make_sampler
from diffmd_fast.nn.score_net import ScoreNet
from diffmd_fast.diffusion.sde import make_sde


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_train(model, sde, traj, batch: int, steps: int, device, dtype) -> tuple[float, float]:
    """(windows per wall second, windows per process-CPU second) of full training steps (after one
    warm-up step)."""
    loader = make_loader(traj, batch_size=batch, shuffle=True, dtype=dtype)
    opt = torch.optim.Adam(model.parameters(), lr=5e-4, weight_decay=1e-10)
    gen = torch.Generator(device=device).manual_seed(1)
    model.train()
    batches = iter(loader)
    t0 = None
    for i in range(steps + 1):
        fb = next(batches).to(device, dtype)
        loss = dsm_loss(model, sde, fb, draw_noise(fb, sde, gen), complete_graph(fb.batch))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i == 0:
            _sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
    _sync(device)
    return batch * steps / (time.perf_counter() - t0), batch * steps / (time.process_time() - c0)


def bench_rollout(model, sde, sampler, traj, batch: int, frames: int, device, dtype) -> tuple[float, float]:
    """(frames/s, mean NFE per frame) of a batched rollout of ``batch`` aspirin molecules."""
    starts = [10 + 7 * i for i in range(batch)]
    start = start_batch([traj] * batch, starts, dtype=dtype).to(device)
    rollout(model, sde, sampler, start, 1)  # warm-up
    res = rollout(model, sde, sampler, start, frames)
    return res.frames_per_s, res.mean_nfe


def bench_xtb(steps: int) -> float:
    """GFN2-xTB MD steps per wall second for aspirin (ASE Langevin + tblite, one thread): the
    reference engine DiffMD is meant to accelerate."""
    from diffmd_fast.data.simulate import simulate

    traj = simulate("CC(=O)OC1=CC=CC=C1C(=O)O", temperature_K=500.0, timestep_fs=0.5, frames=steps,
                    equilibration_fs=0.0, progress=False, threads=1)
    return 1000.0 / traj.provenance["ms_per_step"]


def _print_ratios(rows: list[dict]) -> None:
    """Fused / reference training throughput per batch size."""
    by = {(r["backend"], r["batch"]): r for r in rows if "error" not in r}
    for (backend, batch), r in sorted(by.items()):
        ref = by.get(("reference", batch))
        if backend != "fused" or ref is None:
            continue
        print(f"fused / reference training at batch {batch}: "
              f"{r['train_samples_per_s'] / ref['train_samples_per_s']:.2f}x wall, "
              f"{r['train_samples_per_cpu_s'] / ref['train_samples_per_cpu_s']:.2f}x CPU time")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny model and few repeats")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--batches", default="1,100")
    ap.add_argument("--backends", default="fused,reference")
    ap.add_argument("--train-steps", type=int, default=None)
    ap.add_argument("--frames", type=int, default=None)
    ap.add_argument("--atol", type=float, default=1e-5)
    ap.add_argument("--no-rollout", action="store_true", help="training throughput only")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    ap.add_argument("--xtb-steps", type=int, default=200, help="GFN2-xTB MD steps timed for the reference row (0: skip)")
    ap.add_argument("--json", default="runs/bench_diffmd.json")
    args = ap.parse_args()
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    if args.threads:
        torch.set_num_threads(args.threads)
    steps = args.train_steps or (2 if args.quick else 5)
    frames = args.frames or (2 if args.quick else 5)
    arch = dict(num_layers=2, hidden=32, heads=4, ffn=64) if args.quick else {}
    traj = load_trajectory(bundled("aspirin"))
    sde = make_sde(SDEConfig())
    sampler = make_sampler(SamplerConfig(atol=args.atol, rtol=args.atol))
    rows = []
    weights = None
    for backend in args.backends.split(","):
        torch.manual_seed(1)
        model = ScoreNet(ModelConfig(backend=backend, **arch)).to(device, dtype)
        if weights is None:
            weights = model.state_dict()
        model.load_state_dict(weights)
        for batch in (int(b) for b in args.batches.split(",")):
            row = {"backend": backend, "batch": batch, "atoms": batch * traj.num_atoms}
            try:
                row["train_samples_per_s"], row["train_samples_per_cpu_s"] = bench_train(
                    model, sde, traj, batch, steps, device, dtype)
                if not args.no_rollout:
                    row["rollout_frames_per_s"], row["nfe_per_frame"] = bench_rollout(
                        model, sde, sampler, traj, batch, frames, device, dtype)
            except torch.OutOfMemoryError as err:
                row["error"] = f"out of memory: {err}".splitlines()[0]
            rows.append(row)
            print(json.dumps(row), flush=True)
    dt_fs = traj.dt_fs  # one generated frame advances every molecule by one stored MD frame
    xtb_steps_per_s = bench_xtb(args.xtb_steps) if args.xtb_steps else None
    meta = {"device": str(device), "frame_dt_fs": dt_fs, "xtb_steps_per_s": xtb_steps_per_s, "dtype": args.dtype, "compiled_extension": diffmd_fast.HAS_EXTENSION,
            "model": ModelConfig(**arch).__dict__, "train_steps": steps, "rollout_frames": frames,
            "atol": args.atol, "torch": torch.__version__, "threads": torch.get_num_threads(),
            "machine": platform.processor() or platform.machine(),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None}
    print(f"\nDiffMD on aspirin (21 atoms), {meta['gpu'] or 'CPU'} {args.dtype}, "
          f"{'tiny' if args.quick else 'paper-size'} EGT\n")
    print("| backend | batch | train windows/s | train windows/CPU-s | rollout frames/s | molecule-frames/s "
          "| NFE/frame | simulated fs/s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['backend']} | {r['batch']} | {r['error']} | | | | | |")
            continue
        roll = (f"{r['rollout_frames_per_s']:.3f} | {r['rollout_frames_per_s'] * r['batch']:.2f} | "
                f"{r['nfe_per_frame']:.1f} | {r['rollout_frames_per_s'] * r['batch'] * dt_fs:.2f}"
                ) if "rollout_frames_per_s" in r else "– | – | – | –"
        print(f"| {r['backend']} | {r['batch']} | {r['train_samples_per_s']:.1f} | "
              f"{r['train_samples_per_cpu_s']:.1f} | {roll} |")
    if xtb_steps_per_s:
        print(f"| GFN2-xTB MD (ASE + tblite, 1 thread) | 1 | – | – | {xtb_steps_per_s:.1f} steps/s | – | – | "
              f"{xtb_steps_per_s * dt_fs:.2f} |")
    _print_ratios(rows)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json_text({"meta": meta, "rows": rows}, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
