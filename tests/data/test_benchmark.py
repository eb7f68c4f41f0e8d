"""`diffmd data make`: each molecule a real `diffmd simulate` process, a checksummed manifest, resume.

Tiny sets (water, methane; a few frames) keep the real GFN2-xTB runs to seconds; most of the time
is each child process importing torch.
"""
from __future__ import annotations

import json
import random
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from diffmd_fast.data import load_trajectory
from diffmd_fast.data.benchmark import (BENCHMARK_SETS, BenchmarkSet, MoleculeSpec, benchmark_files, make,
                                        read_manifest, sha256, status)
from kill_helpers import kill_at_random_moment

pytest.importorskip("tblite.ase")

TINY = BenchmarkSet("tiny", "test set", (MoleculeSpec("water", "O", 300.0, 0.5, 6, equilibration_fs=1.0),
                                         MoleculeSpec("methane", "C", 300.0, 0.5, 6, equilibration_fs=1.0)))


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    make(TINY, root, jobs=2, progress=False)
    return root


def test_manifest_records_checksums_and_the_exact_commands(made):
    manifest = read_manifest(made, "tiny")
    assert manifest["count"] == 2 and set(manifest["entries"]) == {"water", "methane"}
    entry = manifest["entries"]["water"]
    assert entry["command"].startswith("diffmd simulate O --name water --out water.npz --temperature 300 ")
    assert status(TINY, made) == {"water": "done", "methane": "done"}
    traj = load_trajectory(made / "tiny" / "water.npz")
    assert traj.num_frames == 6 and traj.velocities is not None  # the engine's velocities are recorded
    assert traj.provenance["argv"].endswith(entry["command"].split(" ", 2)[2])  # the child ran that command


def test_corrupt_and_stale_files_are_regenerated_the_rest_kept(made, tmp_path):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(made, root)
    before = read_manifest(root, "tiny")["entries"]
    path = root / "tiny" / "water.npz"
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")  # same size, other bytes
    changed = BenchmarkSet("tiny", "test set", (TINY.molecules[0], MoleculeSpec("methane", "C", 310.0, 0.5, 6,
                                                                                 equilibration_fs=1.0)))
    assert status(changed, root) == {"water": "corrupt", "methane": "stale"}
    make(TINY.take(1), root, progress=False)  # only water asked for: only water is redone
    after = read_manifest(root, "tiny")["entries"]
    assert status(TINY.take(1), root) == {"water": "done"} and after["water"]["sha256"] == \
        sha256(path)
    assert after["methane"] == before["methane"]  # not asked for: left as it was


def test_benchmark_files_refuses_missing_or_corrupt_data(tmp_path, monkeypatch):
    monkeypatch.setitem(BENCHMARK_SETS, "tiny", TINY)
    with pytest.raises(FileNotFoundError, match="run `diffmd data make tiny"):
        benchmark_files("tiny", tmp_path)
    out = tmp_path / "tiny"
    out.mkdir()
    (out / "water.npz").write_bytes(b"not an npz")
    manifest = {"set": "tiny", "count": 1, "entries": {"water": {"file": "water.npz", "sha256": "0" * 64,
                                                                "spec": asdict(TINY.molecules[0])}}}
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(FileNotFoundError, match="water missing or corrupt"):
        benchmark_files("tiny", tmp_path)


def test_benchmark_files_returns_the_made_set(made, monkeypatch):
    monkeypatch.setitem(BENCHMARK_SETS, "tiny", TINY)
    files = benchmark_files("tiny", made)
    assert list(files) == ["water", "methane"] and all(p.exists() for p in files.values())


def test_the_real_sets_are_the_papers():
    md17 = BENCHMARK_SETS["md17-gfn2"]
    assert [m.name for m in md17.molecules] == ["aspirin", "benzene", "ethanol", "malonaldehyde", "naphthalene",
                                                  "salicylic_acid", "toluene", "uracil"]
    assert {(m.temperature_K, m.timestep_fs, m.frames) for m in md17.molecules} == {(500.0, 0.5, 40_000)}
    iso = BENCHMARK_SETS["c7o2h10-gfn2"]
    assert len(iso.take(None).molecules) >= 30
    assert {(m.temperature_K, m.timestep_fs, m.frames) for m in iso.molecules} == {(100.0, 1.0, 5_000)}
    from rdkit import Chem
    from rdkit.Chem.rdMolDescriptors import CalcMolFormula

    canon = [Chem.CanonSmiles(m.smiles) for m in iso.molecules]
    assert len(set(canon)) == len(canon)  # distinct isomers
    assert {CalcMolFormula(Chem.MolFromSmiles(s)) for s in canon} == {"C7H10O2"}


@pytest.mark.slow
def test_a_killed_make_continues(tmp_path):
    """SIGKILL `make` at a random moment after its first molecule; the same call finishes the rest
    and keeps what was done."""
    script = tmp_path / "make.py"  # the set spelled out: the child needs nothing from the test tree
    script.write_text(
        "import sys\nfrom pathlib import Path\n"
        "from diffmd_fast.data.benchmark import BenchmarkSet, MoleculeSpec, make\n"
        f"molecules = tuple(MoleculeSpec(**m) for m in {[vars(m) for m in three_set().molecules]!r})\n"
        "make(BenchmarkSet('tiny', 'test set', molecules), Path(sys.argv[1]), jobs=1, progress=False)\n")
    root = tmp_path / "root"
    manifest = root / "tiny" / "manifest.json"
    cmd = [sys.executable, "-u", str(script), str(root)]
    kill_at_random_moment(cmd, None, tmp_path / "log.txt", manifest.exists, random.Random(0), what="first molecule",
                          wait_s=120, max_delay_s=2.0)
    done_before = read_manifest(root, "tiny")["entries"]
    assert 1 <= len(done_before) < 3
    subprocess.run(cmd, check=True, timeout=300)
    after = read_manifest(root, "tiny")["entries"]
    assert set(after) == {"water", "methane", "ammonia"}
    for name, entry in done_before.items():  # kept, not redone
        assert after[name]["finished"] == entry["finished"]
    assert status(three_set(), root) == dict.fromkeys(after, "done")
    assert np.isfinite(load_trajectory(root / "tiny" / "ammonia.npz").positions).all()


def three_set() -> BenchmarkSet:
    return BenchmarkSet("tiny", "test set", TINY.molecules + (MoleculeSpec("ammonia", "N", 300.0, 0.5, 6,
                                                                           equilibration_fs=1.0),))


def test_cli_status_and_errors(tmp_path, capsys):
    from diffmd_fast.cli import main

    assert main(["data", "status", "md17-gfn2", "--data-dir", str(tmp_path)]) == 0
    assert "md17-gfn2: 0/8 made" in capsys.readouterr().out
    assert main(["data", "make", "md17-gfn2", "--jobs", "0", "--data-dir", str(tmp_path)]) == 2
    assert main(["results", "--protocol", "paper", "--out", str(tmp_path / "r"), "--data-dir", str(tmp_path)]) == 2
    assert f"run `diffmd data make md17-gfn2 --data-dir {tmp_path}`" in capsys.readouterr().err
