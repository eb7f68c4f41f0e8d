"""`diffmd evaluate` takes the reference at the generated frames' own times (extxyz / .traj per-frame
time_fs, npz frame_fs), refuses frame times it cannot match and atoms in another order, and keeps both
spectra at the generated frame time, below its Nyquist limit.

The generated files are the reference's own frames at the generated times (a perfect rollout), written
as `diffmd generate` writes them, so no model is trained."""
from __future__ import annotations

import json
import ase.io
import numpy as np
import pytest
from ase import Atoms

from diffmd_fast.cli import main
from diffmd_fast.data import Trajectory, load_data, save_npz
from diffmd_fast.evaluation import longrun

START, STRIDE, FRAMES = 1000, 4, 40  # 0.5 fs reference frames, 2 fs generated ones
SWAP_H = [0, 1, 2, 8, 4, 5, 6, 7, 3]  # ethanol C C O H H H H H H: a methyl H and the hydroxyl H swapped


@pytest.fixture(scope="module")
def ref():
    return load_data("ethanol")


def _perfect(ref, stride: int = STRIDE, frames: int = FRAMES) -> np.ndarray:
    """(frames, N, 3) Å: the reference at start + stride, start + 2 stride, ...: what a perfect rollout gives."""
    return ref.positions[START + stride: START + (frames + 1) * stride: stride]


def _write_ase(path, positions: np.ndarray, numbers: np.ndarray, frame_fs: float | None):
    """extxyz or .traj as the rollout sink writes them: frame t carries time_fs = (t + 1) × frame_fs."""
    info = (lambda t: {}) if frame_fs is None else (lambda t: {"time_fs": (t + 1) * frame_fs})
    ase.io.write(path, [Atoms(numbers=numbers, positions=p, info=info(t)) for t, p in enumerate(positions)])
    return path


def _write(tmp_path, ref, suffix: str, positions=None, frame_fs: float | None = 2.0, name: str = "gen"):
    positions = _perfect(ref) if positions is None else positions
    path = tmp_path / f"{name}.{suffix}"
    if suffix == "npz":  # the generator's provenance: the frame time, no stride
        return save_npz(Trajectory(positions=positions, numbers=ref.numbers, dt_fs=frame_fs,
                                   provenance={"frame_fs": frame_fs, "start_frame": START}), path)
    return _write_ase(path, positions, ref.numbers, frame_fs)


def _evaluate(tmp_path, gen, *extra) -> tuple[int, dict | None]:
    out = tmp_path / "m.json"
    out.unlink(missing_ok=True)
    code = main(["evaluate", "--reference", "ethanol", "--generated", str(gen), "--start", str(START),
                 "--json", str(out), *extra])
    return code, json.loads(out.read_text()) if code == 0 else None


def _one_line_error(capsys, code: int) -> str:
    assert code == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in lines[0], lines
    return lines[0]


@pytest.mark.parametrize("suffix", ["extxyz", "traj", "npz"])
def test_reference_is_taken_at_the_recorded_frame_time(tmp_path, ref, suffix):
    code, m = _evaluate(tmp_path, _write(tmp_path, ref, suffix))
    assert code == 0
    assert m["stride"] == STRIDE and m["dt_fs"] == pytest.approx(2.0) and m["aligned_frames"] == FRAMES
    assert m["armse"] < 1e-6  # the reference's own frames, compared at their own times
    assert m["mobility"] == pytest.approx(m["mobility_ref"], abs=1e-6)
    at_2fs = longrun.temperature_series(ref.positions[::STRIDE], ref.numbers, 2.0)
    assert m["temperature_ref_mean_K"] == pytest.approx(float(at_2fs.mean()))
    assert m["vdos_nyquist_cm1"] == pytest.approx(longrun.nyquist(2.0)[0])
    assert m["vdos_peak_cm1"] <= m["vdos_nyquist_cm1"] and m["vdos_ref_peak_cm1"] <= m["vdos_nyquist_cm1"]


def test_a_file_without_frame_times_takes_the_stride_given(tmp_path, ref):
    gen = _write(tmp_path, ref, "extxyz", frame_fs=None)
    code, m = _evaluate(tmp_path, gen, "--stride", str(STRIDE))
    assert code == 0 and m["stride"] == STRIDE and m["armse"] < 1e-6 and m["dt_fs"] == pytest.approx(2.0)
    code, m = _evaluate(tmp_path, gen)  # nothing says how far apart the frames are: the stride stays 1
    assert code == 0 and m["stride"] == 1 and m["dt_fs"] is None and m["vdos_overlap"] is None


@pytest.mark.parametrize("frame_fs, extra, needle", [
    (0.75, [], "1.5 times the reference ethanol's time step 0.5 fs"),
    (0.25, [], "less than the reference ethanol's time step 0.5 fs"),
    (2.0, ["--stride", "2"], "--stride 2 contradicts"),
])
def test_frame_times_that_do_not_fit_the_reference_are_refused(tmp_path, ref, capsys, frame_fs, extra, needle):
    gen = _write(tmp_path, ref, "extxyz", positions=_perfect(ref, stride=1), frame_fs=frame_fs)
    assert needle in _one_line_error(capsys, _evaluate(tmp_path, gen, *extra)[0])


def test_compared_trajectories_must_share_the_frame_time(tmp_path, ref, capsys):
    gen = _write(tmp_path, ref, "extxyz")
    other = _write(tmp_path, ref, "extxyz", positions=_perfect(ref, stride=2), frame_fs=1.0, name="other")
    line = _one_line_error(capsys, _evaluate(tmp_path, gen, "--compare", f"egnn={other}")[0])
    assert "--compare egnn" in line and "evaluate them separately" in line


def test_compared_trajectories_must_share_the_start(tmp_path, ref, capsys):
    """One start frame scores every trajectory: one that records another is refused, not scored against
    the wrong reference frames."""
    gen = _write(tmp_path, ref, "npz")
    other = save_npz(Trajectory(positions=_perfect(ref), numbers=ref.numbers, dt_fs=2.0,
                                provenance={"frame_fs": 2.0, "start_frame": START - 400}), tmp_path / "other.npz")
    line = _one_line_error(capsys, _evaluate(tmp_path, gen, "--compare", f"late={other}")[0])
    assert "--compare late starts at reference frame 600" in line and "same start" in line
    same = save_npz(Trajectory(positions=_perfect(ref), numbers=ref.numbers, dt_fs=2.0,
                               provenance={"frame_fs": 2.0, "start_frame": START}), tmp_path / "same.npz")
    code, out = _evaluate(tmp_path, gen, "--compare", f"same={same}")
    assert code == 0 and out is not None


def test_atoms_sorted_by_element_are_refused_as_another_order(tmp_path, ref, capsys):
    order = np.argsort(ref.numbers, kind="stable")
    gen = _write_ase(tmp_path / "sorted.extxyz", _perfect(ref)[:, order], ref.numbers[order], 2.0)
    line = _one_line_error(capsys, _evaluate(tmp_path, gen)[0])
    assert "in another order: atom 0 is H, in the reference C" in line and "not the same molecule" not in line


def test_swapped_atoms_of_one_element_are_refused_with_the_permutation(tmp_path, ref, capsys):
    gen = _write(tmp_path, ref, "extxyz", positions=_perfect(ref)[:, SWAP_H])
    line = _one_line_error(capsys, _evaluate(tmp_path, gen)[0])
    assert "atom order looks permuted" in line and "8->3, 3->8" in line


def test_an_imperfect_rollout_in_the_reference_order_is_not_called_permuted(tmp_path, ref):
    noisy = _perfect(ref) + np.random.default_rng(0).normal(0.0, 0.05, size=_perfect(ref).shape)
    code, m = _evaluate(tmp_path, _write(tmp_path, ref, "extxyz", positions=noisy))
    assert code == 0 and 0.05 < m["armse"] < 0.15


def test_vdos_and_its_plot_stay_below_the_generated_nyquist_limit(tmp_path, ref, monkeypatch):
    from diffmd_fast.evaluation import plots

    drawn = []
    real = plots.plot_vdos

    def spy(named, reference, path, *, nyquist_cm1=None):
        drawn.append((named, reference, nyquist_cm1))
        return real(named, reference, path, nyquist_cm1=nyquist_cm1)

    monkeypatch.setattr(plots, "plot_vdos", spy)
    gen = _write(tmp_path, ref, "extxyz", positions=_perfect(ref, frames=400))  # 0.8 ps of 2 fs frames
    code, m = _evaluate(tmp_path, gen, "--plots", str(tmp_path / "plots"))
    assert code == 0 and (tmp_path / "plots" / "vdos.png").is_file()
    (named, (f_ref, _), nyquist), = drawn
    assert nyquist == pytest.approx(longrun.nyquist(2.0)[0]) and f_ref.max() <= nyquist * (1 + 1e-9)
    assert all(f.max() <= nyquist * (1 + 1e-9) for f, _ in named.values())
    assert m["vdos_overlap"] > 0.8 and m["vdos_peak_cm1"] <= nyquist
