"""The command line on real-world inputs: --dt-fs, isomer selectors, units and cells
shown by info, gapped frames, and a reader that goes away."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import ase.db
import numpy as np
import pytest
from ase import Atoms
from ase.io import write

from diffmd_fast.cli import main

WATER_Z = np.array([8, 1, 1])
WATER_X0 = np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]])


def _frames(n=8):
    return WATER_X0 + 0.01 * np.arange(n)[:, None, None] * np.array([1.0, 0.5, 0.0])


def _info(capsys, *args) -> dict:
    assert main(["info", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_unknown_time_step_info_and_dt_option(tmp_path, capsys):
    path = tmp_path / "plain.xyz"
    write(path, [Atoms(numbers=WATER_Z, positions=p) for p in _frames()], format="xyz")
    info = _info(capsys, str(path))
    assert info["time_step_fs"].startswith("unknown") and "duration_fs" not in info
    assert _info(capsys, str(path), "--dt-fs", "0.5")["duration_fs"] == pytest.approx(3.5)
    assert main(["train", "--data", str(path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "plain.xyz: the time between frames is not stored; pass --dt-fs" in err[0]


def test_info_shows_units_and_cell(tmp_path, capsys):
    path = tmp_path / "bohr.npz"
    np.savez(path, R=_frames() / 0.52917721067, z=WATER_Z, r_unit="au", e_unit="Ha", lattice=np.eye(3) * 30.0)
    info = _info(capsys, str(path))
    assert info["units"].startswith("au and Ha") and info["cell_A"][0][0] == pytest.approx(30.0 * 0.52917721067, rel=1e-6)
    assert info["pbc"] == [True] * 3


def test_isomer_selector_and_gapped_frames(tmp_path, capsys):
    path = tmp_path / "iso.db"
    with ase.db.connect(str(path)) as db:
        for k in range(2):
            for s in [0, 1, 2, 4, 5]:  # step 3 held out; the rows store no time
                db.write(Atoms(numbers=WATER_Z, positions=WATER_X0 + 5.0 * k + 0.01 * s),
                         key_value_pairs={"total_energy": -1.0})
    assert main(["info", str(path)]) == 2
    err = capsys.readouterr().err
    assert "holds 2 molecules; pick one with iso.db@INDEX or --molecule" in err
    info = _info(capsys, f"{path}@1")
    assert info["frames"] == 5 and info["provenance"]["isomer_index"] == 1
    assert info["time_step_fs"].startswith("unknown") and "duration_fs" not in info  # never a 1 fs claim
    assert _info(capsys, str(path), "--molecule", "0")["provenance"]["isomer_index"] == 0


@pytest.mark.parametrize("args", [["info", "ethanol"], ["train", "--help"]])
def test_quiet_when_the_reader_goes_away(args):
    proc = subprocess.Popen([sys.executable, "-m", "diffmd_fast.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    proc.stdout.close()  # the reader is gone before the first print (as `| head -0` would be)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and b"Traceback" not in err and b"BrokenPipe" not in err, err.decode()
