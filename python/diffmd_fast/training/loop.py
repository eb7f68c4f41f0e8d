"""Training loop for DiffMD (nanoGPT-style: one readable function), single process or DDP.

Paper settings (appendix): Adam lr 5e-4, weight decay 1e-10, ReduceLROnPlateau (patience 5, min lr
1e-7) on the *training* loss per epoch (the paper steps it on a training metric; validation runs
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

import json
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
from ..data.writers import write_text
from ..diffusion.losses import draw_noise_keyed, dsm_loss
from ..diffusion.samplers import make_sampler
from ..diffusion.sde import SDE, make_sde
from ..dynamics.preflight import training_topology
from ..dynamics.rollout import rollout_armse
from ..evaluation.longrun import temperature_series
from ..nn.bond_prior import BondPrior
from ..nn.score_net import ScoreNet
from ..ops.graph import complete_graph, with_covalent_bonds
from .checkpoint import load_latest, save_checkpoint
from .conditioning import add_input_noise, pushforward, response_target, valence_statistics
from .distributed import DistInfo, GlobalBatchSampler, all_mean, any_rank, barrier, init_distributed, shutdown

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
    data = FrameWindows(list(trajs), stride=cfg.train.stride)
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


def data_stats(trajs: Sequence[Trajectory], stride: int) -> dict:
    """What a rollout needs to know about the training data, stored in every checkpoint:
    frame_fs (the model's frame time, fs), temperature_K (mean kinetic temperature of the training
    frames from the velocities the model itself implies, (x(t+s) - x(t)) / (s dt) at its stride s, K;
    at long strides this is below the instantaneous temperature, and it is the quantity the
    rollout thermostat controls), elements (atomic numbers seen), valence_types and fragments (what
    the model knows of its molecules, dynamics.preflight.training_topology).
    Raises ValueError when the trajectories disagree on their time step."""
    steps = sorted({round(t.dt_fs, 9) for t in trajs})
    if len(steps) > 1:
        raise ValueError(f"training trajectories have different time steps {steps} fs; resample them to one")
    frame_fs = float(steps[0]) * stride
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


def train(config: Config, train_trajs: Sequence[Trajectory] | Trajectory,
          val_trajs: Sequence[Trajectory] | Trajectory | None = None, out_dir: str | Path = "runs/diffmd", *,
          resume: bool = True, progress: bool = False, distributed: bool = True) -> TrainResult:
    """Train a score network on the windows of ``train_trajs``; checkpoints and metrics.jsonl go to
    ``out_dir``. With ``resume`` the newest good checkpoint there is continued. ``distributed=False``
    trains alone even under torchrun (each rank its own model). Training stops early, with a
    checkpoint, at ``train.max_steps`` optimiser steps or ``train.max_minutes`` of training time
    (counted over resumes)."""
    train_trajs = [train_trajs] if isinstance(train_trajs, Trajectory) else list(train_trajs)
    cfg = resolve_sigma_data(config, train_trajs)
    tc = cfg.train
    val_trajs = [val_trajs] if isinstance(val_trajs, Trajectory) else (list(val_trajs) if val_trajs else [])
    out = Path(out_dir)
    info = init_distributed(tc.device, join=distributed)
    device, dtype = info.device, getattr(torch, tc.dtype)
    log = print if info.is_main else (lambda *a, **k: None)
    torch.manual_seed(tc.seed)
    np.random.seed(tc.seed)
    random.seed(tc.seed)

    model = ScoreNet(cfg.model).to(device=device, dtype=dtype)
    sde, sampler = make_sde(cfg.sde), make_sampler(cfg.sampler)
    opt = torch.optim.Adam(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=tc.lr_factor, patience=tc.patience,
                                                       min_lr=tc.min_lr)
    data = FrameWindows(train_trajs, stride=tc.stride, history=tc.unroll_steps if tc.unroll_prob > 0 else 0)
    stats = data_stats(train_trajs, tc.stride)
    # the valence force field of the model's prior and of the response targets, fitted to the data;
    # the prior's tables are buffers: a resumed run reloads the same values
    prior = model.bond_prior
    if prior is None and tc.input_noise_response:
        prior = BondPrior(cfg.model.max_z).to(device)
    if prior is not None:
        prior.set_tables(frame_fs=stats["frame_fs"],
                         **valence_statistics(train_trajs, cfg.model.max_z, torsions=cfg.model.prior_torsions))
    response = prior if tc.input_noise_response else None
    bsamp = GlobalBatchSampler(len(data), tc.batch_size, rank=info.rank, world_size=info.world_size, seed=tc.seed)
    # own generator: a DataLoader iterator otherwise draws its base seed from the global RNG, which
    # would shift the dropout stream of a run resumed mid-epoch
    loader = DataLoader(data, batch_size=bsamp.per_rank, sampler=bsamp, collate_fn=partial(collate_windows, dtype=dtype),
                        generator=torch.Generator().manual_seed(tc.seed))

    epoch, batch_in_epoch, step, history = 0, 0, 0, []
    loss_sum, loss_count = 0.0, 0
    trained_s = 0.0  # s of training before this call (from the checkpoint)
    found = load_latest(out, map_location=device) if resume else None
    if found is not None:
        state, path = found
        # what the weights mean; a resumed run must not change it (fields added since the checkpoint
        # was written read as their defaults, as load_run reads them)
        saved = Config.from_dict(state["config"]).to_dict() if "config" in state else {}
        for section in ("model", "sde"):
            if saved.get(section) not in (None, cfg.to_dict()[section]):
                changed = sorted(k for k, v in cfg.to_dict()[section].items() if saved[section].get(k) != v)
                raise ValueError(f"{out} holds checkpoints of another [{section}] config (differs in "
                                 f"{', '.join(changed)}); train into a new directory or pass --no-resume")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        rngs = state["rng"]
        _set_rng_state(rngs[info.rank] if len(rngs) == info.world_size else rngs[0])
        epoch, batch_in_epoch, step = state["epoch"], state["batch_in_epoch"], state["step"]
        loss_sum, loss_count = state.get("loss_sum", 0.0), state.get("loss_count", 0)
        history = state.get("history", [])
        trained_s = state.get("train_s", 0.0)
        log(f"resumed from {path} (epoch {epoch}, batch {batch_in_epoch}, step {step})")
    ddp = (DistributedDataParallel(model, device_ids=None, find_unused_parameters=not cfg.model.anchor)
           if info.enabled else model)

    clock = time.perf_counter()

    def train_seconds() -> float:
        return trained_s + time.perf_counter() - clock

    def budget_spent() -> bool:
        """max_steps or max_minutes reached: one decision shared by every rank (their clocks differ)."""
        if tc.max_steps and step >= tc.max_steps:
            return True
        return tc.max_minutes > 0 and any_rank(train_seconds() >= 60.0 * tc.max_minutes, info)

    def checkpoint(ep: int, b_in_ep: int) -> None:
        rngs = _gather_rng(info)
        if info.is_main:
            save_checkpoint(out, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                                  "scheduler": sched.state_dict(), "rng": rngs, "epoch": ep, "batch_in_epoch": b_in_ep,
                                  "step": step, "loss_sum": loss_sum, "loss_count": loss_count, "history": history,
                                  "train_s": train_seconds(), "config": cfg.to_dict(), "data": stats}, cfg,
                            keep=tc.keep_checkpoints)
        barrier(info)

    log(f"training {sum(p.numel() for p in model.parameters())} parameters on {device} ({info.world_size} rank(s)), "
        f"{len(data)} windows, {bsamp.batches_per_epoch} steps/epoch of {bsamp.global_batch}")
    stopped = found is not None and budget_spent()  # a resumed run that had used its budget trains no further
    # progress: one bar over epochs (loss, lr, validation ARMSE in its postfix) on rank 0; without
    # it the per-epoch records are printed as JSON lines (logs of batch jobs)
    bar = tqdm(total=tc.epochs, initial=epoch, unit="epoch", desc="train", disable=not (progress and info.is_main))
    try:
        while epoch < tc.epochs and not stopped:
            bsamp.set_epoch(epoch, batch_in_epoch)
            ddp.train()
            t0 = time.perf_counter()
            for b, batch in enumerate(loader, start=batch_in_epoch):
                batch = batch.to(device, dtype)
                keys = [noise_key(tc.seed, epoch, b, p) for p in bsamp.positions()]
                noise = draw_noise_keyed(batch, sde, keys, conditioning=tc.input_noise > 0 or tc.input_noise_shared > 0)
                graph = complete_graph(batch.batch)
                if prior is not None:  # one topology per batch, the data's, for the prior and the response targets
                    graph = with_covalent_bonds(graph, batch.x, batch.z)
                unroll = unroll_steps(tc, epoch, b)
                if unroll:
                    batch = pushforward(model, sde, sampler, batch, unroll, graph)
                if noise.eta is not None:
                    noisy = add_input_noise(batch, noise.eta, tc.input_noise, tc.input_noise_shared)
                    batch = noisy if response is None else response_target(batch, noisy, graph, response)
                loss = dsm_loss(ddp, sde, batch, noise, graph, cfg.model.sigma_data)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"non-finite training loss at epoch {epoch}, batch {b}, step {step}")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if tc.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
                opt.step()
                step += 1
                loss_sum, loss_count = loss_sum + float(loss.detach()), loss_count + 1
                if progress and step % tc.log_every == 0:
                    bar.set_postfix(step=step, loss=f"{float(loss.detach()):.4f}")
                if budget_spent():
                    stopped = True
                    checkpoint(epoch, b + 1)
                    break
            if stopped:
                break
            rec = {"epoch": epoch + 1, "step": step, "train_loss": all_mean(loss_sum / max(loss_count, 1), info),
                   "lr": opt.param_groups[0]["lr"], "epoch_s": time.perf_counter() - t0}
            sched.step(rec["train_loss"])
            if val_trajs and (epoch + 1) % tc.val_every == 0:
                if info.is_main:
                    rec.update(_validate(model, sde, sampler, val_trajs, cfg, device, dtype))
                barrier(info)
            history.append(rec)
            if bar.disable:
                log(json.dumps(rec))
            else:
                bar.update(1)
                bar.set_postfix({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in rec.items()
                                 if k in ("train_loss", "lr", "val_loss", "val_armse", "val_armse_static")})
            if info.is_main:  # rewritten whole from the history (which checkpoints carry): a run killed
                # between this write and the checkpoint cannot leave a duplicated epoch after resuming
                out.mkdir(parents=True, exist_ok=True)
                write_text(out / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in history))
            epoch, batch_in_epoch, loss_sum, loss_count = epoch + 1, 0, 0.0, 0
            if epoch % tc.checkpoint_every == 0 or epoch == tc.epochs:
                checkpoint(epoch, 0)
    finally:
        bar.close()
        shutdown(info)
    return TrainResult(out, model, epoch, step, history, train_seconds())
