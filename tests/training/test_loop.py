"""Config loading, checkpoint integrity, exact resume after a kill, and DDP == single process."""
import json
import os
import socket
import warnings

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from diffmd_fast.training.checkpoint import CheckpointError, list_checkpoints, load_latest
from diffmd_fast.training.run import load_run
from diffmd_fast.config import Config, ModelConfig, TrainConfig
from diffmd_fast.data import bundled, load_trajectory
from diffmd_fast.training.distributed import GlobalBatchSampler
from diffmd_fast.cli import main as diffmd_main
from diffmd_fast.training.loop import train

TINY_MODEL = ModelConfig(num_layers=2, heads=2, hidden=16, ffn=32, dropout=0.1, max_z=10, num_fourier=4)


def _traj(frames=40):
    return load_trajectory(bundled("ethanol")).slice(0, frames)


def _cfg(**train) -> Config:
    base = dict(batch_size=8, epochs=2, val_every=1, val_rollout_frames=0, dtype="float64", lr=1e-3)
    return Config(model=TINY_MODEL, train=TrainConfig(**{**base, **train}))


# ---- config -------------------------------------------------------------------------------------

def test_config_defaults_are_the_papers():
    c = Config()
    assert (c.model.num_layers, c.model.heads, c.model.hidden, c.model.ffn) == (6, 8, 128, 2048)
    assert (c.model.dropout, c.model.cutoff, c.model.num_radial, c.model.num_spherical) == (0.1, 1.6, 2, 2)
    assert (c.train.lr, c.train.weight_decay, c.train.patience, c.train.min_lr) == (5e-4, 1e-10, 5, 1e-7)
    assert (c.train.seed, c.train.batch_size) == (1, 200)
    assert (c.sampler.kind, c.sampler.atol, c.sampler.rtol) == ("ode", 1e-5, 1e-5)


def test_config_toml_roundtrip_and_overrides(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('[model]\nhidden = 64\n[train]\nlr = 1\nepochs = 3\n')
    cfg = Config.from_toml(path, overrides=["sampler.kind=pc", "train.lr=2e-3", "model.anchor=false",
                                            "sde.kind=ve"])
    assert cfg.model.hidden == 64 and cfg.train.epochs == 3 and cfg.train.lr == 2e-3
    assert cfg.sampler.kind == "pc" and cfg.model.anchor is False and cfg.sde.kind == "ve"
    cfg.save(tmp_path / "out")
    assert Config.from_toml(tmp_path / "out" / "config.toml") == cfg
    assert Config.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("override, match", [
    ("train.nope=1", "unknown field"), ("bogus.lr=1", "unknown section"), ("train.lr", "section.field=value"),
    ("sampler.kind=euler", "one of"), ("train.epochs=1.5", "expects int"), ("model.anchor=maybe", "expects bool"),
])
def test_config_errors_name_the_problem(override, match):
    with pytest.raises(ValueError, match=match):
        Config().with_overrides([override])


def test_config_missing_file():
    with pytest.raises(FileNotFoundError, match="nope.toml"):
        Config.from_toml("nope.toml")


# ---- sampler ------------------------------------------------------------------------------------

def test_global_batch_sampler_splits_single_process_batches():
    single = list(GlobalBatchSampler(50, 8, seed=3))
    ranks = [list(GlobalBatchSampler(50, 8, rank=r, world_size=2, seed=3)) for r in range(2)]
    assert len(single) == 48  # 6 full batches; the incomplete one is dropped
    for b in range(6):
        assert single[8 * b:8 * b + 8] == ranks[0][4 * b:4 * b + 4] + ranks[1][4 * b:4 * b + 4]


# ---- training, checkpoints, resume --------------------------------------------------------------

def test_resume_after_kill_equals_uninterrupted(tmp_path):
    torch.set_num_threads(1)
    traj = _traj()  # 37 windows -> 4 steps/epoch of 8
    full = train(_cfg(), traj, traj, tmp_path / "full")
    assert full.steps == 8 and len(full.history) == 2 and "val_loss" in full.history[0]
    killed = train(_cfg(max_steps=6), traj, traj, tmp_path / "resumed")  # dies mid-epoch 2
    assert killed.steps == 6
    # the cut epoch is in metrics.jsonl, marked partial and out of the history a resume continues
    recs = [json.loads(line) for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in recs] == [1, 2] and recs[1]["partial_batches"] == 2 and recs[1]["step"] == 6
    assert len(killed.history) == 1
    resumed = train(_cfg(), traj, traj, tmp_path / "resumed")
    assert resumed.steps == 8
    recs = [json.loads(line) for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert recs == resumed.history and "partial_batches" not in recs[-1]
    for (name, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert resumed.history[-1]["train_loss"] == full.history[-1]["train_loss"]
    assert (tmp_path / "resumed" / "config.json").is_file()
    run = load_run(tmp_path / "resumed")
    model, cfg = run.model, run.config
    assert cfg == _cfg() and not model.training
    assert torch.equal(model.delta_scale, full.model.delta_scale)
    assert len(list_checkpoints(tmp_path / "resumed")) == 2  # keep last 2


def test_corrupt_checkpoint_falls_back_to_previous(tmp_path):
    torch.set_num_threads(1)
    run = tmp_path / "run"
    train(_cfg(epochs=2, val_every=5), _traj(), None, run)
    older, newest = list_checkpoints(run)
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # truncated by a crash
    with pytest.warns(RuntimeWarning, match="checksum mismatch"):
        state, path = load_latest(run)
    assert path == older and state["epoch"] == 1
    older.write_bytes(b"garbage")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(CheckpointError, match="no usable checkpoint"):
            load_latest(run)


def test_diffmd_train_from_bundled_data(tmp_path, capsys):
    torch.set_num_threads(1)
    overrides = ["model.num_layers=1", "model.hidden=8", "model.heads=2", "model.ffn=8",
                 "train.epochs=1", "train.batch_size=9", "train.val_every=1", "train.val_rollout_frames=2",
                 "train.val_rollout_starts=1", "sampler.eps=0.01", "sampler.atol=1e-3", "sampler.rtol=1e-3"]
    code = diffmd_main(["train", "--data", "ethanol", "--split", "30,20,10", "--out", str(tmp_path / "cli"),
                        *(a for o in overrides for a in ("--set", o))])
    assert code == 0
    rec = json.loads((tmp_path / "cli" / "metrics.jsonl").read_text().splitlines()[0])
    assert rec["step"] == 3 and {"val_loss", "val_armse", "val_armse_static", "val_nfe"} <= set(rec)


def test_a_cli_run_stopped_inside_its_first_epoch_still_writes_its_metrics_and_plot(tmp_path):
    torch.set_num_threads(1)
    overrides = ["model.num_layers=1", "model.hidden=8", "model.heads=2", "model.ffn=8", "train.epochs=1",
                 "train.batch_size=9", "train.max_steps=1", "train.val_rollout_frames=0"]
    assert diffmd_main(["train", "--data", "ethanol", "--split", "30,20,10", "--out", str(tmp_path / "cut"), "--quiet",
                        *(a for o in overrides for a in ("--set", o))]) == 0
    assert "partial_batches" in (tmp_path / "cut" / "metrics.csv").read_text().splitlines()[0]
    assert (tmp_path / "cut" / "loss.png").stat().st_size > 0


# ---- DDP ----------------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    res = train(_ddp_cfg(), _traj(), None, out)
    torch.save(res.model.state_dict(), os.path.join(out, f"rank{rank}.pt"))


def _ddp_cfg() -> Config:
    model = ModelConfig(**{**TINY_MODEL.__dict__, "dropout": 0.0})  # dropout masks cannot match across splits
    return Config(model=model, train=_cfg(epochs=1, val_every=5).train)


def test_two_process_gloo_ddp_equals_single_process(tmp_path):
    torch.set_num_threads(1)
    single = train(_ddp_cfg(), _traj(), None, tmp_path / "single")
    out = tmp_path / "ddp"
    out.mkdir()
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    r0, r1 = (torch.load(out / f"rank{r}.pt") for r in range(2))
    for name, ref in single.model.state_dict().items():
        assert torch.equal(r0[name], r1[name]), name  # ranks identical
        assert torch.allclose(r0[name], ref, rtol=1e-9, atol=1e-12), name  # == single process
    assert single.steps == 4


def test_sigma_data_is_measured_from_the_training_data_and_saved(tmp_path):
    torch.set_num_threads(1)
    traj = _traj(60)
    x = traj.positions
    expected = float(np.sqrt(np.mean((x[3:] - 2 * x[2:-1] + x[1:-2]) ** 2)))  # x(t+1) about x(t) + v(t)
    cfg = _cfg(max_steps=2).with_overrides(["model.sigma_data=-1"])
    res = train(cfg, traj, None, tmp_path / "run")
    saved = load_run(tmp_path / "run").config.model.sigma_data
    assert abs(saved - expected) < 1e-6 and abs(res.model.cfg.sigma_data - expected) < 1e-6
    assert saved != cfg.model.sigma_data


def test_resuming_with_another_model_config_is_a_clear_error(tmp_path):
    torch.set_num_threads(1)
    traj = _traj()
    train(_cfg(max_steps=2), traj, None, tmp_path / "run")
    with pytest.raises(ValueError, match=r"another \[model\] config \(differs in hidden\).*--no-resume"):
        train(_cfg(max_steps=4).with_overrides(["model.hidden=32"]), traj, None, tmp_path / "run")
    assert train(_cfg(max_steps=4), traj, None, tmp_path / "run").steps == 4  # same config resumes


def test_max_minutes_stops_training_and_a_resumed_run_counts_on(tmp_path):
    torch.set_num_threads(1)
    traj = _traj()
    res = train(_cfg(epochs=1000, max_minutes=1e-9), traj, None, tmp_path / "run")
    assert res.steps == 1  # the budget is checked between optimiser steps: one step, then a checkpoint
    state, _ = load_latest(tmp_path / "run")
    assert state["train_s"] > 0 and state["step"] == 1
    again = train(_cfg(epochs=1000, max_minutes=1e-9), traj, None, tmp_path / "run")
    assert again.steps == 1  # budget already spent before this call: no further step
    assert again.train_s >= state["train_s"] > 0  # the seconds of the first call count
    assert train(_cfg(epochs=1000, max_steps=3), traj, None, tmp_path / "run").steps == 3  # no time limit: trains on


def test_a_device_name_that_is_no_device_is_a_one_line_error():
    from diffmd_fast.training.distributed import resolve_device

    for name in ("gpu", "mps", "cuda:x"):
        with pytest.raises(ValueError, match="cpu or cuda|not a device"):
            resolve_device(name)
    assert resolve_device("cpu").type == "cpu"


def test_training_refuses_positions_that_are_not_in_angstrom(tmp_path):
    """A Trajectory built in Python with positions in nm (0.1x) is refused before anything is fitted."""
    import dataclasses

    traj = _traj()
    with pytest.raises(ValueError, match="training trajectory .* are they in nm"):
        train(_cfg(), dataclasses.replace(traj, positions=traj.positions * 0.1), None, tmp_path / "run")
