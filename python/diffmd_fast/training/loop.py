"""Training loop for DiffMD (nanoGPT-style: train() reads top to bottom; one optimiser step, an
epoch's end and the checkpoints are _Trainer's methods over a small _Progress state), single
process or DDP.

Paper settings (appendix; training.optim, shared with the baselines): Adam lr 5e-4, weight decay
1e-10, ReduceLROnPlateau (patience 5, min lr 1e-7) on the *training* loss per epoch (the paper steps it on a training metric; validation runs
only every ``val_every`` epochs), seed 1, batch 200.

Exact resumption: the data order is a pure function of (seed, epoch) (GlobalBatchSampler), the
diffusion noise of a molecule a pure function of (seed, epoch, batch, position in the global batch)
(losses.draw_noise_keyed), and a checkpoint holds model, optimiser, scheduler, every rank's RNG
states (dropout) and the position inside the epoch. So a run killed after any checkpoint and
resumed ends with the same weights as an uninterrupted one, and a DDP run over W ranks equals a
single-process run (up to float summation order; dropout masks differ unless dropout = 0).

Launch from a shell with ``diffmd train`` (cli/train.py), under torchrun for DDP:
``torchrun --nproc-per-node 2 -m diffmd_fast.cli train --data ethanol --out runs/ddp``.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..config import Config, TrainConfig
from ..data import FrameWindows, Trajectory, collate_windows
from ..data.batch import FrameBatch
from ..data.elements import check_angstrom
from ..data.writers import json_text, write_text
from ..diffusion.losses import draw_noise_keyed, dsm_loss
from ..diffusion.samplers import make_sampler
from ..diffusion.sde import SDE, make_sde
from ..dynamics.preflight import training_topology
from ..dynamics.rollout import rollout_armse
from ..evaluation.longrun import temperature_series, velocity_temperatures
from ..valence import BondPrior
from ..valence.fitted import fit_prior
from ..valence.topology import window_graph
from ..nn.score_net import ScoreNet
from ..ops.graph import complete_graph
from .checkpoint import load_latest, save_checkpoint
from .conditioning import add_input_noise, pushforward, response_target
from .distributed import DistInfo, GlobalBatchSampler, all_mean, any_rank, barrier, init_distributed, shutdown
from .optim import make_optimiser

_P = 1_000_003  # mixing prime for noise keys


def noise_key(seed: int, epoch: int, batch: int, position: int) -> int:
    """Integer seed of one molecule's diffusion noise; independent of how the batch is split."""
    return (((seed * _P + epoch) * _P + batch) * _P + position) % (2**63 - 1)


@dataclass
class TrainResult:
    out_dir: Path
    model: ScoreNet  # unwrapped, on the training device
    epochs: int  # epochs completed
    steps: int  # optimiser steps taken in total
    history: list[dict] = field(default_factory=list)  # one record per completed epoch
    train_s: float = 0.0  # s of training, summed over the calls that resumed this run


def unroll_steps(tc: TrainConfig, epoch: int, batch: int) -> int:
    """0 (train on the real window) or k in 1..unroll_steps (condition on the model's own k-step
    prediction) for one global batch: a pure function of (seed, epoch, batch), the same on every rank."""
    if tc.unroll_prob <= 0:
        return 0
    gen = random.Random(noise_key(tc.seed, epoch, batch, -1))
    return gen.randint(1, tc.unroll_steps) if gen.random() < tc.unroll_prob else 0


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _gather_rng(info: DistInfo) -> list[dict]:
    """Every rank's RNG state, in rank order (gathered so rank 0 can checkpoint them all)."""
    mine = _rng_state()
    if not info.enabled:
        return [mine]
    out: list = [None] * info.world_size
    dist.all_gather_object(out, mine)
    return out


@torch.no_grad()
def validation_loss(model: torch.nn.Module, sde: SDE, trajs: Sequence[Trajectory], cfg: Config,
                    device: torch.device, dtype: torch.dtype, max_batches: int = 5) -> float:
    """DSM loss on (the first ``max_batches`` batches of) the validation windows with fixed noise,
    so values are comparable between epochs."""
    data = FrameWindows(list(trajs), stride=cfg.train.stride, velocities=cfg.model.prior_substeps > 0)
    loader = DataLoader(data, batch_size=cfg.train.batch_size, shuffle=False,
                        collate_fn=partial(collate_windows, dtype=dtype), generator=torch.Generator())
    was_training = model.training
    model.eval()
    losses = []
    for b, batch in enumerate(loader):
        if b >= max_batches:
            break
        batch = batch.to(device, dtype)
        keys = [noise_key(cfg.train.seed, -1, b, p) for p in range(batch.num_graphs)]
        losses.append(float(dsm_loss(model, sde, batch, draw_noise_keyed(batch, sde, keys), sigma_data=cfg.model.sigma_data)))
    model.train(was_training)
    return float(np.mean(losses))


def _validate(model, sde, sampler, val_trajs, cfg: Config, device, dtype) -> dict:
    rec = {"val_loss": validation_loss(model, sde, val_trajs, cfg, device, dtype)}
    if cfg.train.val_rollout_frames > 0:
        score = rollout_armse(model, sde, sampler, val_trajs, cfg.train.val_rollout_frames, stride=cfg.train.stride,
                              starts_per_traj=cfg.train.val_rollout_starts, dtype=dtype, device=device,
                              generator=torch.Generator(device=device).manual_seed(cfg.train.seed))
        if score is not None:
            rec.update(val_armse=score.armse, val_armse_static=score.armse_static, val_nfe=score.mean_nfe,
                       val_frames_per_s=score.frames_per_s)
    return rec


def data_stats(trajs: Sequence[Trajectory], stride: int, phase_space: bool = False) -> dict:
    """What a rollout needs to know about the training data, stored in every checkpoint:
    frame_fs (the model's frame time, fs), temperature_K (K, the mean kinetic temperature of the
    training frames that the rollout thermostat controls: for a model of positions, that of the
    velocities it implies, (x(t+s) - x(t)) / (s dt) at its stride s, which at long strides is below
    the instantaneous temperature; for a ``phase_space`` model, whose thermostat acts on the carried
    velocities, that of the frames' own velocities, Trajectory.velocity_estimates), elements (atomic
    numbers seen), valence_types and fragments (what the model knows of its molecules,
    dynamics.preflight.training_topology). Both temperatures count the internal motion only (3N - 6).
    Raises ValueError when the trajectories disagree on their time step."""
    steps = sorted({round(t.dt_fs, 9) for t in trajs})
    if len(steps) > 1:
        raise ValueError(f"training trajectories have different time steps {steps} fs; resample them to one")
    frame_fs = float(steps[0]) * stride
    if phase_space:
        temps = [velocity_temperatures(t) for t in trajs]
    else:
        temps = [temperature_series(t.positions[::stride], t.numbers, frame_fs) for t in trajs if t.num_frames > stride]
    return {"frame_fs": frame_fs, "temperature_K": float(np.concatenate(temps).mean()) if temps else None,
            "elements": sorted({int(z) for t in trajs for z in t.numbers}), **training_topology(trajs)}


def resolve_sigma_data(cfg: Config, trajs: Sequence[Trajectory]) -> Config:
    """``model.sigma_data = -1`` means "measure it": the std (Å, per coordinate) of x(t+s) about the
    anchor x(t) + v(t) over the training trajectories at the model's stride s. The measured value
    goes into the resolved config that every checkpoint saves."""
    if cfg.model.sigma_data >= 0:
        return cfg
    s = cfg.train.stride
    offsets = [t.positions[3 * s:] - 2 * t.positions[2 * s:-s] + t.positions[s:-2 * s] for t in trajs
               if t.num_frames > 3 * s]
    if not offsets:
        raise ValueError(f"model.sigma_data = -1 needs trajectories longer than {3 * s} frames to measure it")
    value = float(np.sqrt(np.mean([np.mean(o * o) for o in offsets])))
    return cfg.replace(model=replace(cfg.model, sigma_data=round(value, 6)))


@dataclass
class _Progress:
    """Where training stands: what a checkpoint records beside the weights, optimiser and scheduler."""

    epoch: int = 0
    batch_in_epoch: int = 0
    step: int = 0
    loss_sum: float = 0.0  # training loss summed over this epoch's steps so far
    loss_count: int = 0
    history: list = field(default_factory=list)  # one record per completed epoch
    trained_s: float = 0.0  # s of training before this call


@dataclass
class _Trainer:
    """Everything an optimiser step, an epoch's end and a checkpoint need (train() builds it)."""

    cfg: Config
    info: DistInfo
    model: ScoreNet
    ddp: torch.nn.Module
    sde: SDE
    sampler: object
    opt: torch.optim.Optimizer
    sched: object
    prior: BondPrior | None  # the valence force field of the anchor and of the response targets
    response: BondPrior | None
    stats: dict
    out: Path
    val_trajs: list
    dtype: torch.dtype
    at: _Progress = field(default_factory=_Progress)
    clock: float = field(default_factory=time.perf_counter)

    def seconds(self) -> float:
        return self.at.trained_s + time.perf_counter() - self.clock

    def budget_spent(self) -> bool:
        """max_steps or max_minutes reached: one decision shared by every rank (their clocks differ)."""
        tc = self.cfg.train
        if tc.max_steps and self.at.step >= tc.max_steps:
            return True
        return tc.max_minutes > 0 and any_rank(self.seconds() >= 60.0 * tc.max_minutes, self.info)

    def checkpoint(self, epoch: int, batch_in_epoch: int) -> None:
        rngs, at = _gather_rng(self.info), self.at
        if self.info.is_main:
            save_checkpoint(self.out, {"model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                                       "scheduler": self.sched.state_dict(), "rng": rngs, "epoch": epoch,
                                       "batch_in_epoch": batch_in_epoch, "step": at.step, "loss_sum": at.loss_sum,
                                       "loss_count": at.loss_count, "history": at.history, "train_s": self.seconds(),
                                       "config": self.cfg.to_dict(), "data": self.stats}, self.cfg,
                            keep=self.cfg.train.keep_checkpoints)
        barrier(self.info)

    def resume(self) -> Path | None:
        """Continue from the newest good checkpoint in ``out`` (its path), or None when there is none.
        Raises ValueError when it holds weights of another [model] or [sde] config."""
        found = load_latest(self.out, map_location=self.info.device)
        if found is None:
            return None
        state, path = found
        # what the weights mean; a resumed run must not change it (fields added since the checkpoint
        # was written read as their defaults, as load_run reads them)
        saved, mine = (Config.from_dict(state["config"]).to_dict() if "config" in state else {}), self.cfg.to_dict()
        for section in ("model", "sde"):
            if saved.get(section) not in (None, mine[section]):
                changed = sorted(k for k, v in mine[section].items() if saved[section].get(k) != v)
                raise ValueError(f"{self.out} holds checkpoints of another [{section}] config (differs in "
                                 f"{', '.join(changed)}); train into a new directory or pass --no-resume")
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        rngs = state["rng"]
        _set_rng_state(rngs[self.info.rank] if len(rngs) == self.info.world_size else rngs[0])
        self.at = _Progress(state["epoch"], state["batch_in_epoch"], state["step"], state.get("loss_sum", 0.0),
                            state.get("loss_count", 0), state.get("history", []), state.get("train_s", 0.0))
        return path

    def calibrate(self, train_trajs: list, log, progress: bool) -> None:
        """Measure the trained step's friction per element on the training data (training/calibration.py)
        and checkpoint it with the data record; rank 0 measures, every rank meets at the checkpoint."""
        from ..dynamics.physics import corrections_from_config
        from .calibration import measure_step_friction
        from .run import rollout_model

        if self.info.is_main:
            tc, stats, rollout = self.cfg.train, self.stats, self.cfg.rollout
            # the rollouts of the run's own [rollout] section (thermostat, projection, prior fallback)
            corrections = corrections_from_config(rollout, stats["frame_fs"], stats["temperature_K"])
            try:
                cal = measure_step_friction(rollout_model(self.model, rollout, stats["temperature_K"]), self.sde,
                                            self.sampler, train_trajs, stride=tc.stride, frame_fs=stats["frame_fs"],
                                            temperature_K=stats["temperature_K"], frames=tc.calibration_frames,
                                            dtype=self.dtype, device=self.info.device, seed=tc.seed,
                                            corrections=corrections, progress=progress,
                                            stretches=tc.calibrate_stretches)
            except (RuntimeError, ValueError) as err:  # the model stays usable, without the fluctuation
                stats["step_friction"] = {"not_measured": str(err)}
                log(f"warning: the step friction was not measured, rollouts run without its fluctuation: {err}")
            else:
                stats["step_friction"] = cal.record()
                log("step friction (1/fs; the data's / the calibration rollouts' temperature, K): " + cal.summary())
                unbalanced = cal.unbalanced()
                if unbalanced:
                    log("warning: the step's fluctuation does not hold the data's temperature for "
                        + "; ".join(unbalanced) + " (last calibration round): check those atoms' temperature "
                        "in the rollouts (diffmd evaluate)")
        self.checkpoint(self.at.epoch, self.at.batch_in_epoch)

    def write_metrics(self, partial: dict | None = None) -> None:
        """metrics.jsonl, rewritten whole from the history (which checkpoints carry), so a run killed
        between this write and the checkpoint cannot leave a duplicated epoch after resuming; ``partial``,
        the record of an epoch the training budget cut short, goes last and stays out of the history
        (a resumed run finishes that epoch and records it whole)."""
        if self.info.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            records = self.at.history + ([partial] if partial else [])
            write_text(self.out / "metrics.jsonl", "".join(json_text(r, indent=None) + "\n" for r in records))

    def epoch_record(self, epoch_s: float) -> dict:
        """The current epoch's metrics so far: its number, the step, the mean training loss over every
        rank's batches (a collective: every rank calls it), the learning rate and ``epoch_s`` seconds."""
        at = self.at
        return {"epoch": at.epoch + 1, "step": at.step, "train_loss": all_mean(at.loss_sum / max(at.loss_count, 1), self.info),
                "lr": self.opt.param_groups[0]["lr"], "epoch_s": epoch_s}

    def stop_mid_epoch(self, batches_done: int, epoch_s: float) -> None:
        """The training budget ran out inside an epoch: checkpoint there and record the part done
        (mean loss over its ``batches_done`` batches) in metrics.jsonl."""
        if self.at.loss_count:
            self.write_metrics({**self.epoch_record(epoch_s), "partial_batches": batches_done})
        self.checkpoint(self.at.epoch, batches_done)

    def step(self, batch: FrameBatch, b: int, bsamp: GlobalBatchSampler) -> float:
        """One optimiser step on the window batch ``batch`` (global batch ``b`` of the epoch); its loss."""
        tc, epoch = self.cfg.train, self.at.epoch
        batch = batch.to(self.info.device, self.dtype)
        keys = [noise_key(tc.seed, epoch, b, p) for p in bsamp.positions()]
        noise = draw_noise_keyed(batch, self.sde, keys, conditioning=tc.input_noise > 0 or tc.input_noise_shared > 0)
        # the data's topology (each trajectory's bonds at the median) for the prior and the response targets
        graph = window_graph(batch) if self.prior is not None else complete_graph(batch.batch)
        unroll = unroll_steps(tc, epoch, b)
        if unroll:
            batch = pushforward(self.model, self.sde, self.sampler, batch, unroll, graph)
        if noise.eta is not None:
            noisy = add_input_noise(batch, noise.eta, tc.input_noise, tc.input_noise_shared)
            batch = noisy if self.response is None else response_target(batch, noisy, graph, self.response,
                                                                        self.cfg.model.prior_substeps)
        loss = dsm_loss(self.ddp, self.sde, batch, noise, graph, self.cfg.model.sigma_data)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite training loss at epoch {epoch}, batch {b}, step {self.at.step}")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if tc.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), tc.grad_clip)
        self.opt.step()
        self.at.step += 1
        value = float(loss.detach())
        self.at.loss_sum, self.at.loss_count = self.at.loss_sum + value, self.at.loss_count + 1
        return value

    def end_epoch(self, epoch_s: float, bar) -> None:
        """Record the epoch (scheduler step, validation every val_every epochs, metrics.jsonl), move to
        the next, and checkpoint every checkpoint_every epochs and at the last."""
        tc, at, info = self.cfg.train, self.at, self.info
        rec = self.epoch_record(epoch_s)
        self.sched.step(rec["train_loss"])
        if self.val_trajs and (at.epoch + 1) % tc.val_every == 0:
            if info.is_main:
                rec.update(_validate(self.model, self.sde, self.sampler, self.val_trajs, self.cfg, info.device,
                                     self.dtype))
            barrier(info)
        at.history.append(rec)
        if bar.disable:
            if info.is_main:
                print(json_text(rec, indent=None))
        else:
            bar.update(1)
            bar.set_postfix({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in rec.items()
                             if k in ("train_loss", "lr", "val_loss", "val_armse", "val_armse_static")})
        self.write_metrics()
        at.epoch, at.batch_in_epoch, at.loss_sum, at.loss_count = at.epoch + 1, 0, 0.0, 0
        if at.epoch % tc.checkpoint_every == 0 or at.epoch == tc.epochs:
            self.checkpoint(at.epoch, 0)


def _fitted_prior(model: ScoreNet, cfg: Config, train_trajs: list, stats: dict, device, log) -> BondPrior | None:
    """The valence force field of the anchor (the model's own) or of the response targets, fitted to
    the data (Boltzmann inversion, then with ``model.prior_force_matching`` the bonds and angles
    refitted to the reference forces, with the Urey-Bradley springs that only forces can fit); its tables are buffers, so a resumed run reloads the same values."""
    prior = model.bond_prior
    if prior is None and cfg.train.input_noise_response:
        prior = BondPrior(cfg.model.max_z).to(device)
    if prior is None:
        return None
    # a phase-space prior steps (and has its springs Verlet-matched) at the substep
    summary, matched = fit_prior(prior, train_trajs, cfg.model, stats["frame_fs"] / max(cfg.model.prior_substeps, 1))
    if matched:  # else force matching was off, or refused and force_matched's warning said why
        log(f"valence prior: {summary}")
    return prior


def train(config: Config, train_trajs: Sequence[Trajectory] | Trajectory,
          val_trajs: Sequence[Trajectory] | Trajectory | None = None, out_dir: str | Path = "runs/diffmd", *,
          resume: bool = True, progress: bool = False, distributed: bool = True) -> TrainResult:
    """Train a score network on the windows of ``train_trajs``; checkpoints and metrics.jsonl go to
    ``out_dir``. With ``resume`` the newest good checkpoint there is continued. ``distributed=False``
    trains alone even under torchrun (each rank its own model). Training stops early, with a
    checkpoint, at ``train.max_steps`` optimiser steps or ``train.max_minutes`` of training time
    (counted over resumes)."""
    train_trajs = [train_trajs] if isinstance(train_trajs, Trajectory) else list(train_trajs)
    for traj in train_trajs:  # built in Python rather than read from a file (where the readers check)
        check_angstrom(traj.positions, traj.numbers, f"training trajectory {traj.name}")
    cfg = resolve_sigma_data(config, train_trajs)
    tc = cfg.train
    val_trajs = [val_trajs] if isinstance(val_trajs, Trajectory) else (list(val_trajs) if val_trajs else [])
    info = init_distributed(tc.device, join=distributed)
    device, dtype = info.device, getattr(torch, tc.dtype)
    # above any progress bar on the terminal (a bench's, the epochs'), not on its line
    log = tqdm.write if info.is_main else (lambda *a, **k: None)
    torch.manual_seed(tc.seed)
    np.random.seed(tc.seed)
    random.seed(tc.seed)

    model = ScoreNet(cfg.model).to(device=device, dtype=dtype)
    opt, sched = make_optimiser(model.parameters(), tc)
    data = FrameWindows(train_trajs, stride=tc.stride, history=tc.unroll_steps if tc.unroll_prob > 0 else 0,
                        velocities=cfg.model.prior_substeps > 0, force_targets=tc.force_targets)
    if tc.force_targets:
        missing = len(train_trajs) - data.force_targeted
        log(f"train.force_targets: the targets of {data.force_targeted} of {len(train_trajs)} training trajectories "
            "continued by their forces" + (f"; {missing} without forces or a time step keep their frames" if missing else ""))
    stats = data_stats(train_trajs, tc.stride, phase_space=cfg.model.prior_substeps > 0)
    prior = _fitted_prior(model, cfg, train_trajs, stats, device, log)
    bsamp = GlobalBatchSampler(len(data), tc.batch_size, rank=info.rank, world_size=info.world_size, seed=tc.seed)
    # own generator: a DataLoader iterator otherwise draws its base seed from the global RNG, which
    # would shift the dropout stream of a run resumed mid-epoch
    loader = DataLoader(data, batch_size=bsamp.per_rank, sampler=bsamp, collate_fn=partial(collate_windows, dtype=dtype),
                        generator=torch.Generator().manual_seed(tc.seed))
    t = _Trainer(cfg, info, model, model, make_sde(cfg.sde), make_sampler(cfg.sampler), opt, sched, prior,
                 prior if tc.input_noise_response else None, stats, Path(out_dir), val_trajs, dtype)
    path = t.resume() if resume else None
    if info.enabled:  # wrapped after loading: every rank starts from the checkpoint's weights
        t.ddp = DistributedDataParallel(model, device_ids=None, find_unused_parameters=not cfg.model.anchor)
    if path is not None:
        log(f"resumed from {path} (epoch {t.at.epoch}, batch {t.at.batch_in_epoch}, step {t.at.step})")
    log(f"training {sum(p.numel() for p in model.parameters())} parameters on {device} ({info.world_size} rank(s)), "
        f"{len(data)} windows, {bsamp.batches_per_epoch} steps/epoch of {bsamp.global_batch}")
    stopped = path is not None and t.budget_spent()  # a resumed run that had used its budget trains no further
    # progress: one bar over epochs (loss, lr, validation ARMSE in its postfix) on rank 0; without
    # it the per-epoch records are printed as JSON lines (logs of batch jobs)
    bar = tqdm(total=tc.epochs, initial=t.at.epoch, unit="epoch", desc="train", disable=not (progress and info.is_main))
    try:
        while t.at.epoch < tc.epochs and not stopped:
            bsamp.set_epoch(t.at.epoch, t.at.batch_in_epoch)
            t.ddp.train()
            t0 = time.perf_counter()
            for b, batch in enumerate(loader, start=t.at.batch_in_epoch):
                loss = t.step(batch, b, bsamp)
                if progress and t.at.step % tc.log_every == 0:
                    bar.set_postfix(step=t.at.step, loss=f"{loss:.4f}")
                if t.budget_spent():
                    stopped = True
                    t.stop_mid_epoch(b + 1, time.perf_counter() - t0)
                    break
            if not stopped:
                t.end_epoch(time.perf_counter() - t0, bar)
        if tc.calibration_frames and "step_friction" not in t.stats:
            t.calibrate(train_trajs, log, progress and info.is_main)
    finally:
        bar.close()
        shutdown(info)
    return TrainResult(t.out, model, t.at.epoch, t.at.step, t.at.history, t.seconds())
