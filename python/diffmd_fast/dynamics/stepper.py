"""The one rollout loop: a ``Stepper`` holds the last three frames of every molecule (and, for a
phase-space model, each atom's velocity) and ``step()`` samples the next frame, ASE-integrator style
(state, step(), attached observers, run(n)).

``rollout`` (in-memory rollouts for evaluation and validation), ``diffmd generate`` (streaming to
disk, resumable) and the ASE integrator ``DiffMDDynamics`` all drive this object.

One step: sample x(t+1) from the reverse process conditioned on the window (x(t-2), x(t-1), x(t));
apply the frame corrections (physics.py: momentum projection, thermostat) in order; run the health
checks (guards.py). A molecule that fails is *stopped*: it is cut out of the batch and the frame is
sampled again for the others from the same random state (a sampler couples molecules only through
shared machinery such as the adaptive ODE step size, so the survivors get exactly the frame a run
without the failed molecule gives). Its later positions are NaN, never presented as valid.
Non-finite scores are zeroed inside the sampler so that one NaN cannot poison the shared step-size
control, and flag their molecule when they occur at a legitimate point of [eps, 1].
"""
from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable, Sequence

import torch

from ..data.batch import FrameBatch
from ..diffusion.samplers import Sampler
from ..diffusion.sde import SDE
from ..nn.score_net import is_phase_space, score_net_of
from ..ops.graph import Graph
from ..valence.topology import topology_graph
from ..valence.verlet import next_velocity
from .guards import GuardConfig, RolloutGuard, StopReport
from .correction import FrameCorrection


class RolloutStopped(FloatingPointError):
    """A strict rollout hit a failing molecule; ``report`` says where and why."""

    def __init__(self, report: StopReport) -> None:
        super().__init__(report.message())
        self.report = report


def _subgraph(graph: Graph, keep: torch.Tensor) -> Graph:
    """The graph on the atoms ``keep`` (N,) bool, renumbered; edges must not leave kept molecules."""
    counts = graph.row_ptr[1:] - graph.row_ptr[:-1]  # (N,)
    edge_keep = torch.repeat_interleave(keep, counts)  # (E,)
    senders = graph.col[edge_keep]
    if not bool(keep[senders].all()):
        raise ValueError("rollout graph has edges between different molecules; cannot drop a stopped molecule")
    new_index = torch.cumsum(keep.to(torch.int64), 0) - 1
    row_ptr = torch.cat([counts.new_zeros(1), torch.cumsum(counts[keep], 0)])
    def sub(t: torch.Tensor | None, owner: int) -> torch.Tensor | None:  # the columns of kept atoms, renumbered
        return None if t is None else new_index[t[:, keep[t[owner]]]]

    environments = None if graph.environments is None else graph.environments[keep]
    return Graph(row_ptr, new_index[senders], sub(graph.bonds, 0), sub(graph.angles, 1), environments,
                 sub(graph.dihedrals, 1), sub(graph.nonbonded, 0))


def _select(frame: FrameBatch, keep: torch.Tensor) -> FrameBatch:
    """The sub-batch of the molecules ``keep`` (B,) bool, molecule indices renumbered 0..B'-1."""
    atoms = keep[frame.batch]  # (N,)
    new_id = torch.cumsum(keep.to(torch.int64), 0) - 1
    new_atom = torch.cumsum(atoms.to(torch.int64), 0) - 1  # (N,) index among the kept atoms
    bonds = None if frame.bonds is None else new_atom[frame.bonds[:, atoms[frame.bonds[0]]]]  # a molecule's bonds stay in it
    return FrameBatch(z=frame.z[atoms], x_prev2=frame.x_prev2[atoms], x_prev=frame.x_prev[atoms], x=frame.x[atoms],
                      x_next=frame.x_next[atoms], batch=new_id[frame.batch[atoms]], num_graphs=int(keep.sum()),
                      origin=None if frame.origin is None else frame.origin[keep.to(frame.origin.device)],
                      v=None if frame.v is None else frame.v[atoms], bonds=bonds)


def sample_frame(model, sde: SDE, sampler: Sampler, frame: FrameBatch, graph: Graph,
                 generator: torch.Generator | None, x_anchor: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, int, torch.Tensor]:
    """(x (N, 3) Å, nfe, bad_score (N,) bool): one reverse-process sample after ``frame``; ``x_anchor``
    (N, 3) Å: the model's anchor when the caller has computed it (passed on to every score call)."""
    cond = sde.condition(frame)  # (N, 1)
    lowest = sampler.eps * (1.0 - 1e-6)  # exp(log eps) may round below eps
    bad = torch.zeros(frame.x.shape[0], dtype=torch.bool, device=frame.x.device)

    def score_fn(x: torch.Tensor, s: torch.Tensor, std: torch.Tensor | None = None) -> torch.Tensor:
        if std is None:
            std = sde.marginal_std(s, cond)  # (N, 1) Å
        score = model(frame, x, std, graph) if x_anchor is None else model(frame, x, std, graph, x_anchor=x_anchor)
        # Every non-finite score is zeroed so that no NaN reaches the shared step-size control, but
        # it is the molecule's fault only at a legitimate point: adaptive solvers also probe times
        # outside [eps, 1] and wild trial steps, and reject those steps themselves.
        finite = torch.isfinite(score).all(-1, keepdim=True)  # (N, 1)
        inside = (s >= lowest) & (std > 0) & torch.isfinite(x).all(-1, keepdim=True)  # (N, 1)
        bad.logical_or_((inside & ~finite).squeeze(-1))  # no host sync: read once per frame
        return torch.where(finite, score, 0.0)

    res = sampler.sample(score_fn, sde, cond, sampler.start(frame), frame.batch, generator)
    return res.x, res.nfe, bad


def sample_step(model, sde: SDE, sampler: Sampler, frame: FrameBatch, graph: Graph, generator: torch.Generator | None
                ) -> tuple[torch.Tensor, torch.Tensor | None, int, torch.Tensor]:
    """(x (N, 3) Å, v (N, 3) Å/fs or None, nfe, bad_score (N,) bool): ``sample_frame``, and for a
    phase-space model the velocity it carries to x (valence.verlet.next_velocity about the prior's
    step, which is computed once for the anchor of every score call and for the velocity)."""
    net = score_net_of(model)
    if net is None or net.cfg.prior_substeps == 0:
        x, nfe, bad = sample_frame(model, sde, sampler, frame, graph, generator)
        return x, None, nfe, bad
    x_prior, v_prior = net.prior_step(frame, graph)
    x, nfe, bad = sample_frame(model, sde, sampler, frame, graph, generator, x_prior)
    return x, next_velocity(x, x_prior, v_prior, net.frame_fs), nfe, bad


def _inductor(graph_module, example_inputs):
    """torch.compile's inductor backend for a rollout frame, without size asserts in the generated code
    (Stepper.__init__) and without the FutureWarning inductor's own lowering raises (torch 2.13 calls a
    helper it has deprecated): a warning about torch, not the rollout, once per compilation. Filtered
    here, where compilation happens, and nowhere on the frames' path."""
    from torch._inductor.compile_fx import compile_fx

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\._inductor")
        return compile_fx(graph_module, example_inputs, config_patches={"size_asserts": False})


Observer = Callable[["Stepper"], None]


class Stepper:
    """Autoregressive generation of every molecule of ``start`` (a FrameBatch whose x_prev2, x_prev,
    x are the last three known frames, Å).

    model: the score network (put in eval mode while stepping); sde, sampler: the reverse process;
    corrections: FrameCorrection objects applied to each sampled frame in order; graph: the
    rollout's fixed topology (valence.topology.topology_graph: the start's bonds, FrameBatch.bonds,
    else perceived on its frame), which the network, the prior and the guards read; built here when
    None; guard: thresholds of the health checks; generator: the random stream of the sampler and the
    corrections (saved by ``state_dict`` for exact resumption); strict: raise RolloutStopped on the first failure
    instead of stopping the molecule; compile: run each frame (``frame_step``: the sampler with the
    score network and its fused ops, the corrections, the health checks) as one torch.compile graph,
    the per-call overhead that dominates at small batch gone after a one-off compilation (3-30 s on a
    CPU). Its shapes stay static: a stopped molecule is not cut out of a compiled rollout but frozen
    in place (its window at rest, its frames overwritten by its last valid one, its checks masked),
    so a stop never recompiles; an eager rollout cuts it out instead, which saves its compute. A
    compiler failure falls back to eager mode with a warning.

    Positions are in the start batch's frame (molecules centred in float64 when the batch was built
    with ``centre=True``; ``start.absolute(positions)`` puts them back in the data's frame).
    After ``step()``: ``positions`` (N, 3) Å is the newest frame of every start atom (NaN for stopped
    molecules), ``frame`` the window of the active molecules, ``t`` the number of frames generated,
    ``last_nfe`` the score evaluations of that step, ``stopped`` (B,) the StopReport of each stopped
    molecule (None while active)."""

    def __init__(self, model: torch.nn.Module, sde: SDE, sampler: Sampler, start: FrameBatch, *,
                 corrections: Sequence[FrameCorrection] = (), guard: GuardConfig = GuardConfig(),
                 generator: torch.Generator | None = None, graph: Graph | None = None, strict: bool = False,
                 compile: bool = False) -> None:
        max_z = getattr(getattr(model, "cfg", None), "max_z", None)
        if max_z is not None and (int(start.z.max()) > max_z or int(start.z.min()) < 0):
            raise ValueError(f"atomic numbers must lie in 0..{max_z} for this model, got {start.z.min()}..{start.z.max()}")
        self.model, self.sde, self.sampler = model, sde, sampler
        # a phase-space model carries each atom's velocity (FrameBatch.v) and its corrections act on it
        self._phase_space = is_phase_space(model)
        if self._phase_space and start.v is None:
            raise ValueError("this phase-space model (model.prior_substeps > 0) needs the start's velocities "
                             "(FrameBatch.v, Å/fs: start_batch(velocities=True) or history_from_velocities)")
        self.corrections, self.generator, self.strict = tuple(corrections), generator, strict
        # the rollout's fixed topology: the start's covalent bonds (its trajectory's, else its frame's), angles,
        # dihedrals and environments, which the prior holds together however far a frame stretches them
        self.graph = topology_graph(start.x.double(), start.z, start.batch, bonds=start.bonds) if graph is None else graph
        if start.bonds is None and self.graph.bonds is not None:  # every window carries them (the corrections read them)
            start = dataclasses.replace(start, bonds=self.graph.bonds)
        self.start = start
        self.frame = start
        self.guard = RolloutGuard(guard, start, self.graph)
        self._start_graph, self._start_guard = self.graph, self.guard  # what a resumed state is cut from
        self.atom_ids = torch.arange(start.x.shape[0], device=start.x.device)  # (N',) start index of active atoms
        self.stopped: list[StopReport | None] = [None] * start.num_graphs
        # (B,) bool: molecules of ``frame`` still rolled out (all but the frozen ones of a compiled rollout)
        self.active = torch.ones(start.num_graphs, dtype=torch.bool, device=start.x.device)
        self._masked = compile
        self._num_active = start.num_graphs
        # each correction's ξ of the last accepted frame (every start atom), for those with noise_memory
        self._last_noise: list[torch.Tensor | None] = [None] * len(self.corrections)
        self._drawn: list[torch.Tensor | None] = list(self._last_noise)
        self.t = 0
        self.last_nfe = 0
        self.total_nfe = 0
        self.positions = start.x.clone()  # (N, 3) Å
        self._observers: list[tuple[Observer, int]] = []
        # static shapes: a graph specialised to this batch (a stop recompiles; shapes marked dynamic ran
        # 2-5x slower per frame at batch 1-10). No size asserts in the generated code: dynamo's guards
        # already check every input's shape, and ~100 asserts a call cost ~10 % of a batch-1 frame.
        self._compiled = torch.compile(self.frame_step, dynamic=False, backend=_inductor) if compile else None
        self._caches_filled = False  # see _run_frame

    @property
    def num_active(self) -> int:
        return self._num_active

    def attach(self, observer: Observer, interval: int = 1) -> None:
        """Call ``observer(stepper)`` after every ``interval``-th step (ASE's dyn.attach)."""
        if interval < 1:
            raise ValueError(f"observer interval must be >= 1, got {interval}")
        self._observers.append((observer, interval))

    def _stop(self, failed: torch.Tensor, x: torch.Tensor, bad: torch.Tensor) -> None:
        for report in self.guard.reports(failed, self.frame.x, x, bad, frame=self.t + 1):
            if self.strict:
                raise RolloutStopped(report)
            self.stopped[report.molecule] = report
        if self._masked:  # frozen in place: the same shapes, so the compiled frame is reused
            self.active = self.active & ~failed
            self._num_active = int(self.active.sum())
            atoms = failed[self.frame.batch].unsqueeze(-1)  # (N, 1)
            self.positions[self.atom_ids[atoms.squeeze(-1)]] = float("nan")
            f = self.frame
            self.frame = dataclasses.replace(f, x_prev2=torch.where(atoms, f.x, f.x_prev2),
                                             x_prev=torch.where(atoms, f.x, f.x_prev),
                                             v=None if f.v is None else torch.where(atoms, 0.0, f.v))
            return
        keep = ~failed
        atoms = keep[self.frame.batch]
        self.positions[self.atom_ids[~atoms]] = float("nan")
        self.frame, self.graph = _select(self.frame, keep), _subgraph(self.graph, atoms)
        self.guard, self.atom_ids = self.guard.subset(keep, self.frame), self.atom_ids[atoms]
        self.active = self.active[keep]
        self._num_active = self.frame.num_graphs
        self._caches_filled = False

    def frame_step(self, frame: FrameBatch, graph: Graph, noises: list[torch.Tensor | None], active: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor | None, int, torch.Tensor, torch.Tensor]:
        """(x (N, 3) Å, v (N, 3) Å/fs or None, nfe, bad_score (N,) bool, failed (B,) bool): the next frame
        of ``frame`` sampled, corrected with the corrections' pre-drawn ``noises`` and checked, and its
        velocity for a phase-space model (``sample_step``, then the corrections' phase forms); molecules
        not ``active`` (B,) keep their frame and never fail. Deterministic given its inputs for a
        deterministic sampler (heun), so one compiled graph with no host sync inside."""
        keep = active[frame.batch].unsqueeze(-1)  # (N, 1)
        x, v, nfe, bad = sample_step(self.model, self.sde, self.sampler, frame, graph, self.generator)
        if v is not None:  # phase space: the corrections act on the carried velocity, after the model's step
            for correct, noise in zip(self.corrections, noises):
                x, v = correct.phase(frame, x, v, noise)
            v = torch.where(keep, v, frame.v)
        else:
            for correct, noise in zip(self.corrections, noises):
                x = correct(frame, x, noise)
        x = torch.where(keep, x, frame.x)
        return x, v, nfe, bad, self.guard.check(frame.x, x, bad) & active

    def _run_frame(self) -> tuple[torch.Tensor, torch.Tensor | None, int, torch.Tensor, torch.Tensor]:
        # drawn for every atom of the start, then the rolled-out ones taken: a molecule's random numbers do
        # not depend on which others have stopped (cut out or frozen, the survivors' frames are the same)
        drawn = [correct.noise(self.start, self.generator) for correct in self.corrections]
        self._drawn = drawn  # this frame's ξ, the next frame's ξ(t-1) once the frame is accepted
        noises = [n if n is None or p is None or self._phase_space or not getattr(c, "noise_memory", False)
                  else (p + n) * 0.5**0.5 for c, n, p in zip(self.corrections, drawn, self._last_noise)]
        if self.atom_ids.numel() != self.start.x.shape[0]:
            noises = [None if n is None else n[self.atom_ids] for n in noises]
        if self._compiled is None:
            return self.frame_step(self.frame, self.graph, noises, self.active)
        if not self._caches_filled:
            # The first frame of a set of atoms runs eagerly once: it fills the lazy per-window caches (the
            # network's parameter list, masses, guard tables, the sampler's grid). Traced instead, their
            # construction would become part of the graph and be replayed on every frame (~2x slower). Its
            # result is dropped and the random stream rewound, so that every frame of a compiled rollout
            # comes from the compiled graph: eager and compiled frames differ in rounding, which a chaotic
            # trajectory amplifies, and a run resumed from its state would otherwise part from the original.
            rng_state = self.generator.get_state() if self.generator is not None else None
            self.frame_step(self.frame, self.graph, noises, self.active)
            if rng_state is not None:
                self.generator.set_state(rng_state)
            self._caches_filled = True
        from torch._dynamo.exc import TorchDynamoException

        try:
            return self._compiled(self.frame, self.graph, noises, self.active)
        except TorchDynamoException as err:  # no working compiler here: eager gives the same frames, slower
            warnings.warn(f"torch.compile failed, rolling out in eager mode: {str(err).splitlines()[0]}", stacklevel=3)
            self._compiled = None
            return self.frame_step(self.frame, self.graph, noises, self.active)

    @torch.no_grad()
    def step(self) -> torch.Tensor:
        """Generate one frame for every active molecule; returns ``positions`` (N, 3) Å."""
        was_training = self.model.training
        if was_training:  # toggling walks every submodule: only when needed (costly at batch 1)
            self.model.eval()
        try:
            rng_state = self.generator.get_state() if self.generator is not None else None
            nfe = 0
            while self.num_active > 0:
                x, v, n, bad, failed = self._run_frame()  # failed: (B',) bool
                nfe += n
                if not bool(failed.any()):
                    self._last_noise = self._drawn
                    shown = x if self.num_active == self.frame.num_graphs else torch.where(
                        self.active[self.frame.batch].unsqueeze(-1), x, float("nan"))  # frozen molecules: NaN
                    self.positions.index_copy_(0, self.atom_ids, shown)  # atom_ids unique: an index_put without its checks
                    self.frame = self.frame.advance(x, v)
                    break
                self._stop(failed, x, bad)
                if rng_state is not None:
                    self.generator.set_state(rng_state)
        finally:
            if was_training:
                self.model.train()
        self.t += 1
        self.last_nfe = nfe
        self.total_nfe += nfe
        for observer, interval in self._observers:
            if self.t % interval == 0:
                observer(self)
        return self.positions

    def run(self, steps: int, *, progress: bool = False, desc: str = "rollout", frame_fs: float | None = None,
            stop: Callable[["Stepper"], bool] | None = None) -> int:
        """Up to ``steps`` calls of step(); ends early when every molecule has stopped or ``stop(self)``
        says so (checked before each step). Returns the frames generated. ``progress``: a tqdm bar
        with the stopped molecules, and with ``frame_fs`` (fs per frame) the simulated ps and ps per
        wall second. The one loop every caller drives (ASE's dyn.run(n) the same way)."""
        from tqdm.auto import tqdm

        first, wall0 = self.t, time.perf_counter()
        was_training = self.model.training
        self.model.eval()  # once for the whole run: toggling walks every submodule, ~0.2 ms a frame at batch 1
        try:
            with tqdm(total=steps, unit="frame", disable=not progress, desc=desc, mininterval=1.0) as bar:
                for _ in range(steps):
                    if self.num_active == 0 or (stop is not None and stop(self)):
                        break
                    self.step()
                    if progress:
                        bar.update(1)
                        info = {"stopped": self.start.num_graphs - self.num_active}
                        if frame_fs:
                            rate = (self.t - first) * frame_fs / 1000 / max(time.perf_counter() - wall0, 1e-9)
                            info.update(ps=f"{self.t * frame_fs / 1000:.3f}", ps_per_s=f"{rate:.3g}")
                        bar.set_postfix(info, refresh=False)
        finally:
            self.model.train(was_training)
        return self.t - first

    def state_dict(self) -> dict:
        """Everything needed to continue exactly: the active windows, the stop reports, the RNG."""
        f = self.frame
        return {"t": self.t, "total_nfe": self.total_nfe, "atom_ids": self.atom_ids.cpu(),
                "x_prev2": f.x_prev2.cpu(), "x_prev": f.x_prev.cpu(), "x": f.x.cpu(), "positions": self.positions.cpu(),
                "v": None if f.v is None else f.v.cpu(),
                "stopped": [None if r is None else r.to_dict() for r in self.stopped],
                "last_noise": [None if n is None else n.cpu() for n in self._last_noise],
                "generator": None if self.generator is None else self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        """Restore a state saved from a Stepper built on the same start batch."""
        dev = self.start.x.device
        keep_atoms = torch.zeros(self.start.x.shape[0], dtype=torch.bool, device=dev)
        keep_atoms[state["atom_ids"].to(dev)] = True
        keep = torch.zeros(self.start.num_graphs, dtype=torch.bool, device=dev)
        keep[self.start.batch[keep_atoms]] = True
        frame = _select(self.start, keep)
        self.guard = self._start_guard.subset(keep, frame)
        self.graph = _subgraph(self._start_graph, keep_atoms)
        like = self.start.x
        self.frame = dataclasses.replace(frame, x_prev2=state["x_prev2"].to(like), x_prev=state["x_prev"].to(like),
                                         x=state["x"].to(like), x_next=state["x"].to(like),
                                         v=None if state.get("v") is None else state["v"].to(like))
        self.atom_ids = state["atom_ids"].to(dev)
        self.positions = state["positions"].to(like)
        self.stopped = [None if r is None else StopReport(**r) for r in state["stopped"]]
        ids = torch.unique(self.start.batch[keep_atoms].cpu())  # the start molecules of self.frame, in order
        self.active = torch.tensor([self.stopped[int(b)] is None for b in ids], dtype=torch.bool, device=dev)
        self._num_active = int(self.active.sum())
        self.t, self.total_nfe = int(state["t"]), int(state["total_nfe"])
        saved = state.get("last_noise") or [None] * len(self.corrections)  # sidecars from before: none
        self._last_noise = [None if n is None else n.to(like.device) for n in saved]
        self._caches_filled = False
        if self.generator is not None and state["generator"] is not None:
            self.generator.set_state(state["generator"])
