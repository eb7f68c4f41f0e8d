"""Streaming, resumable `diffmd generate`: a run SIGKILLed at a random frame and re-run with the same
command ends byte-identical to an uninterrupted run; finished and mismatched re-runs are told
apart; a one-structure start needs no reference trajectory; bad input is a one-line error that
leaves no output behind; memory stays flat over a long run."""
import dataclasses
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import ase.io
import numpy as np
import pytest
import torch
from ase import Atoms, units

import diffmd_fast
from kill_helpers import kill_at_random_moment
from diffmd_fast.cli import main
from diffmd_fast.data import bundled, load_trajectory
from diffmd_fast.training import run as runs

PACKAGE_PARENT = Path(diffmd_fast.__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore",
       "PYTHONPATH": f"{PACKAGE_PARENT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def _command(run, data, out, frames, *extra):
    return ["generate", "--checkpoint", str(run), "--data", str(data), "--frames", str(frames), "--out", str(out),
            "--quiet", "--device", "cpu", *extra]


def _cli(args, **kw):
    return subprocess.run([sys.executable, "-m", "diffmd_fast.cli", *args], capture_output=True, text=True, env=ENV,
                          timeout=600, **kw)


@pytest.mark.parametrize("suffix,model", [(".extxyz", "tiny_run"), (".traj", "tiny_run"), (".extxyz", "tiny_phase_run")])
def test_killed_generate_resumes_to_a_byte_identical_file(request, ethanol60, tmp_path, suffix, model, capsys):
    """A killed generate resumes to the bytes of an unbroken run, also for a phase-space model (whose saved
    state carries the velocities)."""
    tiny_run = request.getfixturevalue(model)
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    # long enough that the run cannot finish within max_delay_s of its first saved state on a quiet machine
    # (800 frames of the tiny model took under 1.5 s)
    frames, starts = 3000, ["--start", "10,40", "--chunk", "7"]
    killed = tmp_path / f"killed{suffix}"
    state = Path(f"{killed}.state.pt")
    cmd = [sys.executable, "-m", "diffmd_fast.cli", *_command(tiny_run, ethanol60, killed, frames, *starts)]
    status = kill_at_random_moment(cmd, ENV, tmp_path / "killed.log", state.exists, rng, what="state saved",
                                   wait_s=120, max_delay_s=1.5)
    assert status == -signal.SIGKILL
    stem = killed.with_suffix("")
    partial = [load_trajectory(stem.with_name(f"killed_t{t0}{suffix}"), dt_fs=0.5).num_frames for t0 in (10, 40)]
    assert 0 < min(partial) and max(partial) < frames, f"seed {seed}"
    resumed = _cli(_command(tiny_run, ethanol60, killed, frames, *starts))
    assert resumed.returncode == 0 and "resuming" in resumed.stderr, resumed.stderr[-2000:]
    assert main(_command(tiny_run, ethanol60, tmp_path / f"whole{suffix}", frames, *starts)) == 0
    for t0 in (10, 40):
        a, b = tmp_path / f"killed_t{t0}{suffix}", tmp_path / f"whole_t{t0}{suffix}"
        assert a.read_bytes() == b.read_bytes(), f"seed {seed}"
        assert len(ase.io.read(a, ":")) == frames
        assert load_trajectory(a).provenance["start_frame"] == t0  # what evaluate aligns the stream with
    capsys.readouterr()
    assert main(_command(tiny_run, ethanol60, killed, frames, *starts)) == 0
    assert "already complete" in capsys.readouterr().out
    assert main(_command(tiny_run, ethanol60, killed, frames - 1, *starts)) == 2
    assert f"records {frames} frames already" in capsys.readouterr().err
    assert main(_command(tiny_run, ethanol60, killed, frames, "--seed", "2", *starts)) == 2
    assert "other settings (seed=1)" in capsys.readouterr().err
    (tmp_path / f"killed_t40{suffix}").unlink()  # "complete" must mean on disk
    assert main(_command(tiny_run, ethanol60, killed, frames, *starts)) == 2
    assert "the output was removed or cut" in capsys.readouterr().err


def test_generate_from_one_structure_needs_no_reference(tiny_run, tmp_path, capsys):
    mol = tmp_path / "mol.xyz"
    ase.io.write(mol, Atoms(numbers=load_trajectory(bundled("ethanol")).numbers,
                            positions=load_trajectory(bundled("ethanol")).positions[100]))
    out = tmp_path / "one.extxyz"
    assert main(_command(tiny_run, mol, out, 6, "--temperature", "500")) == 0
    assert "Maxwell-Boltzmann at 500 K" in capsys.readouterr().err
    gen = load_trajectory(tmp_path / "one.npz")
    assert gen.positions.shape == (6, 9, 3) and np.isfinite(gen.positions).all()
    assert gen.provenance["start_frame"] is None and gen.provenance["thermostat_target_K"] == 500.0
    frames = ase.io.read(out, ":")
    assert [a.info["time_fs"] for a in frames] == [0.5 * k for k in range(1, 7)]
    # velocities stored with the structure are used as they are (no --temperature needed)
    moving = Atoms(numbers=gen.numbers, positions=gen.positions[-1])
    moving.set_velocities((gen.positions[-1] - gen.positions[-2]) / 0.5 / units.fs)
    ase.io.write(tmp_path / "moving.extxyz", moving)
    assert main(_command(tiny_run, tmp_path / "moving.extxyz", tmp_path / "cont.traj", 3)) == 0
    assert "from the structure" in capsys.readouterr().err
    assert len(ase.io.read(tmp_path / "cont.traj", ":")) == 3


def _foreign(tmp_path):
    path = tmp_path / "nf3.xyz"
    ase.io.write(path, Atoms("NF3", positions=[[0, 0, 0.5], [1.3, 0, 0], [-0.6, 1.1, 0], [-0.6, -1.1, 0]]))
    return path


def _still(tmp_path):
    path = tmp_path / "still.xyz"
    traj = load_trajectory(bundled("ethanol"))
    ase.io.write(path, Atoms(numbers=traj.numbers, positions=traj.positions[0]))
    return path


def _garbage(tmp_path):
    path = tmp_path / "broken.xyz"
    path.write_text("9\nnot a comment line\nC 0 0\n")
    return path


@pytest.mark.parametrize("make, extra, needle", [
    (_still, [], "no velocities; give a temperature"),
    (_foreign, ["--temperature", "300"], "contains N,F, which the checkpoint was not trained on"),
    (_garbage, ["--temperature", "300"], "cannot read a structure"),
    (lambda p: "ethanol", ["--temperature", "300"], "holds several frames; pick the start frame(s) with --start"),
])
def test_bad_structure_is_a_one_line_error_and_writes_nothing(tiny_run, tmp_path, make, extra, needle, capsys):
    out = tmp_path / "out" / "gen.extxyz"
    assert main(_command(tiny_run, make(tmp_path), out, 3, *extra)) == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("diffmd generate: error: ") and needle in lines[0], lines
    assert not out.parent.exists()


def test_checkpoint_without_data_stats_takes_the_reference_frame_time_and_asks_for_the_temperature(
        tiny_run, ethanol60, tmp_path, monkeypatch, capsys):
    """Checkpoints written before frame time, temperature and elements were recorded: with --start
    the reference trajectory's time step gives the frame time, and the thermostat's target must be
    given; a one-structure start cannot know the frame time."""
    old = dataclasses.replace(runs.load_run(tiny_run), data={})
    monkeypatch.setattr(runs, "load_run", lambda *a, **k: old)
    assert main(_command(tiny_run, ethanol60, tmp_path / "ref.extxyz", 3, "--start", "20")) == 2
    assert "--temperature K" in capsys.readouterr().err
    assert not (tmp_path / "ref.extxyz").exists()
    assert main(_command(tiny_run, ethanol60, tmp_path / "ref.extxyz", 3, "--start", "20", "--temperature", "450")) == 0
    prov = load_trajectory(tmp_path / "ref.npz").provenance
    assert prov["thermostat_target_K"] == 450.0 and prov["frame_fs"] == load_trajectory(ethanol60).dt_fs * old.config.train.stride
    mol = tmp_path / "mol.xyz"
    eth = load_trajectory(ethanol60)
    ase.io.write(mol, Atoms(numbers=eth.numbers, positions=eth.positions[0]))
    capsys.readouterr()
    assert main(_command(tiny_run, mol, tmp_path / "one.extxyz", 3, "--temperature", "300")) == 2
    assert "does not record its frame time" in capsys.readouterr().err
    assert not (tmp_path / "one.extxyz").exists()


@pytest.mark.slow
def test_memory_stays_flat_over_a_long_run(tiny_run, ethanol60, tmp_path):
    """20,000 frames of 8 molecules: an in-memory rollout would hold 20000 x 72 x 3 float64 (35 MB)
    plus the npz; the streamed run's peak RSS stays within 25 MB of a 500-frame run's."""
    starts = ["--start", "10,15,20,25,30,35,40,45", "--chunk", "500"]

    def peak_mb(frames, name):
        code = ("import resource, sys; from diffmd_fast.cli import main; rc = main(sys.argv[1:]); "
                "print('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024); sys.exit(rc)")
        proc = subprocess.run([sys.executable, "-c", code, *_command(tiny_run, ethanol60, tmp_path / name, frames,
                                                                      *starts)],
                              capture_output=True, text=True, env=ENV, timeout=1200)
        assert proc.returncode in (0, 3), proc.stderr[-2000:]  # 3: a guard stopped a molecule of the 5-step model
        return float(proc.stdout.split("PEAK")[-1])

    short, long = peak_mb(500, "short.extxyz"), peak_mb(20_000, "long.extxyz")
    assert long < short + 25.0, (short, long)
    frames = [sum(1 for line in open(p) if line.startswith("9")) for p in sorted(tmp_path.glob("long_t*.extxyz"))]
    assert len(frames) == 8 and max(frames) == 20_000, frames


def test_a_reference_at_another_time_step_gives_the_same_start(tiny_run, ethanol60, tmp_path):
    """The start window is one model frame time apart whatever the reference's time step: a reference
    saved twice as often gives the same window at the same moment; one whose step does not divide the
    frame time is refused in one line; sampling cannot change what the checkpoint fixed."""
    from diffmd_fast.data import Trajectory

    run = runs.load_run(tiny_run)
    ref = load_trajectory(ethanol60)
    x = ref.positions
    fine = np.empty((2 * len(x) - 1, *x.shape[1:]))
    fine[0::2], fine[1::2] = x, 0.5 * (x[1:] + x[:-1])  # every frame, and one between each pair
    finer = Trajectory(fine, ref.numbers, ref.dt_fs / 2, name="finer")
    assert run.frame_stride(finer) == 2 * run.frame_stride(ref)
    a, b = run.start_from_frames(ref, [30]).batch, run.start_from_frames(finer, [60]).batch
    for k in ("x_prev2", "x_prev", "x"):
        assert torch.allclose(getattr(a, k), getattr(b, k), atol=1e-6)
    odd = Trajectory(x, ref.numbers, ref.dt_fs * 1.5, name="odd")
    with pytest.raises(ValueError, match="does not divide the model's"):
        run.start_from_frames(odd, [30])
    with pytest.raises(ValueError, match="fixed by its checkpoint"):
        runs.load_run(tiny_run, "cpu", ["model.hidden=32"])
    assert runs.load_run(tiny_run, "cpu", ["sampler.eps=0.2", "rollout.thermostat=none"]).config.sampler.eps == 0.2
    with pytest.raises(FileNotFoundError, match="is a file"):
        runs.load_run(next(Path(tiny_run).glob("ckpt_*.pt")))


def test_a_finished_run_asked_for_more_frames_continues_to_the_same_file(tiny_run, ethanol60, tmp_path, capsys):
    """Raising --frames of a finished command continues it: the file then equals one run straight to
    the larger count, and its npz (which described the shorter run) is written anew."""
    starts = ["--start", "10,40", "--chunk", "7"]
    assert main(_command(tiny_run, ethanol60, tmp_path / "grown.npz", 30, *starts)) == 0
    assert main(_command(tiny_run, ethanol60, tmp_path / "grown.npz", 75, *starts)) == 0
    assert "resuming" in capsys.readouterr().err
    assert main(_command(tiny_run, ethanol60, tmp_path / "whole.npz", 75, *starts)) == 0
    for t0 in (10, 40):
        assert (tmp_path / f"grown_t{t0}.extxyz").read_bytes() == (tmp_path / f"whole_t{t0}.extxyz").read_bytes()
        assert load_trajectory(tmp_path / f"grown_t{t0}.npz").num_frames == 75


def test_a_run_stopped_while_writing_its_npz_writes_it_when_rerun(tiny_run, ethanol60, tmp_path, monkeypatch, capsys):
    """The sidecar is marked complete only after the npz is on disk: a run stopped in between resumes
    with no frame left to make and writes the npz, the same as an unbroken run's."""
    from diffmd_fast.dynamics.sink import FrameSink

    write_npz = FrameSink.write_npz

    def stopped(self, *args):
        raise KeyboardInterrupt

    monkeypatch.setattr(FrameSink, "write_npz", stopped)
    out = tmp_path / "gen.extxyz"
    assert main(_command(tiny_run, ethanol60, out, 20, "--start", "10")) != 0
    assert "interrupted" in capsys.readouterr().err and not (tmp_path / "gen.npz").exists()
    monkeypatch.setattr(FrameSink, "write_npz", write_npz)
    assert main(_command(tiny_run, ethanol60, out, 20, "--start", "10")) == 0
    assert "generated 0 frames" in (said := capsys.readouterr().out) and "after 20 frames of an earlier call, 20 in all" in said
    assert main(_command(tiny_run, ethanol60, tmp_path / "whole.extxyz", 20, "--start", "10")) == 0
    resumed, whole = load_trajectory(tmp_path / "gen.npz"), load_trajectory(tmp_path / "whole.npz")
    assert resumed.num_frames == 20 and np.array_equal(resumed.positions, whole.positions)
    capsys.readouterr()
    assert main(_command(tiny_run, ethanol60, out, 20, "--start", "10")) == 0
    assert "already complete" in capsys.readouterr().out
