"""A trained run, ready to roll out: the one home of what every rollout of a checkpoint needs.

``load_run`` reads the newest good checkpoint of a run directory into a ``TrainedRun``: the score
network (eval mode), its SDE and sampler, the resolved config (with overrides), and the record of
the training data (frame time, temperature, elements, valence types, molecule count). The run then
builds a rollout's start, from frames of a reference trajectory (``start_from_frames``) or from one
structure (``start_from_structure``: made whole, velocities from the file or Maxwell-Boltzmann, a
constant-velocity history), each checked against what the model knows (dynamics.preflight); its
frame corrections; and its Stepper. ``diffmd generate``, the ASE integrator, the experiments and
the benchmarks all go through it.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import Config, RolloutConfig
from ..data.batch import FrameBatch
from ..ops.graph import Graph
from .checkpoint import load_latest


@dataclass(frozen=True)
class RolloutStart:
    """A rollout's first window and what building it found."""

    batch: FrameBatch  # the windows of every molecule (centred in float64), on the run's device
    frame_fs: float  # fs between the window's frames: the model's frame time
    graph: Graph  # the start frame's topology (valence.topology.topology_graph), perceived once: checked, then held
    notes: tuple[str, ...] = ()  # warnings of the start checks (only with allow_unseen)
    velocity_note: str | None = None  # where a structure's velocities came from
    positions: np.ndarray | None = None  # (N, 3) Å: a one-structure start made whole
    velocities: np.ndarray | None = None  # (N, 3) Å/fs: its start velocities


@dataclass(frozen=True)
class TrainedRun:
    """A training run loaded for inference (module docstring). ``data``: the training data's record
    (empty for checkpoints written before it existed)."""

    model: torch.nn.Module
    sde: Any
    sampler: Any
    config: Config
    path: Path
    data: dict

    @property
    def dtype(self) -> torch.dtype:
        return getattr(torch, self.config.train.dtype)

    def prior_alone(self) -> "TrainedRun":
        """This run with its network removed: the anchor's valence force field alone
        (nn.score_net.AnchorScore), without the step fluctuation measured for the network's step (the
        prior's Verlet step has no friction to balance). The baseline every full-model figure sits beside."""
        from ..nn.score_net import AnchorScore

        data = {k: v for k, v in self.data.items() if k != "step_friction"}
        return dataclasses.replace(self, model=AnchorScore(self.model), data=data)

    def frame_time(self, reference=None) -> float:
        """fs between generated frames: the checkpoint's record, else the time step of the Trajectory
        ``reference`` times the run's stride. Raises ValueError when neither tells it."""
        frame_fs = self.data.get("frame_fs") or (reference.dt_fs * self.config.train.stride
                                                 if reference is not None and reference.dt_fs else None)
        if not frame_fs:
            raise ValueError(f"{self.path} does not record its frame time (an older checkpoint); start from a "
                             "reference trajectory with --start, whose time step sets it")
        return float(frame_fs)

    def rollout(self, temperature_K: float | None = None) -> RolloutConfig:
        """The [rollout] section with ``temperature_K`` K as the thermostat's target when given, else
        its own rollout.temperature_K, else the training data's temperature. Raises ValueError when
        the thermostat needs a temperature none of them gives (a checkpoint older than the data record)."""
        cfg = self.config.rollout
        target = temperature_K or cfg.temperature_K or self.data.get("temperature_K")
        if cfg.thermostat != "none" and not target:
            raise ValueError(f"the {cfg.thermostat} thermostat needs a target temperature and this checkpoint does not "
                             "record its training data's: give one (--temperature K, temperature_K=) or switch it off "
                             "(--set rollout.thermostat=none)")
        return dataclasses.replace(cfg, temperature_K=target) if cfg.thermostat != "none" else cfg

    def corrections(self, frame_fs: float, rollout: RolloutConfig | None = None) -> list:
        """The frame corrections of ``rollout`` (default: this run's ``rollout()``) at the model's frame
        time ``frame_fs`` (fs), the step's fluctuation from the checkpoint's measured friction when it has one."""
        from ..dynamics.physics import corrections_from_config
        from .calibration import friction_table

        rollout = rollout or self.rollout()
        record = self.data.get("step_friction")
        return corrections_from_config(rollout, frame_fs, self.data.get("temperature_K"), friction_table(record),
                                       friction_table(record, "stretch_friction_per_fs"))

    def start_from_frames(self, reference, starts: Sequence[int], *, device: Any = "cpu", allow_unseen: bool = False,
                          what: str = "the reference", guard=None) -> RolloutStart:
        """The windows of the Trajectory ``reference`` at frames ``starts``: the frame and the two one
        model frame time before it (``frame_stride`` frames of the reference apart, whatever its time
        step), every start checked (dynamics.preflight.check_start). Raises ValueError as
        frame_stride, check_start and start_batch do."""
        from ..data import start_batch
        from ..dynamics.preflight import check_start

        frame_fs = self.frame_time(reference)
        batch = start_batch([reference] * len(starts), list(starts), stride=self.frame_stride(reference, what),
                            dtype=self.dtype)
        graph, notes = check_start(self, batch.x.double().numpy(), batch.z.numpy(), batch=batch.batch.numpy(),
                                   allow_unseen=allow_unseen, what=what, guard=guard, bonds=batch.bonds)
        return RolloutStart(batch.to(device), frame_fs, graph.to(device), tuple(notes))

    def frame_stride(self, reference, what: str = "the reference") -> int:
        """Frames of the Trajectory ``reference`` per model frame: the model's frame time over the
        reference's time step (the training stride for a trajectory at the training data's step; 1
        for a rollout of this model's own output). Raises ValueError when the reference's step does
        not divide the frame time."""
        frame_fs = self.frame_time(reference)
        if not reference.dt_fs:
            return self.config.train.stride
        ratio = frame_fs / reference.dt_fs
        k = round(ratio)
        if k < 1 or abs(ratio - k) > 1e-6 * ratio:
            raise ValueError(f"{what}: its frames are {reference.dt_fs:g} fs apart, which does not divide the model's "
                             f"{frame_fs:g} fs frame time; give a trajectory saved every {frame_fs:g} fs or a divisor of it")
        return k

    def start_from_structure(self, atoms, *, temperature_K: float | None = None, seed: int = 1, device: Any = "cpu",
                             allow_unseen: bool = False, what: str = "the structure", guard=None) -> RolloutStart:
        """The window of one ase.Atoms ``atoms`` (made whole when periodic, data.build.whole_structure):
        its velocities from the file when it has them, else Maxwell-Boltzmann at ``temperature_K`` K
        (seeded by ``seed``), the history built from them at the run's frame time
        (dynamics.start.history_from_velocities). Raises ValueError for elements or (without
        ``allow_unseen``) types the checkpoint was not trained on, fused atoms (closer than ``guard``'s
        contact limit, a dynamics.guards.GuardConfig), a condensed phase, missing velocities without a
        temperature, or an unknown frame time."""
        from ..data.build import whole_structure
        from ..dynamics.preflight import check_start
        from ..dynamics.start import history_from_velocities, start_velocities

        whole = whole_structure(atoms, what)
        graph, notes = check_start(self, whole.positions, whole.numbers, allow_unseen=allow_unseen, what=what, guard=guard)
        frame_fs = self.frame_time()
        v, velocity_note = start_velocities(whole, temperature_K, seed)
        batch = history_from_velocities(whole.positions, v, whole.numbers, frame_fs, dtype=self.dtype).to(device)
        return RolloutStart(batch, frame_fs, graph.to(device), tuple(notes), velocity_note, whole.positions, v)

    def stepper(self, start: RolloutStart, *, rollout: RolloutConfig | None = None, **kwargs):
        """A dynamics.Stepper driving this run's network from ``start`` at its frame time, with the
        corrections and the compile setting of ``rollout`` (default: this run's ``rollout()``); further
        keyword arguments (generator, guard, strict) go to the Stepper."""
        from ..dynamics.stepper import Stepper

        rollout = rollout or self.rollout()
        model, corrections = self.rollout_model(rollout), self.corrections(start.frame_fs, rollout)
        return Stepper(model, self.sde, self.sampler, start.batch, graph=start.graph, corrections=corrections,
                       compile=rollout.compile, **kwargs)

    def rollout_model(self, rollout: RolloutConfig | None = None) -> torch.nn.Module:
        """The network a rollout of ``rollout`` (default: this run's [rollout] section) drives (``rollout_model``)."""
        return rollout_model(self.model, rollout or self.config.rollout, self.data.get("temperature_K"))


def rollout_model(model: torch.nn.Module, rollout: RolloutConfig, temperature_K: float | None) -> torch.nn.Module:
    """``model`` as a rollout drives it: with ``rollout.prior_fallback`` > 0, a ScoreNet with a valence
    prior and the training data's temperature ``temperature_K`` (K) known, wrapped so that bonds outside
    the data's range follow the prior (nn.score_net.PriorFallback); otherwise ``model`` itself."""
    from ..nn.score_net import PriorFallback, ScoreNet

    if rollout.prior_fallback > 0 and isinstance(model, ScoreNet) and model.bond_prior is not None and temperature_K:
        return PriorFallback(model, temperature_K, rollout.prior_fallback, rollout.prior_fallback_energy)
    return model


SAMPLING_SECTIONS = ("sampler", "rollout")  # what may change after training: how frames are drawn and corrected


def load_run(directory: str | Path, device: Any = "cpu", overrides: Sequence[str] = ()) -> TrainedRun:
    """Load the newest good checkpoint of a run directory, with ``overrides`` ("section.field=value")
    of its SAMPLING_SECTIONS. Raises FileNotFoundError when there is none (or ``directory`` is a
    file), CheckpointError when every checkpoint is corrupt, and ValueError for an override of a
    setting the checkpoint fixes ([model], [sde], [train])."""
    from ..diffusion.samplers import make_sampler
    from ..diffusion.sde import make_sde
    from ..nn.score_net import ScoreNet

    fixed = [o for o in overrides if o.partition("=")[0].strip().partition(".")[0] not in SAMPLING_SECTIONS]
    if fixed:
        raise ValueError(f"override {fixed[0]!r}: a trained run's [model], [sde] and [train] settings are fixed by its "
                         f"checkpoint; only {' and '.join(s + '.*' for s in SAMPLING_SECTIONS)} can be set for sampling")
    run = Path(directory)
    if run.is_file():
        raise FileNotFoundError(f"{run} is a file: give the run directory that holds it ({run.parent})")
    if not run.is_dir():
        raise FileNotFoundError(f"checkpoint directory {run} does not exist")
    found = load_latest(run, map_location=device)
    if found is None:
        raise FileNotFoundError(f"{run} holds no checkpoint (ckpt_*.pt)")
    state, path = found
    cfg = Config.from_dict(state["config"]).with_overrides(list(overrides))
    model = ScoreNet(cfg.model).to(device=device, dtype=getattr(torch, cfg.train.dtype))  # before loading: no rounding
    model.load_state_dict(state["model"])
    return TrainedRun(model.eval(), make_sde(cfg.sde), make_sampler(cfg.sampler), cfg, path, dict(state.get("data", {})))
