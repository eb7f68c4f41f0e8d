"""`diffmd generate` and DiffMDDynamics on inputs a model does not describe, and output names: unseen
valence types, another molecule count and condensed phases are one-line errors; --allow-unseen rolls
out with a warning; a wrapped molecule is made whole; dotted names keep their dots, several starts get
their own files, and nothing is overwritten unless asked."""
import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule

from diffmd_fast.ase import DiffMDDynamics
from diffmd_fast.cli import main
from diffmd_fast.dynamics.sink import output_bases
from diffmd_fast.data import load_trajectory
from model_helpers import water_box


def _generate(run, data, out, frames, *extra):
    return main(["generate", "--checkpoint", str(run), "--data", str(data), "--frames", str(frames), "--out", str(out),
                 "--quiet", "--device", "cpu", "--set", "rollout.compile=false", *extra])


def _structure(ethanol60, tmp_path, name="mol.xyz", **kw):
    eth = load_trajectory(ethanol60)
    atoms = Atoms(numbers=eth.numbers, positions=eth.positions[10], **kw)
    path = tmp_path / name
    ase.io.write(path, atoms)
    return path, atoms


def test_output_stems_keep_their_dots():
    from pathlib import Path

    assert output_bases(Path("gen.T300.extxyz"), [None], False) == [Path("gen.T300")]
    assert output_bases(Path("d/multi.v1.npz"), [3, 9], True) == [Path("d/multi.v1_t3"), Path("d/multi.v1_t9")]


def test_dotted_names_and_several_starts_get_their_own_files(tiny_run, ethanol60, tmp_path, capsys):
    for T in (300, 600):
        assert _generate(tiny_run, ethanol60, tmp_path / f"gen.T{T}.extxyz", 3, "--start", "20",
                         "--temperature", str(T)) == 0
    assert {p.name for p in tmp_path.glob("gen.T*")} >= {"gen.T300.extxyz", "gen.T300.npz", "gen.T600.extxyz",
                                                           "gen.T600.npz"}
    assert _generate(tiny_run, ethanol60, tmp_path / "multi.v1.npz", 4, "--start", "20,25") == 0
    for t0 in (20, 25):
        traj = load_trajectory(tmp_path / f"multi.v1_t{t0}.npz")
        assert traj.num_frames == 4 and (tmp_path / f"multi.v1_t{t0}.extxyz").exists()
    capsys.readouterr()
    assert _generate(tiny_run, ethanol60, tmp_path / "dup.extxyz", 2, "--start", "20,20") == 2
    assert "lists a frame twice" in capsys.readouterr().err


def test_existing_outputs_are_kept_unless_overwrite(tiny_run, ethanol60, tmp_path, capsys):
    out = tmp_path / "gen.extxyz"
    assert _generate(tiny_run, ethanol60, out, 3, "--start", "20") == 0
    assert _generate(tiny_run, ethanol60, out, 3, "--start", "20") == 0  # the same command: already complete
    (tmp_path / "gen.extxyz.state.pt").unlink()
    before = out.read_bytes()
    capsys.readouterr()
    assert _generate(tiny_run, ethanol60, out, 3, "--start", "30") == 2
    err = capsys.readouterr().err
    assert "already exist" in err and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert out.read_bytes() == before
    assert _generate(tiny_run, ethanol60, out, 3, "--start", "30", "--overwrite") == 0
    assert out.read_bytes() != before


def test_unseen_types_are_refused_or_rolled_out_with_a_warning(tiny_run, tmp_path, capsys):
    path = tmp_path / "methanol.xyz"
    ase.io.write(path, molecule("CH3OH"))
    capsys.readouterr()
    assert _generate(tiny_run, path, tmp_path / "m.extxyz", 3, "--temperature", "300") == 2
    err = capsys.readouterr().err
    assert "C(H,H,H,O)" in err and "--allow-unseen" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m.extxyz").exists()
    assert _generate(tiny_run, path, tmp_path / "m.extxyz", 3, "--temperature", "300", "--allow-unseen") in (0, 3)
    assert "warning: --data" in capsys.readouterr().err


def test_two_molecules_and_condensed_phases_are_refused(tiny_run, ethanol60, tmp_path, capsys):
    _, one = _structure(ethanol60, tmp_path)
    two = one.copy()
    two.translate([8.0, 0.0, 0.0])
    ase.io.write(tmp_path / "dimer.xyz", one + two)
    capsys.readouterr()
    assert _generate(tiny_run, tmp_path / "dimer.xyz", tmp_path / "d.extxyz", 3, "--temperature", "300") == 2
    assert "2 separate molecules" in capsys.readouterr().err
    ase.io.write(tmp_path / "box.extxyz", water_box(6.0, seed=3))
    assert _generate(tiny_run, tmp_path / "box.extxyz", tmp_path / "b.extxyz", 3, "--temperature", "300") == 2
    assert "condensed phase" in capsys.readouterr().err


def test_a_wrapped_periodic_molecule_is_rolled_out_whole(tiny_run, ethanol60, tmp_path):
    _, atoms = _structure(ethanol60, tmp_path)
    boxed = atoms.copy()
    boxed.cell, boxed.pbc = [14.0] * 3, True
    boxed.positions += [13.5, 13.6, 0.3]
    boxed.wrap()
    ase.io.write(tmp_path / "wrapped.extxyz", boxed)
    assert _generate(tiny_run, tmp_path / "wrapped.extxyz", tmp_path / "w.extxyz", 2, "--temperature", "300") in (0, 3)
    first = ase.io.read(tmp_path / "w.extxyz", 0)
    assert not first.pbc.any()
    d = np.linalg.norm(first.positions[:, None] - first.positions[None], axis=-1)
    d0 = np.linalg.norm(atoms.positions[:, None] - atoms.positions[None], axis=-1)
    assert np.abs(d - d0).max() < 0.2  # whole: no bond stretched across a face


def test_the_ase_integrator_checks_its_atoms_the_same_way(tiny_run):
    atoms = molecule("CH3OH")
    with pytest.raises(ValueError, match="not trained on"):
        DiffMDDynamics(atoms, checkpoint=str(tiny_run), temperature_K=300)
    with pytest.warns(UserWarning, match="not trained on"):
        DiffMDDynamics(atoms, checkpoint=str(tiny_run), temperature_K=300, allow_unseen=True)


def test_info_lists_what_a_checkpoint_was_trained_on(tiny_run, capsys):
    assert main(["info", "--checkpoint", str(tiny_run)]) == 0
    out = capsys.readouterr().out
    assert "trained_on:" in out and "O(H,C)" in out and "molecules_per_structure: [1]" in out
    assert "urey_bradley_springs" not in out  # no valence prior


def test_info_lists_the_urey_bradley_springs_of_a_force_matched_prior(tmp_path, ethanol60, capsys):
    from diffmd_fast.config import Config
    from diffmd_fast.data import load_trajectory
    from diffmd_fast.training.loop import train
    run = tmp_path / "run"
    tiny = ["model.num_layers=1", "model.hidden=8", "model.heads=2", "model.ffn=16", "model.max_z=10",
            "model.num_fourier=4", "train.epochs=1", "train.max_steps=5", "train.batch_size=16", "train.dtype=float64",
            "train.val_rollout_frames=0", "train.calibration_frames=0", "model.bond_prior=true",
            "model.prior_force_matching=true"]
    train(Config.from_toml(None, tiny), load_trajectory(ethanol60), None, run)
    assert main(["info", "--checkpoint", str(run)]) == 0
    out = capsys.readouterr().out
    springs = out.split("urey_bradley_springs:")[1].splitlines()[1:]
    assert any(line.strip().startswith("H(C)-C(H,H,H,C)-H(C): ") and "eV/Å²" in line for line in springs), out
    assert "morse_bonds" not in out  # harmonic
    morse = tmp_path / "morse"
    train(Config.from_toml(None, tiny + ["model.prior_anharmonic=true"]), load_trajectory(ethanol60), None, morse)
    assert main(["info", "--checkpoint", str(morse)]) == 0
    bonds = capsys.readouterr().out.split("morse_bonds:")[1].splitlines()[1:]
    assert any(line.strip().startswith("H(C)-C(H,H,H,C): ") and "1/Å" in line for line in bonds), bonds
