"""Reference molecular dynamics with GFN2-xTB (tblite) under a Langevin thermostat, via ASE.

Why this engine: MD17 and ISO17 cannot be downloaded here, and the paper's data are ab initio
MD at 500 K / 0.5 fs. GFN2-xTB is the cheapest electronic-structure method that keeps organic
molecules chemically sensible at that temperature (measured on one core: 1.3 ms/step for
ethanol, 4.7 for C7H10O2, 7.6 for aspirin).

Choices (not fixed by the paper):
- Start geometry from SMILES: RDKit AddHs + ETKDG embedding with ``seed`` + MMFF optimisation.
  Any file ``ase.io.read`` understands is used as is instead.
- Thermostat: ASE ``Langevin`` with friction ``friction_per_fs`` (0.01/fs = 10/ps) and the
  centre of mass pinned by ``FixCom`` (ASE's ``fixcm`` flag is deprecated). Velocities start
  from Maxwell-Boltzmann at the target temperature; ``equilibration_fs`` of MD is discarded
  (≥ 2 ps is needed: shorter runs averaged ~410-440 K for a 500 K target).
- Energies and forces are the ones the integrator itself computed: after each step ASE's
  calculator cache holds them for the current positions, so recording costs no extra
  electronic-structure call. Forces are stored without the FixCom projection.
- Velocities (Å/fs) are the integrator's own at each stored frame, so a model may condition on
  them instead of finite differences of positions.
"""
from __future__ import annotations

import ctypes
import os
import shlex
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import CalculationFailed, InputError
from ase.constraints import FixCom
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import Stationary
from tqdm.auto import tqdm

try:  # ASE >= 3.29 renamed MaxwellBoltzmannDistribution (the old name warns)
    from ase.md.velocitydistribution import thermalize_momenta
except ImportError:  # pragma: no cover - older ASE
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution as thermalize_momenta

from .trajectory import Trajectory
from .writers import save_npz



class SimulationError(RuntimeError):
    """The reference engine (GFN2-xTB) failed during the MD; the message names the step."""

def atoms_from_smiles(smiles: str, seed: int = 1) -> Atoms:
    """A 3-D structure with explicit hydrogens: RDKit ETKDG embedding then MMFF optimisation."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise ValueError(f"simulate: {smiles!r} is neither an existing file nor a valid SMILES string")
    mol = Chem.AddHs(mol)
    if AllChem.EmbedMolecule(mol, randomSeed=seed) != 0:
        raise ValueError(f"simulate: RDKit could not embed a 3-D structure for {smiles!r} (seed {seed})")
    if AllChem.MMFFHasAllMoleculeParams(mol):
        AllChem.MMFFOptimizeMolecule(mol, maxIters=2000)
    pos = mol.GetConformer().GetPositions()  # (N, 3) Å
    return Atoms(numbers=[a.GetAtomicNum() for a in mol.GetAtoms()], positions=pos)


def load_start(smiles_or_path: str | os.PathLike, seed: int) -> tuple[Atoms, str, dict]:
    """Start structure, a default name and the provenance of where it came from."""
    path = Path(smiles_or_path)
    if isinstance(smiles_or_path, os.PathLike) or path.is_file():
        if not path.exists():
            raise FileNotFoundError(f"simulate: structure file {path} does not exist")
        import ase.io

        atoms = ase.io.read(path)
        return atoms, path.stem, {"source_file": str(path)}
    smiles = str(smiles_or_path)
    return atoms_from_smiles(smiles, seed), smiles, {"smiles": smiles, "geometry": "RDKit ETKDG + MMFF"}


@contextmanager
def omp_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` OpenMP threads in the process's libgomp (tblite's runtime).

    Why: tblite parallelises with OpenMP, which for molecules of ~10-20 atoms only adds overhead;
    on a busy 2-core box two spinning threads made a 300-step test run 10-40x slower (0.6 s vs
    6-22 s). OMP_NUM_THREADS is read once at library load, often before we run (torch loads the
    same libgomp), so we set the runtime value and restore it afterwards. ``None`` changes nothing.
    """
    try:
        lib = ctypes.CDLL("libgomp.so.1") if n is not None else None
    except OSError:  # no GNU OpenMP runtime (other platform): leave threading alone
        lib = None
    if lib is None:
        yield
        return
    before = lib.omp_get_max_threads()
    lib.omp_set_num_threads(int(n))
    try:
        yield
    finally:
        lib.omp_set_num_threads(before)


def _call_string(smiles_or_path, kwargs: dict) -> str:
    args = ", ".join([repr(str(smiles_or_path))] + [f"{k}={v!r}" for k, v in kwargs.items()])
    return f"diffmd_fast.data.simulate.simulate({args})"


def simulate(
    smiles_or_path: str | os.PathLike,
    *,
    temperature_K: float = 500.0,
    timestep_fs: float = 0.5,
    frames: int = 1000,
    equilibration_fs: float = 2000.0,
    friction_per_fs: float = 0.01,
    seed: int = 1,
    save_every: int = 1,
    out: str | os.PathLike | None = None,
    progress: bool = True,
    name: str | None = None,
    threads: int | None = 1,
) -> Trajectory:
    """Run GFN2-xTB Langevin MD and return ``frames`` frames spaced ``save_every`` steps apart.

    Frame 0 is the state right after equilibration. Writes ``out`` (npz, see ``save_npz``) when
    given. ``threads`` OpenMP threads run tblite (see ``omp_threads``; 1 is fastest for small
    molecules); still export ``OMP_NUM_THREADS=1`` in scripts so nothing else oversubscribes.
    """
    if frames < 1 or save_every < 1:
        raise ValueError(f"simulate: frames and save_every must be >= 1, got {frames}, {save_every}")
    if not (temperature_K > 0 and timestep_fs > 0 and friction_per_fs > 0 and equilibration_fs >= 0):
        raise ValueError("simulate: temperature_K, timestep_fs, friction_per_fs must be > 0, equilibration_fs >= 0")
    from tblite.ase import TBLite  # imported lazily: only simulation needs the xTB library

    settings = dict(temperature_K=temperature_K, timestep_fs=timestep_fs, frames=frames,
                    equilibration_fs=equilibration_fs, friction_per_fs=friction_per_fs, seed=seed,
                    save_every=save_every)
    atoms, default_name, source = load_start(smiles_or_path, seed)
    name = name or default_name
    atoms.calc = TBLite(method="GFN2-xTB", verbosity=0)
    rng = np.random.default_rng(seed)
    thermalize_momenta(atoms, temperature_K=temperature_K, rng=rng)
    Stationary(atoms)
    atoms.set_constraint(FixCom())
    dyn = Langevin(atoms, timestep_fs * units.fs, temperature_K=temperature_K,
                   friction=friction_per_fs / units.fs, fixcm=False, rng=rng)

    n_eq = int(round(equilibration_fs / timestep_fs))
    n_prod = (frames - 1) * save_every
    start = time.perf_counter()
    with omp_threads(threads), tqdm(total=n_eq + n_prod, desc=f"xTB MD {name}", unit="step",
                                    disable=not progress) as bar:
        positions, energies, forces, velocities, temps = _run_md(dyn, atoms, n_eq, frames, save_every, bar, name)
    elapsed = time.perf_counter() - start
    provenance = {
        "engine": "ASE Langevin + tblite",
        "method": "GFN2-xTB",
        **settings,
        "friction": f"{friction_per_fs} 1/fs",
        "centre_of_mass": "FixCom",
        **source,
        "command": _call_string(smiles_or_path, {**settings, "name": name}),
        "argv": shlex.join(sys.argv),
        "mean_temperature_K": float(temps.mean()),
        "ms_per_step": 1000.0 * elapsed / max(n_eq + n_prod, 1),
        "versions": _versions(),
    }
    traj = Trajectory(positions=positions, numbers=atoms.get_atomic_numbers(), dt_fs=timestep_fs * save_every,
                      energies=energies, forces=forces, name=name, provenance=provenance,
                      velocities=velocities)
    if out is not None:
        save_npz(traj, out)
    return traj


def _run_md(dyn, atoms, n_eq: int, frames: int, save_every: int, bar, name: str):
    """Equilibrate ``n_eq`` steps, then store ``frames`` frames ``save_every`` steps apart: positions
    (T, N, 3) Å, energies (T,) eV, forces (T, N, 3) eV/Å, velocities (T, N, 3) Å/fs, temperatures (T,) K.
    Raises SimulationError naming the step where GFN2-xTB failed, ValueError for a structure it refuses."""
    n_prod = (frames - 1) * save_every
    positions = np.empty((frames, len(atoms), 3))
    energies = np.empty(frames)
    forces = np.empty((frames, len(atoms), 3))
    velocities = np.empty((frames, len(atoms), 3))
    temps = np.empty(frames)
    from tblite.exceptions import TBLiteRuntimeError  # lazily, as the calculator

    step = 0
    try:
        for step in range(n_eq + n_prod + 1):
            if step > 0:
                dyn.step()
                bar.update(1)
            k = step - n_eq
            if k >= 0 and k % save_every == 0:
                i = k // save_every
                positions[i] = atoms.get_positions()
                energies[i] = atoms.get_potential_energy()  # cached from the step's own call
                forces[i] = atoms.get_forces(apply_constraint=False)
                velocities[i] = atoms.get_velocities() * units.fs  # Å per ASE time unit -> Å/fs
                temps[i] = atoms.get_temperature()
    except InputError as err:  # tblite's own check of the structure, e.g. atoms on top of each other
        raise ValueError(f"simulate {name}: GFN2-xTB refused the structure: {err}") from err
    except (CalculationFailed, TBLiteRuntimeError) as err:  # SCF not converged, or tblite's library error
        raise SimulationError(f"simulate {name}: GFN2-xTB failed at MD step {step}: {err}") from err
    return positions, energies, forces, velocities, temps


def _versions() -> dict[str, str]:
    import ase
    import rdkit

    try:
        from importlib.metadata import version

        tb = version("tblite")
    except Exception:  # noqa: BLE001 - metadata is best effort
        tb = "unknown"
    return {"ase": ase.__version__, "tblite": tb, "rdkit": rdkit.__version__}
