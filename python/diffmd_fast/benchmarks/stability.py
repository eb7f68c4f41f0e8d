"""Long-rollout stability benchmark: stride x sampler x (stability, h(r) JSD, temperature, speed).

For each molecule and stride k (MD steps per model frame) a DiffMD is trained on the first 60 % of
the bundled trajectory (short-to-long split; resumable run directories under --runs, reused when
finished), then rolled out from --starts distinct test frames for --ps picoseconds with every
sampler setting in --samplers and the physics of the run's [rollout] config (momentum projection,
Langevin thermostat), and scored online, so memory stays flat whatever the length:

- stability (Fu et al. 2023, "Forces are not enough", MDsim): the first frame at which any bond
  (perceived in the start frame) differs from its mean length in the reference by more than
  0.5 Å; a rollout that never does is stable for its whole length;
- h(r): histogram of all interatomic distances (500 bins to 10 Å) over the stable frames of every
  rollout together, and its Jensen-Shannon divergence (base 2) against the reference trajectory's;
  also over the pairs 1, 2, 3 and 4 or more bonds apart alone (bond lengths, angles, torsions, the
  rest): a rollout that keeps its bonds but visits other conformers moves the 1-4 column;
- kinetic temperature of the implied velocities (x(t+1) - x(t)) / (k dt), centre of mass removed,
  3n - 6 degrees of freedom, over the stable frames, against the reference's training frames' at the
  same stride;
  and of the hydrogens and the heavy atoms apart (3 degrees of freedom per atom): a step that
  heats the light atoms and cools the heavy ones can hold the mean;
- VDOS overlap (evaluation.longrun.vdos_overlap, 1 = identical) of the first VDOS_FRAMES frames of
  every rollout stable that long (mean of their spectra) against the reference at the same stride:
  whether the dynamics has the reference's vibrational bands, which no static metric shows; beside it
  the reference's two halves against each other (evaluation.longrun.vdos_halves_overlap), how well
  the reference's own spectrum is known (a few ps of reference give a noisy one);
- simulated fs per wall second (all rollouts together, and per trajectory), score evaluations per frame;
- one-step error (benchmarks/one_step.py): RMS per atom of one model step from 512 evenly spaced test windows
  against the reference, beside that of the constant-velocity guess x(t) + v(t) (how much of the
  dynamics is learned) and of the Verlet step with the reference's own forces (a force field exact at
  x(t), at this frame time); and the network's gain over the prior alone on the same windows, with
  its standard error from the paired windows (a gain of a few per cent needs hundreds of windows).

The sampler "prior-only" rolls out the run's anchor alone (nn.score_net.AnchorScore): with
``model.bond_prior`` that is Verlet MD of the fitted valence force field (bonds, angles, torsions), the baseline
that shows what the network adds.

    diffmd bench stability --molecules ethanol --strides 1,2,4 --samplers heun1,heun2 --ps 10
    python benches/bench_stability.py --ps 100 --max-minutes 20

Each finished (molecule, stride, sampler) cell is cached as JSON under --runs, so a killed run
continues where it stopped; prints a markdown table and writes JSON (--json).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch

from .one_step import OneStep, one_step_errors
from .online_score import (VDOS_FRAMES, OnlineScore, reference_group_temperatures, reference_hr_halves,
                           reference_vdos_halves)

PRIOR_ONLY = "prior-only"  # heun1 on the anchor's exact score: the model without its network (AnchorScore)
SAMPLERS = {  # name: config overrides
    PRIOR_ONLY: ["sampler.kind=heun", "sampler.steps=1"],
    "heun1": ["sampler.kind=heun", "sampler.steps=1"],
    "heun2": ["sampler.kind=heun", "sampler.steps=2"],
    "heun4": ["sampler.kind=heun", "sampler.steps=4"],
    "dopri5": ["sampler.kind=ode", "sampler.method=dopri5"],
}


@dataclass
class Cell:
    molecule: str
    stride: int
    frame_fs: float
    sampler: str
    rollouts: int
    frames: int  # frames asked per rollout
    stable_rollouts: int  # rollouts stable for all their frames
    stability_ps_mean: float
    stability_ps_min: float
    h_r_jsd: float
    temperature_K: float
    temperature_ref_K: float
    temperature_error: float  # relative
    nfe_per_frame: float
    fs_per_s_total: float  # simulated fs per wall second, all rollouts together
    fs_per_s_per_trajectory: float
    wall_s: float
    physics: str
    training: str = ""  # the run's rollout-relevant training settings
    # RMS per atom (Å) of one model step from the start windows (the sampler alone, no rollout
    # physics) and of the constant-velocity guess x(t) + v(t), against the reference: how much of
    # the dynamics the network has learned, the root of its stability (NaN in older cached cells)
    one_step_error_A: float = float("nan")
    constant_velocity_error_A: float = float("nan")
    temperature_H_K: float = float("nan")  # hydrogens (3 dof each), and their reference at the same stride
    temperature_H_ref_K: float = float("nan")
    temperature_heavy_K: float = float("nan")  # every other atom
    temperature_heavy_ref_K: float = float("nan")
    vdos_overlap: float = float("nan")  # NaN when no rollout was stable for VDOS_FRAMES frames
    # h(r) JSD of the pairs 1, 2, 3 and >= 4 bonds apart (evaluation.longrun.SEPARATIONS): bonds,
    # angles, torsions (conformers), the rest; NaN in older cached cells
    h_r_jsd_1_2: float = float("nan")
    h_r_jsd_1_3: float = float("nan")
    h_r_jsd_1_4: float = float("nan")
    h_r_jsd_1_5: float = float("nan")
    # standard error (K) of the reference's hydrogen and heavy-atom temperatures: the spread of their
    # REF_BLOCKS block means over the reference run / sqrt(REF_BLOCKS). A small molecule's heavy atoms
    # swing by 10-15 % over 1 ps blocks, so "within 10 %" is only as sharp as this (NaN: not computed)
    temperature_H_ref_se_K: float = float("nan")
    temperature_heavy_ref_se_K: float = float("nan")
    # the one-step errors above over this many evenly spaced test windows (0: over the rollout starts, in
    # older cached cells), the prior alone's over the same windows, the network's gain over it (RMS prior -
    # RMS model, Å; > 0: the network's step is closer to the reference) with its standard error from the
    # paired windows, and the Verlet step with the reference's own forces (NaN without forces, and for
    # phase-space models): what a force field exact at x(t) gives at this frame time
    one_step_windows: int = 0
    one_step_prior_A: float = float("nan")
    one_step_gain_A: float = float("nan")
    one_step_gain_se_A: float = float("nan")
    one_step_reference_force_A: float = float("nan")
    # the reference's own first half against its second at the same stride and Welch segment (at most
    # half its frames): how closely the reference spectrum that vdos_overlap compares with is known
    vdos_reference_halves: float = float("nan")
    # the same for h(r): the JSD of the reference's first half against its second (all pairs)
    h_r_jsd_reference_halves: float = float("nan")


BENCH_RECIPE = "bench_recipe.json"  # beside a trained run: what it was trained from (_recipe)


def _recipe(molecule: str, args) -> dict:
    """What a run directory was trained from: the data, the config file's text (its SHA-256) and the
    training overrides."""
    import hashlib

    text = Path(args.config).read_bytes()
    return {"molecule": molecule, "config_sha256": hashlib.sha256(text).hexdigest(), "set": list(args.set)}


def _train_or_load(molecule: str, stride: int, args, trajs) -> Path:
    """The run directory of ``molecule`` at ``stride`` under --runs, trained unless it is there. Raises
    ValueError when it is there but was trained from other data, another config or other --set
    overrides (recorded beside it in BENCH_RECIPE; directories from before the record are reused)."""
    from ..config import Config
    from ..training.loop import train

    run = _checked_run(molecule, stride, args)
    if (run / "DONE").exists():
        return run
    cfg = Config.from_toml(args.config, overrides=[f"train.stride={stride}", *args.set])
    train(cfg, trajs.train, trajs.val, run, resume=True, progress=args.progress)
    (run / BENCH_RECIPE).write_text(json.dumps(_recipe(molecule, args), indent=1))
    (run / "DONE").write_text("trained\n")
    return run


def _checked_run(molecule: str, stride: int, args) -> Path:
    """The run directory of ``molecule`` at ``stride`` under --runs; ValueError when a trained one there
    was trained from other data, another config or other --set overrides (its BENCH_RECIPE)."""
    run = Path(args.runs) / f"{Path(molecule).stem}_s{stride}"
    recorded, want = run / BENCH_RECIPE, _recipe(molecule, args)
    have = json.loads(recorded.read_text()) if recorded.exists() else want  # runs from before the record: reused
    if have != want:
        diff = ", ".join(f"{k} {have.get(k)!r} -> {want[k]!r}" for k in want if have.get(k) != want[k])
        raise ValueError(f"--runs {args.runs}: {run.name} was trained otherwise ({diff}); its cells would not be "
                         f"this run's: give another --runs, or delete {run} to retrain")
    return run


def _cell_from_json(record: dict) -> "Cell":
    """A Cell from its cached JSON, where a figure not measured was written as null: NaN again."""
    floats = {f.name for f in fields(Cell) if f.type in (float, "float")}
    return Cell(**{k: (float("nan") if v is None and k in floats else v) for k, v in record.items()})


def _with_one_step(cell: "Cell", one: OneStep) -> "Cell":
    """``cell`` with the one-step figures of ``one``; a prior-only cell's own error is the prior's, its gain nil."""
    if cell.sampler == PRIOR_ONLY:
        one = replace(one, model_A=one.prior_A, gain_A=float("nan"), gain_se_A=float("nan"))
    return replace(cell, one_step_error_A=one.model_A, constant_velocity_error_A=one.constant_velocity_A,
                   one_step_windows=one.windows, one_step_prior_A=one.prior_A, one_step_gain_A=one.gain_A,
                   one_step_gain_se_A=one.gain_se_A, one_step_reference_force_A=one.reference_force_A)


def run_cell(name: str, stride: int, sampler: str, args, split, run_dir: Path, spectra_path: Path | None = None) -> Cell:
    from ..dynamics.fluctuation import friction_labels, step_fluctuation_in
    from ..dynamics.rollout import evenly_spaced_starts
    from ..evaluation.longrun import temperature_series
    from ..training.run import load_run

    full = load_run(run_dir, "cpu", SAMPLERS[sampler] + args.rollout_set)
    run = full.prior_alone() if sampler == PRIOR_ONLY else full
    test = split.test
    starts = evenly_spaced_starts(test.num_frames, 0, stride, args.starts)
    rollout_start = run.start_from_frames(test, starts)
    start, frame_fs = rollout_start.batch, rollout_start.frame_fs
    stepper = run.stepper(rollout_start, generator=torch.Generator().manual_seed(args.seed))
    corrections = stepper.corrections
    ref = split.reference.positions
    score = OnlineScore(ref, split.reference.numbers, len(starts), frame_fs, start.x)
    stepper.attach(score)
    frames = int(round(args.ps * 1000.0 / frame_fs))
    t0 = time.perf_counter()
    deadline = t0 + 60.0 * args.max_minutes
    # every rollout out of the stable region: nothing more to learn
    stepper.run(frames, progress=args.progress, desc=f"{name} stride {stride} {sampler}", frame_fs=frame_fs,
                stop=lambda s: time.perf_counter() >= deadline or bool((score.stable >= 0).all()))
    wall = time.perf_counter() - t0
    ran = stepper.t
    stable = score.stable_frames(ran)
    jsd = score.h_r_jsd(ref)
    temp = score.temp_sum / score.temp_count if score.temp_count else float("nan")
    # the training frames' implied-velocity temperature at the same stride, as the rollout's is measured (what
    # a checkpoint of positions records; a phase-space one records the instantaneous temperature instead)
    temp_ref = float(temperature_series(split.train.positions[::stride], split.train.numbers, frame_fs).mean())
    physics = ",".join(type(c).__name__ for c in corrections) or "none"
    fluctuation = step_fluctuation_in(corrections)
    if fluctuation is not None:
        labels = friction_labels(fluctuation.friction_per_fs, fluctuation.stretch_friction_per_fs)
        physics += " (step friction " + " ".join(f"{label} {g:.3g}" for label, g in labels.items()) + " /fs)"
    if run.config.rollout.thermostat != "none":
        physics += f" (tau {run.config.rollout.tau_fs:g} fs)"
    m, tc = run.config.model, run.config.train
    prior = getattr(getattr(run.model, "net", run.model), "bond_prior", None)  # the checkpoint's (older: no torsions)
    springs = len(prior.urey_bradley_springs()) if prior is not None else 0
    terms = (f" + {prior.dihedral_keys.numel()} torsions" if prior is not None and prior.dihedral_keys.numel() else ""
             ) + (f" + {springs} Urey-Bradley springs" if springs else "")
    training = (f"{'EDM sigma_data ' + format(m.sigma_data, '.4g') if m.sigma_data > 0 else 'gated anchor'}, "
                f"{'bond prior' + terms + ', ' if m.bond_prior else ''}input noise {tc.input_noise:g} A"
                f"{f' + shared {tc.input_noise_shared:g} A' if tc.input_noise_shared else ''}"
                f"{' (response targets)' if tc.input_noise_response else ''}, "
                f"unroll p {tc.unroll_prob:g} k {tc.unroll_steps}, "
                f"{run.path.parent.name} step {run.path.stem.split('_')[-1]}")
    ref_h, ref_heavy, se_h, se_heavy = reference_group_temperatures(ref, split.reference.numbers, stride, frame_fs)
    t_h, t_heavy = score.group_temperatures()
    cell = Cell(name, stride, frame_fs, sampler, len(starts), frames, int((stable >= frames).sum()),
                float(stable.mean() * frame_fs / 1000), float(stable.min() * frame_fs / 1000), jsd, temp, temp_ref,
                (temp - temp_ref) / temp_ref, stepper.total_nfe / max(ran, 1), ran * frame_fs * len(starts) / wall,
                ran * frame_fs / wall, wall, physics, training, float("nan"), float("nan"),
                t_h, ref_h, t_heavy, ref_heavy, score.vdos_overlap(ref, split.reference.numbers, stride),
                **{f"h_r_jsd_{k}": v for k, v in score.h_r_jsd_by_separation(ref).items()},
                temperature_H_ref_se_K=se_h, temperature_heavy_ref_se_K=se_heavy,
                vdos_reference_halves=score.reference_halves(ref, split.reference.numbers, stride),
                h_r_jsd_reference_halves=reference_hr_halves(ref))
    if spectra_path is not None and score.spectra is not None:
        freq, mean, reference = score.spectra
        spectra_path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(spectra_path, frequency_cm1=freq, vdos=mean, vdos_reference=reference)
    return _with_one_step(cell, one_step_errors(full, test, stride))


def spectra_file(cache: Path) -> Path:
    """Beside a cell's cached JSON: the npz of its rollouts' mean VDOS and the reference's (frequency_cm1,
    vdos, vdos_reference), for the plots."""
    return cache.with_name(cache.stem + "_vdos.npz")


def plot_spectra(cells: list[Cell], caches: list[Path], out: Path) -> list[Path]:
    """One figure per (molecule, stride) under ``out``: the VDOS of each sampler's rollouts (prior-only: the
    prior alone) over the reference's, with every curve's overlap in its label; cells without a saved
    spectrum (cached before it was kept) are left out. Returns the files written."""
    from ..evaluation.plots import plot_vdos

    groups: dict[tuple[str, int], list[tuple[Cell, Path]]] = {}
    for cell, cache in zip(cells, caches):
        if spectra_file(cache).exists():
            groups.setdefault((cell.molecule, cell.stride), []).append((cell, spectra_file(cache)))
    written = []
    for (molecule, stride), members in groups.items():
        named, ref = {}, None
        for cell, path in members:
            with np.load(path) as f:
                named[f"{cell.sampler} ({cell.vdos_overlap:.2f})"] = (f["frequency_cm1"], f["vdos"])
                ref = (f["frequency_cm1"], f["vdos_reference"])
        written.append(plot_vdos(named, ref, out / f"vdos_{molecule}_s{stride}.png"))
    return written


@dataclass
class _Split:
    train: object
    val: object
    test: object
    reference: object


def _split(molecule: str) -> _Split:
    from ..data import load_data, short_to_long_split

    traj = load_data(molecule)
    n_train, n_val = int(0.6 * traj.num_frames), int(0.2 * traj.num_frames)
    s = short_to_long_split(traj, train=n_train, val=n_val, test=traj.num_frames - n_train - n_val)
    return _Split(s.train, s.val, s.test, traj)


def _pm(se: float) -> str:
    return "" if math.isnan(se) else f" ± {se:.0f}"


def _gain(c: Cell) -> str:
    """'+0.00034 ± 0.00004' (Å) of a cell's one-step gain over the prior alone ('+3.1e-05 ± 3.2e-06' when
    the error is below 1e-5 Å); '–' where there is none."""
    if math.isnan(c.one_step_gain_A):
        return "–"
    if c.one_step_gain_se_A < 1e-5:
        return f"{c.one_step_gain_A:+.1e} ± {c.one_step_gain_se_A:.1e}"
    return f"{c.one_step_gain_A:+.5f} ± {c.one_step_gain_se_A:.5f}"


def markdown(cells: list[Cell]) -> str:
    head = ("| molecule | stride (fs) | sampler | NFE/frame | stable rollouts | stability ps (mean / min) | "
            "h(r) JSD (ref. halves) | JSD 1-2 / 1-3 / 1-4 / 1-5+ | T (K) | T ref (K) | T H / ref (K) | T heavy / ref (K) | "
            "VDOS overlap (ref. halves) | one-step error / const. velocity / ref. forces (Å) | one-step gain over prior (Å, > 0: closer) | "
            "fs per wall s (all / per traj.) | physics | training |")
    lines = [head, "|" + "---|" * 18]
    for c in cells:
        lines.append(f"| {c.molecule} | {c.stride} ({c.frame_fs:g}) | {c.sampler} | {c.nfe_per_frame:.1f} | "
                     f"{c.stable_rollouts}/{c.rollouts} | {c.stability_ps_mean:.2f} / {c.stability_ps_min:.2f} | "
                     f"{c.h_r_jsd:.4f} ({c.h_r_jsd_reference_halves:.4f}) | {c.h_r_jsd_1_2:.4f} / {c.h_r_jsd_1_3:.4f} / {c.h_r_jsd_1_4:.4f} / "
                     f"{c.h_r_jsd_1_5:.4f} | {c.temperature_K:.0f} | {c.temperature_ref_K:.0f} | "
                     f"{c.temperature_H_K:.0f} / {c.temperature_H_ref_K:.0f}{_pm(c.temperature_H_ref_se_K)} | "
                     f"{c.temperature_heavy_K:.0f} / {c.temperature_heavy_ref_K:.0f}{_pm(c.temperature_heavy_ref_se_K)} | "
                     f"{c.vdos_overlap:.2f} ({c.vdos_reference_halves:.2f}) | "
                     f"{c.one_step_error_A:.4f} / {c.constant_velocity_error_A:.4f} / {c.one_step_reference_force_A:.4f} | "
                     f"{_gain(c)} | "
                     f"{c.fs_per_s_total:.0f} / {c.fs_per_s_per_trajectory:.0f} | {c.physics} | {c.training} |")
    return "\n".join(lines)


def main(argv=None) -> list[Cell]:
    from importlib.resources import files

    from tqdm.auto import tqdm

    from ..data.writers import json_text, write_text

    ap = argparse.ArgumentParser(prog="diffmd bench stability", description=__doc__.split("\n\n")[0])
    ap.add_argument("--molecules", default="ethanol", help="bundled names or trajectory files, comma separated")
    ap.add_argument("--strides", default="1,2,4", help="MD steps per model frame, comma separated (the bond prior of long.toml needs frames under ~3 fs)")
    ap.add_argument("--samplers", default="heun1,heun2", help=f"comma separated, of {sorted(SAMPLERS)}")
    ap.add_argument("--ps", type=float, default=10.0, help="picoseconds to roll out from each start")
    ap.add_argument("--starts", type=int, default=8, help="rollouts per cell (distinct test frames)")
    ap.add_argument("--max-minutes", type=float, default=10.0, help="wall-time cap of one cell's rollout")
    ap.add_argument("--config", default=str(files("diffmd_fast") / "configs" / "long.toml"),
                    help="training config (default: configs/long.toml, the demo-size long-rollout model)")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE", help="training override")
    ap.add_argument("--rollout-set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                    help="rollout override, e.g. rollout.thermostat=none")
    ap.add_argument("--runs", default="runs/stability", help="training runs and cached cells")
    ap.add_argument("--json", default=None, help="output JSON (default: RUNS/stability.json)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--progress", action="store_true", help="progress bars of training and of each cell's rollout frames")
    args = ap.parse_args(argv)
    unknown = set(args.samplers.split(",")) - set(SAMPLERS)
    if unknown:
        raise ValueError(f"unknown sampler(s) {sorted(unknown)}; expected some of {sorted(SAMPLERS)}")
    cells, caches = [], []
    grid = [(m, int(k), s) for m in args.molecules.split(",") for k in args.strides.split(",")
            for s in args.samplers.split(",")]
    tag = "".join(f"_{o}" for o in args.rollout_set).replace("=", "-").replace("/", "-")
    tag += f"_seed{args.seed}" if args.seed != 1 else ""  # the rollouts' random stream
    from ..data.shipped import bundled_names, data_source

    missing = [m for m in args.molecules.split(",") if not data_source(m)[0].exists()]
    if missing:  # before any cell: a typo must not surface after hours of other molecules' cells
        raise FileNotFoundError(f"--molecules: trajectory file {missing[0]} does not exist (nor is it a bundled name: "
                                f"{', '.join(bundled_names())})")
    for molecule, stride, sampler in tqdm(grid, desc="cells", unit="cell"):
        name = Path(molecule).stem  # a bundled name, or a data file's name (never its path)
        cache = Path(args.runs) / "cells" / f"{name}_s{stride}_{sampler}_{args.ps:g}ps_{args.starts}{tag}.json"
        caches.append(cache)
        if cache.exists():
            _checked_run(molecule, stride, args)
            cell = _cell_from_json(json.loads(cache.read_text()))
            # figures of the reference that cells cached before them lack
            need_se = math.isnan(cell.temperature_heavy_ref_se_K)
            need_halves = math.isnan(cell.vdos_reference_halves) and not math.isnan(cell.vdos_overlap)
            need_hr_halves = math.isnan(cell.h_r_jsd_reference_halves)
            ref = _split(molecule).reference if need_se or need_halves or need_hr_halves else None
            if need_se:
                *_, se_h, se_heavy = reference_group_temperatures(ref.positions, ref.numbers, stride, cell.frame_fs)
                cell = replace(cell, temperature_H_ref_se_K=se_h, temperature_heavy_ref_se_K=se_heavy)
            if need_halves:  # its rollouts kept min(frames, VDOS_FRAMES) velocities for their spectra
                cell = replace(cell, vdos_reference_halves=reference_vdos_halves(
                    ref.positions, ref.numbers, stride, cell.frame_fs, min(cell.frames, VDOS_FRAMES)))
            if need_hr_halves:
                cell = replace(cell, h_r_jsd_reference_halves=reference_hr_halves(ref.positions))
            if need_halves or need_hr_halves:
                write_text(cache, json_text(asdict(cell)))
            if cell.one_step_windows == 0:  # cached when the one-step errors came from the rollout starts alone
                from ..training.run import load_run

                split = _split(molecule)
                full = load_run(_train_or_load(molecule, stride, args, split), "cpu", SAMPLERS[sampler] + args.rollout_set)
                cell = _with_one_step(cell, one_step_errors(full, split.test, stride))
                write_text(cache, json_text(asdict(cell)))
            cells.append(cell)
            continue
        split = _split(molecule)
        run_dir = _train_or_load(molecule, stride, args, split)
        cell = run_cell(name, stride, sampler, args, split, run_dir, spectra_file(cache))
        write_text(cache, json_text(asdict(cell)))
        cells.append(cell)
    table = markdown(cells)
    print(table)
    for path in plot_spectra(cells, caches, Path(args.runs) / "plots"):
        print(f"wrote {path}")
    args.json = args.json or str(Path(args.runs) / "stability.json")
    meta = {"machine": platform.platform(), "processor": platform.processor(), "threads": torch.get_num_threads(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "argv": argv, "args": vars(args)}
    write_text(args.json, json_text({"meta": meta, "cells": [asdict(c) for c in cells]}))
    print(f"wrote {args.json}")
    return cells
