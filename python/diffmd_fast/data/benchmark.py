"""The paper's benchmark data, regenerated with GFN2-xTB and cached: `diffmd data make SET`.

Two sets (paper, Sec. 4 and Tables 1-2; MD17 and ISO17 themselves cannot be downloaded here):

- ``md17-gfn2``: the eight MD17 molecules, 500 K, 0.5 fs, 2 ps equilibration, 40,000 frames
  each (the paper's 20,000 train / 10,000 validation / 10,000 test short-to-long split).
- ``c7o2h10-gfn2``: C7H10O2 isomers (ISO17's formula), 100 K, 1 fs, 2 ps equilibration, 5,000
  frames each; as many as a stated CPU budget allows (``count``; at least 30). Which isomers are
  test isomers is decided later, as in the paper: the five with the largest static-frame drift
  (``data.splits.one_to_others_split``).

Every molecule is one ``diffmd simulate`` process (so the command recorded in the manifest is
exactly the one that ran, and molecules run in parallel, one per core); each finished file is
entered in ``<root>/<set>/manifest.json`` with its SHA-256, command (run in that directory), wall time and mean
temperature. A re-run skips every molecule whose file matches its manifest entry, so a killed
``make`` continues where it stopped; a file whose checksum no longer matches is regenerated.

Cost on one free core (measured ms/step, OMP_NUM_THREADS=1): ethanol 1.3, C7H10O2 ~4.7, aspirin
7.6, so ``md17-gfn2`` is ~25 core-minutes and each isomer ~35 core-seconds.
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from tqdm.auto import tqdm

from .writers import sha256, write_text

ENV_ROOT = "DIFFMD_DATA"  # overrides the per-user cache directory


@dataclass(frozen=True)
class MoleculeSpec:
    """One reference MD run: ``diffmd simulate SMILES`` with these settings."""

    name: str
    smiles: str
    temperature_K: float
    timestep_fs: float
    frames: int
    equilibration_fs: float = 2000.0
    friction_per_fs: float = 0.01
    seed: int = 1

    def command(self, out: Path) -> list[str]:
        """The ``diffmd simulate`` argv writing this molecule to ``out`` (npz)."""
        return ["diffmd", "simulate", self.smiles, "--name", self.name, "--out", str(out),
                "--temperature", f"{self.temperature_K:g}", "--timestep", f"{self.timestep_fs:g}",
                "--frames", str(self.frames), "--equilibration", f"{self.equilibration_fs:g}",
                "--friction", f"{self.friction_per_fs:g}", "--seed", str(self.seed),
                "--forces-dtype", "float32", "--quiet"]


@dataclass(frozen=True)
class BenchmarkSet:
    name: str
    description: str
    molecules: tuple[MoleculeSpec, ...]
    default_count: int | None = None  # molecules made by default (None: all)

    def take(self, count: int | None) -> "BenchmarkSet":
        """The first ``count`` molecules (the stated budget; more than the set holds: all of them);
        ``None``: the set's default."""
        n = self.default_count if count is None else count
        if n is None:
            return self
        if n < 1:
            raise ValueError(f"{self.name}: count must be >= 1, got {n}")
        return replace(self, molecules=self.molecules[:n])


_MD17 = (  # name, SMILES (the MD17 molecules)
    ("aspirin", "CC(=O)OC1=CC=CC=C1C(=O)O"), ("benzene", "c1ccccc1"), ("ethanol", "CCO"),
    ("malonaldehyde", "O=CCC=O"), ("naphthalene", "c1ccc2ccccc2c1"), ("salicylic_acid", "OC(=O)c1ccccc1O"),
    ("toluene", "Cc1ccccc1"), ("uracil", "O=C1C=CNC(=O)N1"),
)

# C7H10O2 isomers, each RDKit-checked (formula C7H10O2, unique canonical SMILES, embeddable); the
# first three are the bundled c7o2h10_0..2. Ordered so any prefix mixes rings, chains, acids,
# esters, ketones and epoxides.
_ISOMERS = """
O=C1CCCC(=O)C1C OC(=O)C1CCC=CC1 CCOC(=O)C=CC=C CC1=CC(=O)CC(O)C1 OC(=O)C1=CCCCC1 OC(=O)CC1=CCCC1
CC(=O)OC1=CCCC1 CC(=O)OCC1=CCC1 COC(=O)C1=CCCC1 COC(=O)C1CCC=C1 CCC(=O)OC1=CCC1 C=CCOC(=O)C(C)=C
C=CCOC(=O)C=CC C=CC(=O)OCCC=C CC#CC(=O)OCCC CC#CCOC(=O)CC C#CCOC(=O)CCC C#CCCOC(=O)CC
CCOC(=O)C#CCC COC(=O)C#CCCC CC(C)OC(=O)C#CC O=C1CCC(=O)C(C)C1 O=C1CCCCC1C=O O=CC1CCCC(=O)C1
O=CC1CCC(=O)CC1 CC1(C)C(=O)CCC1=O CC1CC(=O)CC1C=O O=C1CCC(C1)CC=O O=CCCC(=O)CC=C CC(=O)CCC(=O)C=C
CC(=O)C(C)C(=O)C=C CC(=O)CC(=O)C(C)=C CC(=O)CC(=O)C=CC CCC(=O)CC(=O)C=C CC(=O)C=CCC(C)=O
CCC(=O)C=CC(C)=O O=C1OC2CCCC2C1 O=C1OC2CCC1CC2 CC1=C(C)C(=O)OC1C CCC1=CC(=O)OC1C CCCC1=CC(=O)OC1
C=C1CCOC(=O)C1C O=C1CCCC=C(O1)C OC1=CC(=O)CCC1C OC1=C(C)C(=O)CCC1 OC1CCC(=O)C=C1C O=C1C=CCCC1CO
OCC1=CC(=O)CCC1 OCC1CCC(=O)C=C1 O=C1C=CC(O)CC1C C1CC2(CCO2)C(=O)C1 O=C1CCC2(CC1)OC2
OC1CCCC2(OC2)C=1 CC12OC1CCCC2=O O=C1CCCC2OC2C1 CC1CCC2OC2C1=O O=C1C2CCCC1OC2 OC1C2CC3C1OC3C2
O1C2CC3CC1CC2O3 OC1C=CC2CCC1O2 OC1CC2OC2C1C=C C=CC1OC1C(C)C=O CC1OC1C(=O)C(C)=C C=CC(=O)C1OC1(C)C
CC1OC(C)(C=O)C1=C O=CC1=CCCC1CO OC1CC=CC1CC=O O=CCC1CC=CC1O C=CC(O)CC(=O)C=C C=CC(O)C(=O)C=CC
OC(C=C)C=CC(C)=O CC(O)C#CC(C)C=O CC(=O)C#CC(C)(C)O CC(C)(O)C#CCC=O OCC#CCCC(C)=O OCCC#CCC(C)=O
CC(O)CC#CC(C)=O OC1(CC1)C#CC(C)O CC(O)(C#C)C1CC1O OCC1(CC1)C#CCO OC1CC1C#CC(C)O O=C(O)C1CC1C(C)=C
OC(=O)C1(C)CC1C=C OC(=O)C1CC(C)=CC1 CC1=C(CCC1)C(=O)O CC1CC=C(C1)C(=O)O OC(=O)C1C2CCC1C2
OC(=O)C12CCC(C1)C2 OC(=O)CC1CC1C=C OC(=O)C=CCCC=C OC(=O)C=CC=CCC CC=CC=CCC(=O)O OC(=O)CCCC#CC
OC(=O)CC(C)(C)C#C COC(=O)C1CC1C=C COC1=CC(=O)CCC1 COC1=CCCC(=O)C1 COC1=CC(=O)CC1C CCOC1=CC(=O)CC1
""".split()

BENCHMARK_SETS: dict[str, BenchmarkSet] = {
    "md17-gfn2": BenchmarkSet(
        "md17-gfn2", "the eight MD17 molecules, GFN2-xTB Langevin MD, 500 K, 0.5 fs, 40,000 frames each",
        tuple(MoleculeSpec(n, s, 500.0, 0.5, 40_000) for n, s in _MD17)),
    "c7o2h10-gfn2": BenchmarkSet(
        "c7o2h10-gfn2", "C7H10O2 isomers, GFN2-xTB Langevin MD, 100 K, 1 fs, 5,000 frames each",
        tuple(MoleculeSpec(f"c7o2h10_{i:03d}", s, 100.0, 1.0, 5_000) for i, s in enumerate(_ISOMERS)),
        default_count=40),  # ~40 x 35 s on one core: a 25-minute budget, above a floor of 30 molecules
}


def cache_dir() -> Path:
    """Root of the benchmark data: ``$DIFFMD_DATA``, else the platform's per-user cache dir."""
    env = os.environ.get(ENV_ROOT)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("diffmd_fast")) / "data"


def get_set(name: str) -> BenchmarkSet:
    if name not in BENCHMARK_SETS:
        raise ValueError(f"unknown benchmark set {name!r}; known: {', '.join(BENCHMARK_SETS)}")
    return BENCHMARK_SETS[name]


def _manifest_path(root: Path, set_name: str) -> Path:
    return root / set_name / "manifest.json"


def read_manifest(root: Path, set_name: str) -> dict:
    """The set's manifest (``{"set", "description", "entries": {molecule: entry}}``); empty if none."""
    path = _manifest_path(root, set_name)
    if not path.exists():
        return {"set": set_name, "entries": {}}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:  # only a hand edit can do this: writes are atomic
        raise ValueError(f"{path}: not valid JSON ({err}); delete it to re-check every file") from err


def _status(root: Path, spec: MoleculeSpec, entry: dict | None) -> str:
    """'done', 'missing', 'corrupt' (checksum differs) or 'stale' (made with other settings)."""
    path = root / f"{spec.name}.npz"
    if entry is None or not path.exists():
        return "missing"
    if entry.get("spec") != asdict(spec):
        return "stale"
    return "done" if sha256(path) == entry["sha256"] else "corrupt"


def status(bset: BenchmarkSet, root: Path | None = None) -> dict[str, str]:
    """Molecule name -> 'done' | 'missing' | 'corrupt' | 'stale' for the set under ``root``."""
    root = cache_dir() if root is None else Path(root)
    entries = read_manifest(root, bset.name)["entries"]
    return {m.name: _status(root / bset.name, m, entries.get(m.name)) for m in bset.molecules}


def _simulate(spec: MoleculeSpec, out_dir: Path) -> dict:
    """Run one molecule as its own ``diffmd simulate`` process; the manifest entry on success."""
    out = out_dir / f"{spec.name}.npz"
    argv = spec.command(Path(out.name))  # run inside out_dir: the recorded command is portable
    log = out_dir / "logs" / f"{spec.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    # one core per molecule (tblite is fastest so); the child imports this very package, whatever
    # relative PYTHONPATH the parent had (the child runs in out_dir)
    package_root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([package_root, *filter(None, [os.environ.get("PYTHONPATH")])])}
    t0 = time.perf_counter()
    with open(log, "wb") as sink:
        proc = subprocess.run([sys.executable, "-m", "diffmd_fast.cli", *argv[1:]], env=env, stdout=sink,
                              stderr=subprocess.STDOUT, check=False, cwd=out_dir)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
        raise RuntimeError(f"{spec.name}: diffmd simulate exited with {proc.returncode}: {tail[0]} (log: {log})")
    from .readers import load_trajectory

    prov = load_trajectory(out).provenance
    return {"file": out.name, "sha256": sha256(out), "command": shlex.join(argv), "spec": asdict(spec),
            "wall_s": round(time.perf_counter() - t0, 1), "mean_temperature_K": prov.get("mean_temperature_K"),
            "ms_per_step": prov.get("ms_per_step"), "versions": prov.get("versions"),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def make(bset: BenchmarkSet, root: Path | None = None, *, jobs: int = 1, progress: bool = True) -> dict:
    """Generate every molecule of ``bset`` not yet done under ``root``/``bset.name``; returns the manifest.

    ``jobs`` molecules run at once (one process each). The manifest is rewritten atomically after
    each molecule, so a killed run loses at most the molecules in flight. Raises RuntimeError
    naming the molecules that failed (the others are kept).
    """
    root = cache_dir() if root is None else Path(root)
    out_dir = root / bset.name
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(root, bset.name)
    manifest.update(set=bset.name, description=bset.description, count=len(bset.molecules))
    entries = manifest.setdefault("entries", {})
    todo = []
    for spec in bset.molecules:
        state = _status(out_dir, spec, entries.get(spec.name))
        if state != "done":
            if state in ("corrupt", "stale") and progress:
                print(f"{bset.name}/{spec.name}: {state} ({'checksum differs' if state == 'corrupt' else 'other settings'}), "
                      "regenerating", file=sys.stderr)
            entries.pop(spec.name, None)
            todo.append(spec)
    failed = []
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool, \
            tqdm(total=len(bset.molecules), initial=len(bset.molecules) - len(todo), desc=bset.name, unit="mol",
                 disable=not progress) as bar:
        futures = {pool.submit(_simulate, spec, out_dir): spec for spec in todo}
        for fut in as_completed(futures):
            spec = futures[fut]
            try:
                entries[spec.name] = fut.result()
            except RuntimeError as err:
                failed.append(str(err))
                continue
            write_text(_manifest_path(root, bset.name), json.dumps(manifest, indent=1, sort_keys=True))
            bar.set_postfix_str(f"{spec.name} {entries[spec.name]['wall_s']:.0f} s")
            bar.update(1)
    write_text(_manifest_path(root, bset.name), json.dumps(manifest, indent=1, sort_keys=True))
    if failed:
        raise RuntimeError(f"{bset.name}: {len(failed)} molecule(s) failed: " + "; ".join(failed))
    return manifest


def benchmark_files(set_name: str, root: str | os.PathLike | None = None) -> dict[str, Path]:
    """Molecule name -> checksum-verified npz of a made set, in the set's order.

    The set is the first ``count`` molecules its last ``make`` was asked for. Raises
    FileNotFoundError (one line, with the command to run) when any of them is missing or corrupt.
    """
    bset = get_set(set_name)
    root = cache_dir() if root is None else Path(root)
    manifest = read_manifest(root, set_name)
    command = f"diffmd data make {set_name}" + ("" if root == cache_dir() else f" --data-dir {root}")
    if not manifest["entries"]:
        raise FileNotFoundError(f"no {set_name} data under {root}; run `{command}`")
    states = status(bset.take(manifest.get("count", len(manifest["entries"]))), root)
    bad = [name for name, state in states.items() if state != "done"]
    if bad:
        raise FileNotFoundError(f"{set_name}: {', '.join(bad)} missing or corrupt under {root}; "
                                f"run `{command}` to regenerate")
    return {name: root / set_name / f"{name}.npz" for name in states}
