"""Long rollouts of a trained DiffMD from several test frames, scored with the long-run metrics
(evaluation/longrun.py: MDsim stability, h(r), kinetic temperature, VDOS) against the reference,
with plots: what the main job shows after its short in-phase comparison.

The rollout is the Stepper's (dynamics/stepper.py) with the physics of the run's [rollout] config;
the frames are kept in memory (B x T x n x 3 float32: 8 ethanol rollouts of 10 ps at 0.5 fs are
17 MB); streaming runs of any length are `diffmd generate`'s job.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data import Trajectory, write_extxyz
from ..dynamics.rollout import evenly_spaced_starts, rollout
from ..evaluation import plots
from ..evaluation.longrun import LongRun, long_run_analysis
from ..training.run import TrainedRun


@dataclass
class LongRollout:
    frame_fs: float  # fs between generated frames
    frames: int  # frames asked per start
    starts: list[int]
    runs: list[LongRun]  # one per start, against the whole reference
    pooled: LongRun  # all starts' valid frames, concatenated in time (for the plots)
    fs_per_s: float  # simulated fs per wall second, all starts together
    nfe_per_frame: float
    wall_s: float

    def summary(self) -> dict:
        """Means over the starts of the plainly named metrics (None where no start has a value)."""
        keys = ("stability_ps", "h_r_jsd", "temperature_mean_K", "temperature_ref_mean_K", "vdos_overlap")
        out: dict = {}
        for k in keys:
            vals = [r.metrics[k] for r in self.runs if r.metrics[k] is not None]
            out[k] = float(np.mean(vals)) if vals else None
        out["stable_starts"] = sum(r.metrics["stability_frames"] == self.frames for r in self.runs)
        out.update(starts=len(self.runs), frames=self.frames, frame_fs=self.frame_fs, fs_per_s=self.fs_per_s,
                   nfe_per_frame=self.nfe_per_frame, wall_s=self.wall_s,
                   ps_per_start=self.frames * self.frame_fs / 1000.0)
        return out


def long_rollout(run: TrainedRun, reference: Trajectory, test: Trajectory, *, ps: float, starts: int,
                 seed: int = 1, progress: bool = False) -> tuple[LongRollout, list[np.ndarray]]:
    """Roll ``run`` out for ``ps`` picoseconds from ``starts`` evenly spaced frames of ``test`` and score
    every start against the whole ``reference`` (taken at the model's stride). Returns the scores and
    each start's valid frames ((T_b, n, 3) float64 Å, in the reference's frame)."""
    stride = run.config.train.stride
    t0s = evenly_spaced_starts(test.num_frames, 0, stride, starts)
    rollout_start = run.start_from_frames(test, t0s, device=next(run.model.parameters()).device)
    start, frame_fs = rollout_start.batch, rollout_start.frame_fs
    frames = max(1, int(round(ps * 1000.0 / frame_fs)))
    t0 = time.perf_counter()
    res = rollout(run.rollout_model(), run.sde, run.sampler, start, frames, generator=torch.Generator().manual_seed(seed),
                  progress=progress, corrections=run.corrections(frame_fs))
    wall = time.perf_counter() - t0
    pos = start.absolute(res.positions).cpu().numpy()  # (T, N, 3) float64 Å
    atom_batch = start.batch.cpu().numpy()
    ref = reference.positions[::stride]
    gens = [pos[: res.valid_frames[b], atom_batch == b] for b in range(len(t0s))]
    runs = [long_run_analysis(g, ref, reference.numbers, frame_fs) if len(g) else _collapsed(ref, reference, frame_fs)
            for g in gens]
    valid = [g for g in gens if len(g)]
    pooled = (long_run_analysis(np.concatenate(valid), ref, reference.numbers, frame_fs) if valid
              else _collapsed(ref, reference, frame_fs))
    done = res.frames_run * len(t0s)
    return LongRollout(frame_fs, frames, t0s, runs, pooled, done * frame_fs / wall if wall > 0 else float("inf"),
                       res.mean_nfe, wall), gens


def _collapsed(ref: np.ndarray, reference: Trajectory, frame_fs: float) -> LongRun:
    """The scores of a rollout with no valid frame: stability 0, generated distributions None (the
    reference's curves kept for the plots)."""
    out = long_run_analysis(ref[:2], ref, reference.numbers, frame_fs)
    gen_keys = ("h_r_mae", "h_r_jsd", "temperature_mean_K", "temperature_std_K", "vdos_overlap", "vdos_peak_cm1")
    out.metrics.update({k: None for k in gen_keys}, stability_frames=0, stability_ps=0.0, stable_fraction=0.0)
    out.hr = out.temperature = out.vdos = None
    out.notes.append("no valid frame")
    return out


def write_long_rollout_outputs(result: LongRollout, gens: list[np.ndarray], reference: Trajectory,
                               out: Path) -> list[Path]:
    """Temperature, h(r) and VDOS plots against the reference, and the first start's trajectory (extxyz)."""
    p = result.pooled
    made = [plots.plot_hr({"DiffMD": p.hr} if p.hr is not None else {}, p.hr_ref, p.hr_edges,
                          out / "plots" / "long_h_r.png")]
    first = result.runs[0]
    if first.temperature is not None:
        made.append(plots.plot_temperature({"DiffMD (first start)": first.temperature}, first.temperature_ref,
                                           out / "plots" / "long_temperature.png", dt_fs=result.frame_fs))
    if p.vdos is not None and p.vdos_ref is not None:
        made.append(plots.plot_vdos({"DiffMD": (p.vdos_cm1, p.vdos)}, (p.vdos_cm1, p.vdos_ref),
                                    out / "plots" / "long_vdos.png", nyquist_cm1=p.metrics["vdos_nyquist_cm1"]))
    if len(gens[0]):
        traj = Trajectory(positions=gens[0], numbers=reference.numbers, dt_fs=result.frame_fs,
                          name=f"{reference.name}-diffmd-long", provenance={"start_frame": result.starts[0]})
        made.append(write_extxyz(traj, out / "trajectories" / "diffmd_long.extxyz"))
    return made
