"""DiffMD as an ASE integrator: ``DiffMDDynamics`` runs a trained checkpoint like VelocityVerlet.

    from ase.io import read, Trajectory
    from ase.md import MDLogger
    from diffmd_fast.ase import DiffMDDynamics

    atoms = read("mol.xyz")
    dyn = DiffMDDynamics(atoms, checkpoint="runs/eth", temperature_K=500)
    dyn.attach(Trajectory("out.traj", "w", atoms).write, interval=10)
    dyn.attach(MDLogger(dyn, atoms, "md.log"), interval=100)
    dyn.run(10000)

Each step samples the next frame with the shared rollout loop (dynamics.stepper.Stepper, the same
object ``diffmd generate`` and the evaluation harness drive) and writes it to the Atoms: the
positions, and the velocities implied by consecutive frames, (x(t+1) - x(t)) / Δt, in ASE units (a
phase-space model's own carried velocities instead, model.prior_substeps).
The time step is the model's frame time. The Stepper holds the state (the last three frames), so
positions changed on the Atoms between steps are overwritten by the next step, not conditioned on.

DiffMD has no potential energy: when the Atoms have no calculator, ``NoPotential`` is attached,
which reports NaN energy and forces so that MDLogger prints the kinetic energy and temperature
(and NaN for Epot and Etot). Attach a real calculator (e.g. tblite's) to log true energies.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
from ase import Atoms, units
from ase.calculators.calculator import Calculator, all_changes
from ase.md.md import MolecularDynamics

from .dynamics.guards import GuardConfig
from .training.run import load_run

__all__ = ["DiffMDDynamics", "NoPotential"]


class NoPotential(Calculator):
    """A calculator for models without an energy: NaN energy (eV) and forces (eV/Å)."""

    implemented_properties = ["energy", "forces"]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.results = {"energy": float("nan"), "forces": np.full((len(self.atoms), 3), np.nan)}


class DiffMDDynamics(MolecularDynamics):
    """ASE molecular dynamics driven by a DiffMD checkpoint (see the module docstring).

    atoms: one molecule; its velocities (momenta) start the run, or, when it has none (or all
    zero), velocities drawn from Maxwell-Boltzmann at ``temperature_K`` (zero net linear and
    angular momentum, seeded by ``seed``). checkpoint: a training run directory. temperature_K
    also sets the Langevin thermostat's target when the run's [rollout] section uses one (else the
    training data's temperature). overrides: config overrides ("sampler.eps=0.01", ...).
    guard: the rollout health checks; a failing frame raises RolloutStopped (a FloatingPointError).
    allow_unseen: roll out a structure with valence types or a molecule count the checkpoint was
    not trained on, with a warning and generic prior terms (dynamics.preflight.check_start).
    trajectory, logfile, loginterval and further keyword arguments go to MolecularDynamics.

    A periodic molecule is made whole first (its positions on ``atoms`` replaced, pbc switched
    off: the rollout is in vacuum). Raises ValueError for elements or (without allow_unseen) types
    the checkpoint was not trained on, fused atoms, a condensed phase, missing velocities without a
    temperature, or a checkpoint that does not record its frame time."""

    def __init__(self, atoms: Atoms, checkpoint: str, *, temperature_K: float | None = None, seed: int = 1,
                 device: str | torch.device = "cpu", overrides: Sequence[str] = (),
                 guard: GuardConfig = GuardConfig(), allow_unseen: bool = False, trajectory=None, logfile=None,
                 loginterval: int = 1, **kwargs):
        run = load_run(checkpoint, device, overrides)
        start = run.start_from_structure(atoms, temperature_K=temperature_K, seed=seed, device=device,
                                         allow_unseen=allow_unseen, what="the Atoms object", guard=guard)
        for note in start.notes:
            warnings.warn(note, stacklevel=2)
        atoms.positions, atoms.pbc, velocities = start.positions, False, start.velocities
        self.velocity_source, self.run_info, self.frame_fs = start.velocity_note, run, start.frame_fs
        self.stepper = run.stepper(start, rollout=run.rollout(temperature_K), guard=guard,
                                   generator=torch.Generator(device=device).manual_seed(seed), strict=True)
        atoms.set_velocities(velocities / units.fs)  # Å/fs -> ASE units
        if atoms.calc is None:
            atoms.calc = NoPotential()
        super().__init__(atoms, self.frame_fs * units.fs, trajectory=trajectory, logfile=logfile,
                         loginterval=loginterval, **kwargs)

    def step(self) -> None:
        """Sample the next frame and write positions and velocities (implied, or a phase-space model's
        carried ones) to the atoms."""
        absolute = self.stepper.start.absolute  # the stepper works on the molecule centred in float64
        before = absolute(self.stepper.positions).cpu().numpy().copy()  # step() updates positions in place
        after = absolute(self.stepper.step()).cpu().numpy()  # (N, 3) Å
        self.atoms.set_positions(after)
        carried = self.stepper.frame.v
        velocities = (after - before) / self.frame_fs if carried is None else carried.double().cpu().numpy()  # Å/fs
        self.atoms.set_velocities(velocities / units.fs)

    def _refresh_properties(self) -> None:
        """DiffMD needs no forces: skip the force evaluation MolecularDynamics does after each step."""
