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
- Charge and spin: a SMILES's formal charges and radical electrons go on the atoms as ASE's initial
  charges and magnetic moments, which tblite sums into the total charge and the number of unpaired
  electrons (a structure file's own, else neutral and closed-shell); ``charge`` and ``multiplicity``
  override them. Both are recorded in the provenance.
- A run that is stopped (Ctrl-C, a kill, the end of a batch job's time) keeps what it made: every
  CHECKPOINT_S seconds, and when interrupted, the frames so far and the dynamics' state (positions,
  momenta, the thermostat's random stream, the step) go to ``<out>.partial.npz``; the same call
  again continues from there and removes it when the trajectory is complete.
"""
from __future__ import annotations

import ctypes
import json
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

from .elements import check_angstrom
from .trajectory import Trajectory
from .writers import atomic_path, save_npz


class SimulationError(RuntimeError):
    """The reference engine (GFN2-xTB) failed during the MD; the message names the step."""


CHECKPOINT_S = 60.0  # seconds between saves of a running simulation's state (<out>.partial.npz)


def atoms_from_smiles(smiles: str, seed: int = 1) -> Atoms:
    """A 3-D structure with explicit hydrogens: RDKit ETKDG embedding then MMFF optimisation."""
    from rdkit import Chem, RDLogger
    from rdkit.Chem import AllChem

    RDLogger.DisableLog("rdApp.*")  # RDKit's own parse and force-field chatter: our errors say what failed
    try:
        return _embedded(smiles, seed, Chem, AllChem)
    finally:
        RDLogger.EnableLog("rdApp.*")


def _embedded(smiles: str, seed: int, Chem, AllChem) -> Atoms:
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise ValueError(f"simulate: {smiles!r} is neither an existing file nor a valid SMILES string")
    mol = Chem.AddHs(mol)
    if AllChem.EmbedMolecule(mol, randomSeed=seed) != 0:
        raise ValueError(f"simulate: RDKit could not embed a 3-D structure for {smiles!r} (seed {seed})")
    if AllChem.MMFFHasAllMoleculeParams(mol):
        AllChem.MMFFOptimizeMolecule(mol, maxIters=2000)
    pos = mol.GetConformer().GetPositions()  # (N, 3) Å
    atoms = mol.GetAtoms()
    # the SMILES's charge and spin, where tblite reads them (their sums: total charge, unpaired electrons)
    return Atoms(numbers=[a.GetAtomicNum() for a in atoms], positions=pos,
                 charges=[a.GetFormalCharge() for a in atoms], magmoms=[a.GetNumRadicalElectrons() for a in atoms])


def load_start(smiles_or_path: str | os.PathLike, seed: int) -> tuple[Atoms, str, dict]:
    """Start structure, a default name and the provenance of where it came from. A file holding several
    frames gives its last (``ase.io.read``'s default), a trajectory npz (load_trajectory) too, with the
    charge and multiplicity ``simulate`` recorded in it. Raises
    FileNotFoundError for a missing file and ValueError for one no reader understands or whose positions
    cannot be in Å (data.elements.check_angstrom)."""
    path = Path(smiles_or_path)
    if isinstance(smiles_or_path, os.PathLike) or path.is_file():
        if not path.exists():
            raise FileNotFoundError(f"structure file {path} does not exist")
        import ase.io

        if path.suffix == ".npz":
            from .readers import load_trajectory

            traj = load_trajectory(path, check_time=False)  # one frame's structure: its time step is not used
            atoms = Atoms(numbers=traj.numbers, positions=traj.positions[-1])
            # the charge and spin `diffmd simulate` recorded, where tblite reads them (their sums over the atoms)
            atoms.set_initial_charges([float(traj.provenance.get("charge", 0))] + [0.0] * (len(atoms) - 1))
            unpaired = int(traj.provenance.get("multiplicity", 1)) - 1
            atoms.set_initial_magnetic_moments([float(unpaired)] + [0.0] * (len(atoms) - 1))
        else:
            try:
                atoms = ase.io.read(path)
            except Exception as err:  # ASE raises its own types (UnknownFileTypeError, parse errors) per format
                raise ValueError(f"cannot read a structure from {path.name}: {str(err).splitlines()[0] if str(err) else type(err).__name__}") from err
        check_angstrom(atoms.positions, atoms.numbers, f"{path.name}: positions")
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
    charge: int | None = None,
    multiplicity: int | None = None,
    forces_dtype: type = np.float64,
) -> Trajectory:
    """Run GFN2-xTB Langevin MD and return ``frames`` frames spaced ``save_every`` steps apart.

    Frame 0 is the state right after equilibration. Writes ``out`` (npz, see ``save_npz``; forces and
    velocities stored as ``forces_dtype``) when given, and while running keeps its state in
    ``<out>.partial.npz`` (module docstring), from which the same call continues. ``threads`` OpenMP
    threads run tblite (see ``omp_threads``; 1 is fastest for small molecules); still export
    ``OMP_NUM_THREADS=1`` in scripts so nothing else oversubscribes.
    ``charge`` (e) and ``multiplicity`` (2S + 1) override the start structure's own (module docstring).
    Raises ValueError for invalid settings, a structure of fewer than 2 atoms, a charge and
    multiplicity that do not fit its electron count, or a partial state of other settings;
    SimulationError when GFN2-xTB fails during the run.
    """
    if frames < 1 or save_every < 1:
        raise ValueError(f"simulate: frames and save_every must be >= 1, got {frames}, {save_every}")
    if not (temperature_K > 0 and timestep_fs > 0 and friction_per_fs > 0 and equilibration_fs >= 0):
        raise ValueError("simulate: temperature_K, timestep_fs, friction_per_fs must be > 0, equilibration_fs >= 0")
    if multiplicity is not None and multiplicity < 1:
        raise ValueError(f"simulate: multiplicity (2S + 1) must be >= 1, got {multiplicity}")
    from tblite.ase import TBLite  # imported lazily: only simulation needs the xTB library

    settings = dict(temperature_K=temperature_K, timestep_fs=timestep_fs, frames=frames,
                    equilibration_fs=equilibration_fs, friction_per_fs=friction_per_fs, seed=seed,
                    save_every=save_every)
    atoms, default_name, source = load_start(smiles_or_path, seed)
    name = name or default_name
    if len(atoms) < 2:
        raise ValueError(f"simulate {name}: {len(atoms)} atom; MD of a molecule needs at least 2")
    total_charge = int(round(atoms.get_initial_charges().sum())) if charge is None else int(charge)
    unpaired = int(round(atoms.get_initial_magnetic_moments().sum())) if multiplicity is None else multiplicity - 1
    electrons = int(atoms.get_atomic_numbers().sum()) - total_charge
    if (electrons - unpaired) % 2:
        raise ValueError(f"simulate {name}: charge {total_charge} with {unpaired} unpaired electrons does not fit "
                         f"{electrons} electrons; give --charge and --multiplicity that do")
    settings.update(charge=total_charge, multiplicity=unpaired + 1)
    atoms.calc = TBLite(method="GFN2-xTB", verbosity=0, charge=total_charge, multiplicity=unpaired + 1)
    rng = np.random.default_rng(seed)
    thermalize_momenta(atoms, temperature_K=temperature_K, rng=rng)
    Stationary(atoms)
    atoms.set_constraint(FixCom())
    dyn = Langevin(atoms, timestep_fs * units.fs, temperature_K=temperature_K,
                   friction=friction_per_fs / units.fs, fixcm=False, rng=rng)

    n_eq = int(round(equilibration_fs / timestep_fs))
    n_prod = (frames - 1) * save_every
    run = _MDRun(dyn, atoms, rng, n_eq, frames, save_every, name,
                 None if out is None else Path(out).with_suffix(".partial.npz"), {**settings, **source})
    start = time.perf_counter()
    with omp_threads(threads), tqdm(total=n_eq + n_prod, initial=run.step, desc=f"xTB MD {name}", unit="step",
                                    disable=not progress) as bar:
        run.run(bar)
    elapsed = time.perf_counter() - start + run.elapsed_before
    provenance = {
        "engine": "ASE Langevin + tblite",
        "method": "GFN2-xTB",
        **settings,
        "friction": f"{friction_per_fs} 1/fs",
        "centre_of_mass": "FixCom",
        **source,
        "command": _call_string(smiles_or_path, {**settings, "name": name}),
        "argv": shlex.join(sys.argv),
        "mean_temperature_K": float(run.temps.mean()),
        "ms_per_step": 1000.0 * elapsed / max(n_eq + n_prod, 1),
        "versions": _versions(),
    }
    if run.resumed_at:
        provenance["resumed_at_step"] = run.resumed_at
    traj = Trajectory(positions=run.positions, numbers=atoms.get_atomic_numbers(), dt_fs=timestep_fs * save_every,
                      energies=run.energies, forces=run.forces, name=name, provenance=provenance,
                      velocities=run.velocities)
    if out is not None:
        save_npz(traj, out, forces_dtype=forces_dtype)
        run.discard_state()
    return traj


class _MDRun:
    """Equilibrate ``n_eq`` steps, then store ``frames`` frames ``save_every`` steps apart: positions
    (T, N, 3) Å, energies (T,) eV, forces (T, N, 3) eV/Å, velocities (T, N, 3) Å/fs, temperatures (T,) K;
    its state saved to ``state_path`` every CHECKPOINT_S seconds and when interrupted, and continued
    from there when that file holds a run of the same ``settings``."""

    def __init__(self, dyn, atoms, rng, n_eq: int, frames: int, save_every: int, name: str,
                 state_path: Path | None, settings: dict) -> None:
        self.dyn, self.atoms, self.rng, self.n_eq, self.save_every, self.name = dyn, atoms, rng, n_eq, save_every, name
        self.last = n_eq + (frames - 1) * save_every  # the step of the last frame
        self.state_path, self.settings = state_path, json.dumps(settings, sort_keys=True, default=str)
        n = len(atoms)
        self.positions, self.energies = np.empty((frames, n, 3)), np.empty(frames)
        self.forces, self.velocities, self.temps = np.empty((frames, n, 3)), np.empty((frames, n, 3)), np.empty(frames)
        self.step, self.stored, self.elapsed_before, self.resumed_at = 0, 0, 0.0, 0
        if state_path is not None and state_path.exists():
            self._load()

    def _load(self) -> None:
        with np.load(self.state_path, allow_pickle=False) as f:
            if str(f["settings"]) != self.settings:
                raise ValueError(f"simulate {self.name}: {self.state_path} holds a stopped run of other settings or "
                                 "another start structure; delete it to start afresh, or repeat that run's command")
            k = int(f["stored"])
            for key in ("positions", "energies", "forces", "velocities", "temps"):
                getattr(self, key)[:k] = f[key]
            self.atoms.set_positions(f["atom_positions"], apply_constraint=False)
            self.atoms.set_momenta(f["atom_momenta"], apply_constraint=False)
            self.rng.bit_generator.state = json.loads(str(f["rng"]))
            self.step, self.stored, self.elapsed_before = int(f["step"]), k, float(f["elapsed_s"])
        self.resumed_at = self.step

    def _snapshot(self) -> None:
        """The state after a completed step and its frame: what save_state writes, so that an interrupt
        inside the next step (atoms half-updated) saves a consistent one."""
        self._safe = (self.step, self.stored, self.atoms.get_positions(), self.atoms.get_momenta(),
                      self.rng.bit_generator.state)

    def save_state(self, elapsed_s: float) -> None:
        if self.state_path is None:
            return
        step, k, pos, mom, rng = self._safe
        with atomic_path(self.state_path, ".npz") as tmp:
            np.savez(tmp, settings=np.array(self.settings), stored=k, step=step, elapsed_s=elapsed_s,
                     positions=self.positions[:k], energies=self.energies[:k], forces=self.forces[:k],
                     velocities=self.velocities[:k], temps=self.temps[:k], atom_positions=pos, atom_momenta=mom,
                     rng=np.array(json.dumps(rng)))

    def discard_state(self) -> None:
        if self.state_path is not None:
            self.state_path.unlink(missing_ok=True)

    def _record(self) -> None:
        k = self.step - self.n_eq
        if k >= 0 and k % self.save_every == 0:
            i, atoms = k // self.save_every, self.atoms
            self.positions[i] = atoms.get_positions()
            self.energies[i] = atoms.get_potential_energy()  # cached from the step's own call
            self.forces[i] = atoms.get_forces(apply_constraint=False)
            self.velocities[i] = atoms.get_velocities() * units.fs  # Å per ASE time unit -> Å/fs
            self.temps[i] = atoms.get_temperature()
            self.stored = i + 1

    def run(self, bar) -> None:
        """Raises SimulationError naming the step where GFN2-xTB failed, ValueError for a structure it
        refuses; on KeyboardInterrupt saves the state (when it has a path) and re-raises."""
        from tblite.exceptions import TBLiteRuntimeError  # lazily, as the calculator

        t0 = saved = time.perf_counter()
        try:
            if self.step == 0:
                self._record()
            self._snapshot()
            while self.step < self.last:
                self.dyn.step()
                self.step += 1
                bar.update(1)
                self._record()
                self._snapshot()
                if time.perf_counter() - saved >= CHECKPOINT_S:
                    self.save_state(self.elapsed_before + time.perf_counter() - t0)
                    saved = time.perf_counter()
        except InputError as err:  # tblite's own check of the structure, e.g. atoms on top of each other
            raise ValueError(f"simulate {self.name}: GFN2-xTB refused the structure: {err}") from err
        except (CalculationFailed, TBLiteRuntimeError) as err:  # SCF not converged, or tblite's library error
            raise SimulationError(f"simulate {self.name}: GFN2-xTB failed at MD step {self.step}: {err}") from err
        except KeyboardInterrupt:
            if self.state_path is not None:
                self.save_state(self.elapsed_before + time.perf_counter() - t0)
                print(f"simulate {self.name}: stopped at step {self._safe[0]} of {self.last} ({self._safe[1]} frames); "
                      f"the same command continues from {self.state_path}", file=sys.stderr)
            raise


def _versions() -> dict[str, str]:
    import ase
    import rdkit

    try:
        from importlib.metadata import version

        tb = version("tblite")
    except Exception:  # noqa: BLE001 - metadata is best effort
        tb = "unknown"
    return {"ase": ase.__version__, "tblite": tb, "rdkit": rdkit.__version__}
