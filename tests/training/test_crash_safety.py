"""Crash safety: a training process SIGKILLed at a random moment resumes to the same weights as an
uninterrupted run (also when the newest checkpoint was truncated by the crash); unusable checkpoints
fail loudly; output writers never leave a partial file at the target path."""
import json
import os
import random
import signal
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import diffmd_fast
from kill_helpers import kill_at_random_moment
from diffmd_fast.training.checkpoint import CheckpointError, list_checkpoints
from diffmd_fast.cli import common
from diffmd_fast.config import Config
from diffmd_fast.data import bundled, load_trajectory, save_npz, write_extxyz
from diffmd_fast.data import writers
from diffmd_fast.training.loop import train

# the child must import the very package under test (installed, or the source tree in development):
# a source tree without the compiled module would silently train on the reference backend
PACKAGE_PARENT = Path(diffmd_fast.__file__).resolve().parents[1]
EPOCHS = 150  # ~4 steps each: several seconds of training, so the kill lands mid-run
OVERRIDES = [f"train.epochs={EPOCHS}", "train.batch_size=8", "train.val_every=100000", "train.val_rollout_frames=0",
             "train.dtype=float64", "train.device=cpu", "train.keep_checkpoints=2", "model.num_layers=1",
             "model.hidden=8", "model.heads=2", "model.ffn=16", "model.dropout=0.1", "model.max_z=10",
             "model.num_fourier=4"]


def _data(tmp_path: Path) -> Path:
    path = tmp_path / "eth41.npz"  # the CLI's --split 40,0,1 trains on frames 0-39: 37 windows, 4 steps/epoch
    save_npz(load_trajectory(bundled("ethanol")).slice(0, 41), path)
    return path


def _kill_mid_run(data: Path, run: Path, rng: random.Random) -> int:
    """Start `diffmd train` (python -m diffmd_fast.cli train), SIGKILL it a random moment after its 2nd checkpoint."""
    path = f"{PACKAGE_PARENT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    cmd = [sys.executable, "-m", "diffmd_fast.cli", "train", "--data", str(data), "--split", "40,0,1", "--out", str(run),
           *(a for o in OVERRIDES for a in ("--set", o))]
    return kill_at_random_moment(cmd, env, run.with_name(run.name + ".log"), lambda: len(list_checkpoints(run)) >= 2,
                                 rng, what="checkpoint", wait_s=60, max_delay_s=1.0)


def test_sigkill_at_random_moment_then_resume_equals_uninterrupted(tmp_path, capsys):
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    data, run = _data(tmp_path), tmp_path / "killed"
    assert _kill_mid_run(data, run, rng) == -signal.SIGKILL, f"seed {seed}"
    older, newest = list_checkpoints(run)[-2:]
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 3])  # the crash truncated it
    torch.set_num_threads(1)
    cfg, traj = Config.from_toml(None, OVERRIDES), load_trajectory(data).slice(0, 40)
    with pytest.warns(RuntimeWarning, match=f"{newest.name}: checksum mismatch"):
        resumed = train(cfg, traj, None, run)
    assert f"resumed from {older}" in capsys.readouterr().out  # not silently restarted from scratch
    ref = train(cfg, traj, None, tmp_path / "uninterrupted")
    assert resumed.epochs == ref.epochs == EPOCHS and resumed.steps == ref.steps, f"seed {seed}"
    for (name, a), b in zip(ref.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), f"{name} differs after kill+resume (seed {seed})"
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in ref.history]


def test_all_checkpoints_corrupt_is_a_clear_error(tmp_path):
    torch.set_num_threads(1)
    cfg = Config.from_toml(None, OVERRIDES).with_overrides(["train.epochs=2"])
    traj, run = load_trajectory(_data(tmp_path)), tmp_path / "run"
    train(cfg, traj, None, run)
    paths = list_checkpoints(run)
    assert len(paths) == 2
    paths[0].write_bytes(b"not a checkpoint")
    paths[1].write_bytes(paths[1].read_bytes()[:100])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(CheckpointError, match="no usable checkpoint") as err:
            train(cfg, traj, None, run)
    assert all(p.name in str(err.value) for p in paths)


def test_no_usable_checkpoint_says_why_in_one_line(tmp_path, capsys):
    """The error's one line names each file and its problem (the command line shows only the first line),
    and no warning precedes it: there is no older checkpoint to fall back on."""
    from diffmd_fast.cli import main
    from diffmd_fast.training.checkpoint import load_latest

    run = tmp_path / "r2"
    run.mkdir()
    (run / "ckpt_000000005.pt").write_bytes(b"not a checkpoint")
    (run / "ckpt_000000005.pt.sha256").write_text("0" * 64)
    (run / "ckpt_000000010.pt").write_bytes(b"truncated")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(CheckpointError) as err:
            load_latest(run)
    assert str(err.value) == (f"no usable checkpoint in {run}: ckpt_000000010.pt: checksum file "
                              "ckpt_000000010.pt.sha256 is missing; ckpt_000000005.pt: checksum mismatch (file "
                              "truncated or corrupted)")
    capsys.readouterr()
    assert main(["generate", "--checkpoint", str(run), "--data", "ethanol", "--start", "400", "--frames", "2",
                 "--out", str(tmp_path / "g.extxyz"), "--quiet", "--device", "cpu"]) == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert lines == [f"diffmd generate: error: {err.value}"]


# ---- atomic output writers ------------------------------------------------------------------------

def _half_then_fail(path_or_handle, text: bytes) -> None:
    if hasattr(path_or_handle, "write"):
        path_or_handle.write(text[: len(text) // 2])
        path_or_handle.flush()
    else:
        Path(path_or_handle).write_bytes(text[: len(text) // 2])
    raise OSError("disk full (simulated)")


@pytest.fixture
def small_traj():
    return load_trajectory(bundled("ethanol")).slice(0, 3)


@pytest.mark.parametrize("old", [None, b"old content"])
def test_save_npz_never_leaves_a_partial_target(tmp_path, monkeypatch, small_traj, old):
    target = tmp_path / "out.npz"
    if old is not None:
        target.write_bytes(old)
    monkeypatch.setattr(writers.np, "savez_compressed", lambda fh, **a: _half_then_fail(fh, b"PK\x03\x04" * 64))
    with pytest.raises(OSError, match="simulated"):
        save_npz(small_traj, target)
    assert (target.read_bytes() == old) if old is not None else not target.exists()
    assert [p.name for p in tmp_path.iterdir()] == ([target.name] if old is not None else [])


@pytest.mark.parametrize("old", [None, b"old content"])
def test_write_extxyz_never_leaves_a_partial_target(tmp_path, monkeypatch, small_traj, old):
    target = tmp_path / "out.extxyz"
    if old is not None:
        target.write_bytes(old)
    monkeypatch.setattr(writers.ase.io, "write", lambda path, frames, format: _half_then_fail(path, b"9\nframe\n" * 40))
    with pytest.raises(OSError, match="simulated"):
        write_extxyz(small_traj, target)
    assert (target.read_bytes() == old) if old is not None else not target.exists()
    assert [p.name for p in tmp_path.iterdir()] == ([target.name] if old is not None else [])


def test_write_json_keeps_the_old_file_when_a_write_dies(tmp_path, monkeypatch):
    target = common.write_json({"armse": 0.1}, tmp_path / "results.json")
    real_write_text = Path.write_text

    def dying_write_text(self, text, *a, **k):
        real_write_text(self, text[: len(text) // 2], *a, **k)
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(Path, "write_text", dying_write_text)
    with pytest.raises(OSError, match="simulated"):
        common.write_json({"armse": 0.2, "rows": list(range(100))}, target)
    monkeypatch.undo()
    assert json.loads(target.read_text()) == {"armse": 0.1}
    assert not (tmp_path / "fresh.json").exists()


def test_written_files_round_trip_after_a_failed_attempt(tmp_path, monkeypatch, small_traj):
    """After a failure the next write still succeeds and is complete (no stale temp file in the way)."""
    target = tmp_path / "out.npz"
    with monkeypatch.context() as m:
        m.setattr(writers.np, "savez_compressed", lambda fh, **a: _half_then_fail(fh, b"x" * 100))
        with pytest.raises(OSError):
            save_npz(small_traj, target)
    save_npz(small_traj, target)
    assert np.array_equal(load_trajectory(target).positions, small_traj.positions)
