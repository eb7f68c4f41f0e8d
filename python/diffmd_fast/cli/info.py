"""Show what a trajectory file or a training run directory holds.

    diffmd info ethanol                 # a bundled trajectory
    diffmd info data.npz                # frames, atoms, formula, time step (fs), units, cell, provenance
    diffmd info iso17.db@3              # one molecule of a database holding several
    diffmd info runs/ethanol            # checkpoints, epochs, resolved config, what it was trained on
    diffmd info --checkpoint runs/ethanol   # the same
"""
from __future__ import annotations

import json
from pathlib import Path

NAME = "info"
HELP = "what a data file or checkpoint holds"


def add_arguments(p):
    p.add_argument("path", metavar="FILE_OR_RUN_DIR", nargs="?", default=None,
                   help="trajectory file, bundled name, or training run directory")
    p.add_argument("--checkpoint", metavar="RUN_DIR", default=None,
                   help="a training run directory: also what it was trained on (atom environments, bond, angle and "
                        "torsion types, molecule count)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    from .common import add_data_options

    add_data_options(p)


def run(args) -> int:
    if (args.path is None) == (args.checkpoint is None):
        raise ValueError("give one FILE_OR_RUN_DIR or --checkpoint RUN_DIR")
    path = Path(args.path or args.checkpoint)
    if args.checkpoint is not None and not path.is_dir():
        raise FileNotFoundError(f"--checkpoint {path}: not a training run directory")
    info = _run_info(path) if path.is_dir() else _data_info(args.path, args)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
    else:
        for key, value in info.items():
            if isinstance(value, dict):
                print(f"{key}:")
                for k, v in value.items():
                    print(f"  {k}: {v}")
            else:
                print(f"{key}: {value}")
    return 0


def _data_info(spec: str, args) -> dict:
    from ..data.readers import DT_ASSUMED
    from .common import load_input

    traj = load_input(spec, args)
    info = {"name": traj.name, "formula": traj.formula, "frames": traj.num_frames, "atoms": traj.num_atoms}
    # print only times that can be trusted: a time step needs evenly spaced frames, a duration known gaps
    if traj.dt_fs is None:
        info["time_step_fs"] = "unknown (not stored in the file; pass --dt-fs)"
    elif traj.evenly_spaced:
        info["time_step_fs"] = traj.dt_fs
        if traj.provenance.get(DT_ASSUMED):
            info["time_step_fs"] = f"{traj.dt_fs:g} (assumed: the file does not store it; pass --dt-fs)"
    elif traj.spacing_known:
        gaps = int((traj.frame_steps[-1] - traj.frame_steps[0]) - (traj.num_frames - 1))
        info["time_step_fs"] = (f"not uniform: frames lie on a {traj.dt_fs:g} fs grid with {gaps} steps missing; "
                                "windows span only consecutive frames")
    else:
        info["time_step_fs"] = ("unknown: frames are in time order but not evenly spaced, and which are "
                                "consecutive is not stored")
    if traj.duration_fs is not None:
        info["duration_fs"] = traj.duration_fs
    units = traj.provenance.get("units")
    info["units"] = (f"{units['r_unit']} and {units['e_unit']} in the file, converted to Å and eV" if units
                     else "Å, eV (as stored)")
    if "cell_A" in traj.provenance:
        info["cell_A"] = traj.provenance["cell_A"]
        info["pbc"] = traj.provenance.get("pbc")
    info.update(energies=traj.energies is not None, forces=traj.forces is not None, velocities=traj.velocities is not None, provenance=dict(traj.provenance))
    return info


def _run_info(run: Path) -> dict:
    from ..training.checkpoint import list_checkpoints, load_latest

    ckpts = list_checkpoints(run)
    if not ckpts and not (run / "config.json").is_file():
        raise FileNotFoundError(f"{run} is neither a trajectory nor a training run directory (no checkpoints)")
    info = {"run": str(run), "checkpoints": [p.name for p in ckpts]}
    found = load_latest(run) if ckpts else None
    if found is not None:
        state, path = found
        info.update(latest=path.name, epoch=state["epoch"], step=state["step"])
        hist = state.get("history") or []
        if hist:
            info["last_epoch_metrics"] = hist[-1]
        info["config"] = {f"{sec}.{k}": v for sec, vals in state["config"].items() for k, v in vals.items()}
        info["trained_on"] = _trained_on(state.get("data", {}))
        info["step_friction_per_fs"] = _step_friction(state.get("data", {}))
        prior = _valence_prior(state)
        springs = _urey_bradley_springs(prior)
        if springs is not None:
            info["urey_bradley_springs"] = springs
        morse = _morse_bonds(prior)
        if morse:
            info["morse_bonds"] = morse
    return info


def _valence_prior(state: dict):
    """The valence prior (BondPrior) of a checkpoint's ``state``; None without one."""
    from ..valence.prior import BondPrior

    prefix = "bond_prior."
    weights = {k[len(prefix):]: v for k, v in state["model"].items() if k.startswith(prefix)}
    if not weights:
        return None
    prior = BondPrior(int(state["config"]["model"]["max_z"]))
    prior.load_state_dict(weights)
    return prior


def _urey_bradley_springs(prior) -> dict | str | None:
    """{angle type: "k eV/Å², rest Å"} of the valence prior's Urey-Bradley springs
    (BondPrior.urey_bradley_springs: the Verlet-matched constants its rollouts use); None without a prior."""
    from ..valence.topology import type_label

    if prior is None:
        return None
    springs = prior.urey_bradley_springs()
    if not springs:
        return "none (a prior without force matching, or a checkpoint from before the springs)"
    return {type_label(key): f"{k:.3g} eV/Å², {rest:.3f} Å" for key, (k, rest) in springs.items()}


def _morse_bonds(prior) -> dict | None:
    """{bond type: "k eV/Å², r0 Å, α 1/Å"} of the valence prior's Morse bonds (model.prior_anharmonic; k
    Verlet-matched, as its rollouts use it); None without any."""
    from ..valence.topology import type_label

    if prior is None:
        return None
    return {type_label(key): f"{k:.3g} eV/Å², {r0:.4f} Å, α {a:.2f} 1/Å" for key, (k, r0, a) in prior.morse_bonds().items()} or None


def _step_friction(data: dict) -> dict | str:
    """The model step's measured friction per element and X-H stretch (1/fs; rollout.step_fluctuation
    balances it)."""
    from ..dynamics.fluctuation import friction_labels
    from ..training.calibration import friction_table

    record = data.get("step_friction")
    if not record:
        return "not measured (train.calibration_frames = 0, or a checkpoint from before the measurement)"
    if "not_measured" in record:
        return f"not measured: {record['not_measured']}"
    labels = friction_labels(friction_table(record), friction_table(record, "stretch_friction_per_fs"))
    return {label: round(g, 5) for label, g in labels.items()}


def _trained_on(data: dict) -> dict:
    """The valence types and molecule counts a checkpoint's ``data`` records, as labels."""
    from ..valence.topology import type_label

    types = data.get("valence_types")
    if not types:
        return {"note": "not recorded (a checkpoint from before the record)"}
    out = {"molecules_per_structure": data.get("fragments")}
    out.update({kind: [type_label(k) for k in keys] for kind, keys in types.items()})
    return out
