"""The diffmd command end to end on bundled data with a tiny config, and its errors."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import ase.io
import numpy as np
from ase import Atoms
import pytest

from diffmd_fast.cli import main
from diffmd_fast.data import load_trajectory

TINY = ["model.num_layers=1", "model.hidden=16", "model.heads=2", "model.ffn=16", "model.dropout=0.0",
        "train.epochs=2", "train.max_steps=6", "train.batch_size=16", "train.val_rollout_frames=0",
        "sampler.atol=1e-3", "sampler.rtol=1e-3"]


def _sets(items):
    return [a for item in items for a in ("--set", item)]


def _cli(*args, check=True):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, "-m", "diffmd_fast.cli", *args], capture_output=True, text=True,
                          env=env, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"diffmd {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def _is_png(path) -> bool:
    with open(path, "rb") as f:
        return f.read(8) == b"\x89PNG\r\n\x1a\n" and os.path.getsize(path) > 2000


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "--data", "ethanol", "--out", str(out), "--split", "300,60,100", *_sets(TINY)]) == 0
    return out


def test_train_writes_run_directory(run_dir):
    names = {p.name for p in run_dir.iterdir()}
    assert {"config.json", "config.toml", "report.md"} <= names
    assert any(n.startswith("ckpt_") and n.endswith(".pt") for n in names)
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["model"]["hidden"] == 16 and cfg["train"]["max_steps"] == 6
    assert (run_dir / "config.toml").read_text().rstrip() in (run_dir / "report.md").read_text()  # the resolved one


def test_generate_evaluate_info(run_dir, tmp_path, capsys):
    gen = tmp_path / "gen.extxyz"
    assert main(["generate", "--checkpoint", str(run_dir), "--data", "ethanol", "--start", "5000", "--frames", "4",
                 "--out", str(gen), "--quiet"]) == 0
    assert "no measured step friction" in capsys.readouterr().err  # asked for by [rollout], not measured
    traj = load_trajectory(tmp_path / "gen.npz")
    assert traj.positions.shape == (4, 9, 3) and np.isfinite(traj.positions).all()
    assert traj.provenance["start_frame"] == 5000
    assert "StepFluctuation" not in traj.provenance["corrections"] and traj.provenance["step_friction_per_fs"] is None
    assert load_trajectory(gen, dt_fs=0.5).num_frames == 4  # the extxyz is readable by ASE
    metrics_path = tmp_path / "m.json"
    assert main(["evaluate", "--reference", "ethanol", "--generated", str(tmp_path / "gen.npz"),
                 "--json", str(metrics_path), "--plots", str(tmp_path / "plots")]) == 0
    m = json.loads(metrics_path.read_text())
    for key in ("armse", "armse_static", "stability_frames", "bond_violation_fraction", "distance_jsd"):
        assert key in m and np.isfinite(m[key])
    assert 0.0 < m["armse"] < 1.0 and m["frames"] == 4
    for png in ("rmsd_over_time.png", "distance_distributions.png", "rmsf.png"):
        assert _is_png(tmp_path / "plots" / png)
    capsys.readouterr()
    assert main(["info", str(run_dir)]) == 0
    assert "ckpt_" in capsys.readouterr().out
    assert main(["info", str(run_dir), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["step_friction_per_fs"].startswith("not measured")
    assert main(["info", "ethanol", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["atoms"] == 9 and info["time_step_fs"] == 0.5 and info["formula"] == "C2H6O"


def test_evaluate_long_run_metrics_on_ethanol_slices(tmp_path, capsys):
    """A 600-frame slice of the reference labelled as a run from frame 5800 (out of phase, and outlasting the
    reference by 399 frames), and a copy collapsed from its first frame: the long-run fields and PNGs."""
    from dataclasses import replace

    from diffmd_fast.data import load_data
    from diffmd_fast.data.writers import save_npz

    ref = load_data("ethanol")
    part = ref.slice(1, 601)
    save_npz(replace(part, provenance={"start_frame": 5800, "stride": 1}), tmp_path / "gen.npz")
    broken = part.positions.copy()
    broken[:, 8] += 2.0  # the hydroxyl H leaves its O from the first frame
    save_npz(replace(part, positions=broken, provenance={"start_frame": 5800}), tmp_path / "broken.npz")
    out = tmp_path / "m.json"
    assert main(["evaluate", "--reference", "ethanol", "--generated", str(tmp_path / "gen.npz"),
                 "--compare", f"broken={tmp_path / 'broken.npz'}", "--json", str(out),
                 "--plots", str(tmp_path / "plots")]) == 0
    printed = capsys.readouterr().out
    assert "h(r) MAE" in printed and "Nyquist limit 33356 cm⁻¹ (1000 THz)" in printed
    m = json.loads(out.read_text())
    assert m["frames"] == 600 and m["aligned_frames"] == 199 and m["stability_frames"] == 600
    assert m["stability_ps"] == pytest.approx(0.3)
    for key in ("h_r_mae", "h_r_jsd", "temperature_mean_K", "temperature_std_K", "temperature_ref_mean_K",
                "temperature_ref_std_K", "vdos_overlap", "armse", "armse_static", "rmsf_error", "distance_jsd"):
        assert np.isfinite(m[key]), key
    assert 0.0 <= m["h_r_jsd"] < 0.1 and 0.5 < m["vdos_overlap"] <= 1.0 and 300 < m["temperature_mean_K"] < 1000
    assert m["vdos_nyquist_cm1"] == pytest.approx(33356.41, abs=0.01) and m["vdos_nyquist_THz"] == 1000.0
    b = m["models"]["broken"]
    assert b["stability_frames"] == 0 and b["h_r_mae"] is None and b["vdos_overlap"] is None
    for png in ("temperature.png", "h_r.png", "vdos.png", "rmsd_over_time.png"):
        assert _is_png(tmp_path / "plots" / png)
    # a --compare run that records no start frame (one made from a lone structure) is not phase-aligned
    save_npz(replace(part, provenance={}), tmp_path / "lone.npz")
    assert main(["evaluate", "--reference", "ethanol", "--generated", str(tmp_path / "gen.npz"),
                 "--compare", f"lone={tmp_path / 'lone.npz'}", "--json", str(out)]) == 0
    assert "--compare lone records no start frame" in capsys.readouterr().out
    lone = json.loads(out.read_text())["models"]["lone"]
    assert lone["aligned_frames"] == 0 and "armse" not in lone and lone["h_r_jsd"] is not None


def test_simulate_a_few_steps(tmp_path):
    out = tmp_path / "water.npz"
    assert main(["simulate", "O", "--out", str(out), "--frames", "5", "--equilibration", "2",
                 "--temperature", "300", "--quiet", "--extxyz"]) == 0
    traj = load_trajectory(out)
    assert traj.num_frames == 5 and traj.formula == "H2O" and traj.provenance["method"] == "GFN2-xTB"
    assert (tmp_path / "water.extxyz").is_file()


@pytest.mark.parametrize("args,needle", [
    (["info", "no/such/file.npz"], "does not exist"),
    (["train", "--data", "missing.npz", "--out", "x"], "does not exist"),
    (["train", "--data", "ethanol", "--out", "x", "--set", "model.hidden=abc"], "expects int"),
    (["train", "--data", "ethanol", "--out", "x", "--set", "nosuch.field=1"], "unknown section"),
    (["generate", "--checkpoint", "no_run_dir", "--data", "ethanol", "--start", "5", "--frames", "2", "--out", "g.npz"],
     "does not exist"),
    (["simulate", "CCO", "--out", "x.txt"], "must end in .npz"),
    (["evaluate", "--reference", "ethanol", "--generated", "nope.npz", "--json", "m.json"], "does not exist"),
    (["train", "--data", "ethanol", "--out", "x", "--split", "0.6,0.2,0.2"], "not fractions"),
    (["simulate", "bohr.xyz", "--out", "x.npz"], "Bohr"),
    (["bench", "stability", "--molecules", "nope.npz"], "does not exist"),
])
def test_bad_input_is_one_line_error(args, needle, tmp_path):
    ase.io.write(tmp_path / "bohr.xyz", Atoms("OH2", positions=[[0, 0, 0], [1.81, 0, 0], [-0.45, 1.76, 0]]))  # water in Bohr
    proc = subprocess.run([sys.executable, "-m", "diffmd_fast.cli", *args], capture_output=True, text=True,
                          cwd=tmp_path, env={**os.environ, "PYTHONWARNINGS": "ignore"}, timeout=120)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in proc.stderr, proc.stderr


def test_usage_error_exits_nonzero_without_traceback():
    proc = _cli("generate", "--frames", "x", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "usage:" in proc.stderr


@pytest.mark.parametrize("command", ["demo", "simulate", "train", "generate", "evaluate", "info", "bench"])
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert len(capsys.readouterr().out) > 200


@pytest.mark.skipif(shutil.which("diffmd") is None, reason="console script not installed (source checkout)")
def test_console_script_installed():
    proc = subprocess.run(["diffmd", "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "simulate" in proc.stdout


def test_generate_shards_starts_over_torchrun_ranks(run_dir, tmp_path):
    """2 gloo ranks each roll out their share of the starts; the files match a single-process run
    (to the ODE tolerance: the adaptive step is shared by the molecules of one batch). The Langevin
    thermostat is off: it draws the noise of a whole batch from one stream, so with it a sharded run
    is statistically equivalent to the single run, not equal."""
    common = ["generate", "--checkpoint", str(run_dir), "--data", "ethanol", "--start-frame", "4000,4500,5000",
              "--frames", "3", "--quiet", "--device", "cpu", "--set", "rollout.thermostat=none"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                           "--master-port", "29533", "-m", "diffmd_fast.cli", *common, "--out",
                           str(tmp_path / "ddp.npz")], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert main([*common, "--out", str(tmp_path / "single.npz")]) == 0
    for t0 in (4000, 4500, 5000):
        a = load_trajectory(tmp_path / f"ddp_t{t0}.npz").positions
        b = load_trajectory(tmp_path / f"single_t{t0}.npz").positions
        assert a.shape == (3, 9, 3) and np.abs(a - b).max() < 1e-3


def test_demo_runs_the_long_rollouts_and_reports_them(tmp_path, capsys):
    out = tmp_path / "demo"
    code = main(["demo", "--out", str(out), *_sets(TINY + ["sampler.kind=heun", "train.calibration_frames=48"]), "--baselines", "static",
                 "--frames", "4", "--starts", "2", "--long-ps", "0.02", "--quiet"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "long rollouts: 2 starts x 0.02 ps (10 frames of 2 fs)" in printed  # long.toml: stride 4
    report = (out / "report.md").read_text()
    assert "## Long rollouts" in report and "long_temperature.png" in report and "vs xTB" in report
    for name in ("long_h_r.png", "long_temperature.png", "long_vdos.png"):
        assert _is_png(out / "plots" / name), name
    gen = load_trajectory(out / "trajectories" / "diffmd_long.extxyz")
    assert 1 <= gen.num_frames <= 20 and np.isfinite(gen.positions).all()


def test_evaluate_a_run_without_start_frame_gives_the_long_run_metrics(tmp_path):
    from diffmd_fast.data import Trajectory, bundled, save_npz

    ref = load_trajectory(bundled("ethanol"))
    gen = Trajectory(positions=ref.positions[100:400], numbers=ref.numbers, dt_fs=0.5, name="from-structure",
                     provenance={"stride": 1})  # as a one-structure `diffmd generate` writes: no start frame
    save_npz(gen, tmp_path / "gen.npz")
    proc = _cli("evaluate", "--reference", "ethanol", "--generated", str(tmp_path / "gen.npz"),
                "--json", str(tmp_path / "m.json"))
    assert "phase-aligned metrics skipped" in proc.stdout
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["aligned_frames"] == 0 and m["stability_frames"] == 300 and m["h_r_jsd"] < 0.05
    assert 300 < m["temperature_mean_K"] < 1000


def test_the_report_shows_the_resolved_configuration(tmp_path):
    """report.md prints the run's config.toml, with what training measured (model.sigma_data), not the
    configuration asked for (sigma_data = -1: measure it)."""
    from types import SimpleNamespace

    from diffmd_fast.cli.report import write_train_report
    from diffmd_fast.config import Config

    asked = Config.from_toml(None, ["model.sigma_data=-1.0"])
    resolved = Config.from_toml(None, ["model.sigma_data=0.0231"])
    (tmp_path / "config.toml").write_text(resolved.to_toml())
    report = write_train_report(SimpleNamespace(out_dir=tmp_path, epochs=1, steps=5, history=[]), asked, []).read_text()
    assert "sigma_data = 0.0231" in report and "sigma_data = -1.0" not in report


def test_info_says_when_a_time_step_is_assumed(tmp_path, capsys):
    """An MD17 npz stores no time step: info prints the assumed 0.5 fs as an assumption, not as a fact."""
    import numpy as np

    from diffmd_fast.data import bundled, load_trajectory

    eth = load_trajectory(bundled("ethanol"))
    np.savez(tmp_path / "md17.npz", R=eth.positions[:10], z=eth.numbers)
    assert main(["info", str(tmp_path / "md17.npz"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["time_step_fs"].startswith("0.5 (assumed")


def test_info_names_the_step_friction_per_element_and_per_x_h_stretch():
    from diffmd_fast.cli.info import _step_friction

    record = {"step_friction": {"friction_per_fs": {"1": 0.01, "6": 0.02}, "stretch_friction_per_fs": {"6": 0.03, "8": 0.04}}}
    assert _step_friction(record) == {"H": 0.01, "C": 0.02, "C-H stretch": 0.03, "O-H stretch": 0.04}
    assert _step_friction({"step_friction": {"friction_per_fs": {"1": 0.01}}}) == {"H": 0.01}  # measured per element only
