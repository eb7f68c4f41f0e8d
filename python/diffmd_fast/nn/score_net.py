"""The EGT score network s_θ(x̃(t+1), s | M(t)) of DiffMD (Eqs. 12-17 stacked L times).

Inputs per atom: atomic number z, the conditioning frames (x(t), v(t) = x(t) - x(t-1)), the noisy
next frame x̃ (N, 3) Å and its per-atom noise std σ (N, 1) Å (the noise level of the SDE at time s).

Parameterisation (why): the EGL stack is a learned integrator that moves atoms, x_{l+1} = x_l +
v_{l+1}/L, started at x_0 = x̃ with v_0 = v(t) (the paper's velocity channel). Its displacement
Δ = κ (x_L - x̃) (Å, translation invariant, rotation/reflection equivariant; κ a learnable scale)
is read as the predicted *unit* noise, so
    score = (Δ - c · (x̃ - x_anchor) / σ) / σ,       x_anchor = x(t) + v(t),
i.e. σ·score = Δ - c (x̃ - x_anchor)/σ matches the DSM target -z (Eq. 8 with λ = σ²) at O(1) scale
for every noise level. The second term is our addition (``ModelConfig.anchor``): the paper's
network sees only x̃ and v(t), never x(t), so at realistic noise (σ ≫ one frame's displacement)
it cannot know where the molecule was and learns a conformation denoiser, not dynamics. The gate
c = sigmoid(w·h_L) in (0, 1) is invariant; for a Gaussian next-frame distribution N(x_anchor, τ²)
the exact score is this term alone with c = σ²/(σ² + τ²), so the EGL stack only has to learn the
(small, geometry-dependent) acceleration correction. ``anchor=False`` restores the paper's form.

``sigma_data`` > 0 (Å, beyond the paper; requires ``anchor``) switches to EDM preconditioning
(Karras et al. 2022) around the anchor: with σ_d the spread of x(t+1) about x(t) + v(t) in the
data, the network denoises D(x̃) = x_in + κ σ/√(σ² + σ_d²) (x_L - x_in), started from
x_in = x_anchor + c_skip (x̃ - x_anchor), c_skip = σ_d²/(σ² + σ_d²), and score = (D - x̃)/σ².
Why: the next frame lies within ~σ_d ≈ 0.002 Å (0.5 fs frames) of the anchor while the diffusion
runs up to σ ≈ 0.36 Å, so (1) the EGL stack starts from a geometry that is sensible at every noise
level (x_in ≈ anchor at high noise, ≈ x̃ at low noise) instead of a 0.36 Å-noisy one, (2) an
untrained network (κ = 0) is the exact posterior mean of a Gaussian of width σ_d around the anchor,
with no damping of the velocity, and (3) with the matching loss weight (losses.dsm_loss) the
high-noise estimate, which a one-step sampler uses, is trained as much as the low-noise ones.

``bond_prior`` (beyond the paper; valence/prior.py) adds to the anchor the Verlet step of a harmonic
covalent-bond model fitted to the training data, x_anchor = x(t) + v(t) + Δt² F_bond(x(t))/m, so the
network learns a correction to that step and, off the data, bonds pull back instead of the
constant-velocity default letting atoms fly off. A phase-space model (``prior_substeps``) anchors
instead on the prior's k velocity-Verlet substeps from x(t) and the window's velocity v(t)
(valence/verlet.py), and reads that velocity as the network's velocity input.

Node features (invariant): embedding of z, plus an MLP of [log(|v(t)| + 1e-4), log1p(|v(t)|/σ),
log1p(|x̃ - x_anchor|/σ)] and Gaussian Fourier features of log σ (the noise-level embedding).
"""
from __future__ import annotations

import math

import torch
from ase import units
from torch import nn

from ..config import ModelConfig
from ..data.batch import FrameBatch
from ..ops import fused
from ..ops.graph import Graph, complete_graph
from ..valence.prior import BondPrior
from ..valence.topology import window_graph
from ..valence.verlet import next_velocity, phase_step
from .egl import EGL


class GaussianFourierFeatures(nn.Module):
    """[sin 2π w·u, cos 2π w·u] of a scalar u with fixed random frequencies w ~ N(0, scale²)."""

    def __init__(self, num: int, scale: float = 1.0, seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.register_buffer("w", torch.randn(num, generator=gen) * scale)

    def forward(self, u: torch.Tensor) -> torch.Tensor:  # (N, 1) -> (N, 2 num)
        arg = 2 * math.pi * u * self.w.to(u.dtype)
        return torch.cat([torch.sin(arg), torch.cos(arg)], dim=-1)


class ScoreNet(nn.Module):
    def __init__(self, cfg: ModelConfig = ModelConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.max_z + 1, cfg.hidden)
        self.noise_features = GaussianFourierFeatures(cfg.num_fourier)
        self.scalar_mlp = nn.Sequential(
            nn.Linear(3 + 2 * cfg.num_fourier, cfg.hidden), nn.SiLU(), nn.Linear(cfg.hidden, cfg.hidden))
        self.layers = nn.ModuleList(
            EGL(hidden=cfg.hidden, heads=cfg.heads, ffn=cfg.ffn, cutoff=cfg.cutoff, num_radial=cfg.num_radial,
                num_spherical=cfg.num_spherical, dropout=cfg.dropout, num_layers=cfg.num_layers,
                backend=cfg.backend)
            for _ in range(cfg.num_layers))
        # ReZero-style: the EGL displacement enters through a learnable scale that starts at 0, so an
        # untrained network is the smooth Gaussian-prior score (anchor term) instead of random
        # O(1 Å) moves; the gate starts mostly open (c = 0.88) since the diffusion noise is far
        # larger than one frame's spread around x(t) + v(t).
        if cfg.sigma_data > 0 and not cfg.anchor:
            raise ValueError("model.sigma_data > 0 (EDM preconditioning about the anchor) needs model.anchor = true")
        if cfg.bond_prior and not cfg.anchor:
            raise ValueError("model.bond_prior (a prior on the anchor) needs model.anchor = true")
        self.bond_prior = BondPrior(cfg.max_z) if cfg.bond_prior else None
        self._checked_z: tuple[torch.Tensor, int] | None = None  # see _check_atomic_numbers
        self.fused_network = True  # False: always run the modules op by op (to compare or debug the op)
        self.delta_scale = nn.Parameter(torch.zeros(()) if cfg.anchor else torch.ones(()))
        self.gate = nn.Linear(cfg.hidden, 1) if cfg.anchor and cfg.sigma_data <= 0 else None
        if self.gate is not None:
            nn.init.zeros_(self.gate.weight)
            nn.init.constant_(self.gate.bias, 2.0)

    @property
    def frame_fs(self) -> torch.Tensor:
        """() float64 fs: the frame time of a model with a valence prior (its springs' time step times
        the substeps); 0 before the prior's tables are set."""
        return self.bond_prior.frame_fs * max(self.cfg.prior_substeps, 1)

    def prior_step(self, batch: FrameBatch, graph: Graph) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(x_anchor (N, 3) Å, v_anchor (N, 3) Å/fs or None): the anchor and, for a phase-space model
        (``model.prior_substeps``), the prior's velocity at it (valence.verlet.phase_step from x(t) and
        ``batch.v``). Raises ValueError when a phase-space model gets a window without velocities."""
        if self.cfg.prior_substeps > 0:
            if batch.v is None:
                raise ValueError("this phase-space model (model.prior_substeps > 0) needs each atom's velocity at x(t) "
                                 "(FrameBatch.v, Å/fs: start_batch(velocities=True) or history_from_velocities)")
            return phase_step(self.bond_prior, batch.x, batch.v, batch.z, graph, self.cfg.prior_substeps)
        x_anchor = 2.0 * batch.x - batch.x_prev
        if self.bond_prior is not None:
            x_anchor = x_anchor + self.bond_prior(batch.x, batch.z, graph)
        return x_anchor, None

    def anchor(self, batch: FrameBatch, graph: Graph) -> torch.Tensor:
        """(N, 3) Å: the constant-velocity step x(t) + v(t), plus the bond prior's Verlet displacement
        when ``model.bond_prior`` is set; a phase-space model's prior step (``prior_step``)."""
        return self.prior_step(batch, graph)[0]

    def previous_frame(self, batch: FrameBatch) -> torch.Tensor:
        """(N, 3) Å: the frame whose difference to x(t) is the network's velocity input: x(t-1), or for a
        phase-space model x(t) - v(t) Δt, the state's own velocity instead of the window's average."""
        if self.cfg.prior_substeps > 0 and batch.v is not None:
            return (batch.x.double() - batch.v.double() * self.frame_fs).to(batch.x.dtype)
        return batch.x_prev

    def fused_params(self) -> list[torch.Tensor]:
        """The parameters in the order of the ``diffmd_fast::egt_score`` op (csrc/egt_score).

        Detached aliases (the op has no backward, and tensors that require grad cost it ~2x at batch 1),
        built once and kept (walking the modules costs more than the op at batch 1). They share the
        parameters' storage, so optimiser steps and ``load_state_dict`` show through; ``.to()``,
        ``.double()`` and ``load_state_dict`` may replace Parameter objects, so they drop the list."""
        if getattr(self, "_fused_params", None) is None:
            self._fused_params = [p.detach() for p in self._collect_fused_params()]
        return self._fused_params

    def _apply(self, fn, *args, **kwargs):
        self._fused_params = None
        return super()._apply(fn, *args, **kwargs)

    def load_state_dict(self, *args, **kwargs):
        self._fused_params = None
        return super().load_state_dict(*args, **kwargs)

    def _collect_fused_params(self) -> list[torch.Tensor]:
        out = [self.embed.weight, self.noise_features.w, self.scalar_mlp[0].weight, self.scalar_mlp[0].bias,
               self.scalar_mlp[2].weight, self.scalar_mlp[2].bias, self.delta_scale]
        if self.gate is not None:
            out += [self.gate.weight, self.gate.bias]
        for layer in self.layers:
            out += layer.fused_params()
        return out

    def uses_fused_network(self, x: torch.Tensor) -> bool:
        """Whether a forward at ``x`` runs as the one ``egt_score`` op: ``fused_network`` set, autograd
        off, no active dropout, the fused backend and the compiled extension (else the modules run, op
        by op)."""
        return (self.fused_network and fused.HAS_EXTENSION and self.cfg.backend == "fused"
                and not torch.is_grad_enabled()
                and (not self.training or self.cfg.dropout == 0.0) and x.dtype in (torch.float32, torch.float64)
                and not torch.is_autocast_enabled(x.device.type))

    def _check_atomic_numbers(self, z: torch.Tensor) -> None:
        """Raise ValueError unless every z lies in 0..max_z. Two host syncs, so a tensor passes once:
        a rollout's windows share one z tensor, checked on the first of its ~10^5 score calls (the
        version counter catches an in-place change)."""
        checked = self._checked_z
        if checked is not None and checked[0] is z and checked[1] == z._version:
            return
        if int(z.max()) > self.cfg.max_z or int(z.min()) < 0:
            raise ValueError(f"atomic numbers must lie in 0..{self.cfg.max_z}, got {z.min()}..{z.max()}")
        self._checked_z = (z, z._version)  # held: a freed tensor's id could be reused

    def forward(self, batch: FrameBatch, x_noisy: torch.Tensor, std: torch.Tensor,
                graph: Graph | None = None, x_anchor: torch.Tensor | None = None) -> torch.Tensor:
        """Score (N, 3) in 1/Å at the noisy next frame x_noisy (N, 3) with noise std (N, 1) Å.

        ``x_anchor``: ``anchor(batch, graph)`` when the caller has it (PriorFallback needs it too), so the
        valence prior's forces are computed once. With autograd off (rollouts, sampling) and the
        compiled extension this is one call of the ``diffmd_fast::egt_score`` op, the same arithmetic
        without per-op Python dispatch; raises ValueError on mismatched shapes or atomic numbers outside
        0..max_z."""
        if x_noisy.shape != batch.x.shape or std.shape != (x_noisy.shape[0], 1):
            raise ValueError(f"x_noisy must be {tuple(batch.x.shape)} and std ({x_noisy.shape[0]}, 1); "
                             f"got {tuple(x_noisy.shape)} and {tuple(std.shape)}")
        if not torch.compiler.is_compiling():
            self._check_atomic_numbers(batch.z)
        if graph is None:
            graph = complete_graph(batch.batch)
        if x_anchor is None:
            x_anchor = self.anchor(batch, graph)  # (N, 3) Å
        if self.uses_fused_network(x_noisy):
            c = self.cfg
            return fused.egt_score(batch.z, self.previous_frame(batch), batch.x, x_noisy, x_anchor, std, graph.row_ptr, graph.col,
                                   self.fused_params(), cutoff=c.cutoff, num_radial=c.num_radial,
                                   num_spherical=c.num_spherical, heads=c.heads, anchor=c.anchor,
                                   sigma_data=c.sigma_data, num_layers=c.num_layers)
        v = batch.x - self.previous_frame(batch)  # (N, 3) Å/frame
        offset = x_noisy - x_anchor  # (N, 3) Å
        speed = v.norm(dim=-1, keepdim=True)  # (N, 1)
        log_std = std.log()
        scalars = torch.cat([torch.log(speed + 1e-4), torch.log1p(speed / std),
                             torch.log1p(offset.norm(dim=-1, keepdim=True) / std),
                             self.noise_features(log_std)], dim=-1)  # (N, 3 + 2F)
        h = self.embed(batch.z) + self.scalar_mlp(scalars)  # (N, hidden)
        if self.cfg.sigma_data > 0:
            sd2, var = self.cfg.sigma_data**2, std * std  # Å², (N, 1) Å²
            x_in = x_noisy - var / (var + sd2) * offset  # anchor + c_skip (x̃ - anchor), (N, 3) Å
            x = x_in
            for layer in self.layers:
                x, v, h = layer(x, v, h, graph)
            denoised = x_in + self.delta_scale * (std / (var + sd2).sqrt()) * (x - x_in)  # D(x̃), (N, 3) Å
            return (denoised - x_noisy) / var
        x = x_noisy
        for layer in self.layers:
            x, v, h = layer(x, v, h, graph)
        delta = self.delta_scale * (x - x_noisy)  # (N, 3) predicted -z
        if self.gate is not None:
            delta = delta - torch.sigmoid(self.gate(h)) * offset / std
        return delta / std


class AnchorScore(nn.Module):
    """The score of a point mass at ``net``'s anchor, smoothed by the diffusion's noise: a ScoreNet's
    prediction with its network removed. With ``model.bond_prior`` its rollouts are Verlet MD of the
    valence force field alone (bonds, angles, torsions), the baseline that shows what the network adds.

    forward(batch, x_noisy (N, 3) Å, std (N, 1) Å, graph) -> (anchor - x_noisy) / std² (N, 3) 1/Å,
    the exact score of a variance-exploding diffusion started at the anchor."""

    def __init__(self, net: ScoreNet) -> None:
        super().__init__()
        self.net, self.cfg = net, net.cfg
        self.train(net.training)  # a wrapper in the wrapped network's mode: the Stepper toggles a training one per frame

    def forward(self, batch: FrameBatch, x_noisy: torch.Tensor, std: torch.Tensor,
                graph: Graph | None = None, x_anchor: torch.Tensor | None = None) -> torch.Tensor:
        graph = complete_graph(batch.batch) if graph is None else graph
        if x_anchor is None:
            x_anchor = self.net.anchor(batch, graph)
        return (x_anchor - x_noisy) / (std * std)


class PriorFallback(nn.Module):
    """A ScoreNet whose prediction falls back to its anchor (the valence prior's Verlet step) on the
    atoms of a bond stretched or compressed beyond the range the training data show.

    Why: the network is a correction learned where the data are: each bond within a few thermal widths
    σ_b = sqrt(k_B T / k_b) of its fitted rest length (the data's spread, for a Boltzmann-inverted k_b).
    Off that range it extrapolates, and a correction that pumps energy into one stretch drives the bond
    further out, where the correction is less constrained still, until it breaks; the force field
    alone holds the same bond. Per atom, the score is s = s_anchor + w (s_net - s_anchor), w the product
    over its bonds of ramps from 1 at ``inner`` σ_b to 0 at 1.5 ``inner`` σ_b of |r - r0|: inside the
    data's range the network's frame, outside it the prior's, with no step in between. The mix is of
    denoised frames, D = w D_net + (1 - w) D_anchor, so any sampler sees one consistent score.

    With ``energy``, a bond's excursion is read from its oscillation, not its momentary stretch: the
    amplitude sqrt((r - r0)² + μ ṙ² / k) in widths, i.e. sqrt(2 E / k_B T) for the stretch's energy E,
    at the midpoint of the window's last frame interval (μ the pair's reduced mass, ṙ its stretching
    speed by finite difference). A network that pumps a stretch does it where the bond passes its rest
    length fastest, inside the stretch range; the amplitude sees the energy there. At rest it is the
    stretch rule; a thermal oscillation exceeds 4 widths with probability e^-8. Over a 2 fs frame the
    finite difference reads the fastest stretch (C-H, ~3000 cm⁻¹) 5-16 % low, by its phase.

    forward(batch, x_noisy (N, 3) Å, std (N, 1) Å, graph) -> (N, 3) 1/Å. ``temperature_K``: T of the
    widths (the training data's); ``inner``: the widths at which the fallback starts."""

    def __init__(self, net: ScoreNet, temperature_K: float, inner: float, energy: bool = False) -> None:
        super().__init__()
        if net.bond_prior is None or not (temperature_K > 0 and inner > 0):
            raise ValueError("PriorFallback needs a net with a valence prior (model.bond_prior), temperature_K > 0 "
                             f"and inner > 0; got {temperature_K}, {inner}")
        self.net, self.cfg, self.inner, self.energy = net, net.cfg, float(inner), bool(energy)
        self.kT = float(temperature_K) * units.kB  # eV
        self.train(net.training)  # a wrapper in the wrapped network's mode: the Stepper toggles a training one per frame

    def trust(self, x: torch.Tensor, z: torch.Tensor, graph: Graph, x_prev: torch.Tensor | None = None) -> torch.Tensor:
        """(N, 1) in [0, 1]: the network's weight at each atom of positions x (N, 3) Å, the frame before
        them x_prev (N, 3) Å for the oscillation amplitude with ``energy`` (class docstring)."""
        prior = self.net.bond_prior
        recv, send = graph.bonds  # (M,) each bond in both directions
        t = prior.atom_types(z, graph)
        k = prior.k[t[recv], t[send]].clamp_min(1e-6)  # (M,) eV/Å²
        r0 = prior.r0[t[recv], t[send]]  # (M,) Å
        width = torch.sqrt(self.kT / k)  # (M,) Å, the thermal spread of the fitted well
        r = (x[recv] - x[send]).double().norm(dim=-1)  # (M,) Å
        if self.energy and x_prev is not None:
            r_prev = (x_prev[recv] - x_prev[send]).double().norm(dim=-1)  # (M,) Å
            m = prior.masses[z]
            mu = m[recv] * m[send] / (m[recv] + m[send])  # (M,) amu
            speed = (r - r_prev) / (self.net.frame_fs * units.fs)  # (M,) Å per ASE time unit
            excursion = torch.sqrt((0.5 * (r + r_prev) - r0) ** 2 + mu * speed ** 2 / k) / width  # (M,) widths
        else:
            excursion = (r - r0).abs() / width  # (M,) widths
        ramp = ((1.5 * self.inner - excursion) / (0.5 * self.inner)).clamp(0.0, 1.0)  # (M,)
        # the product of an atom's ramps (1 inside, 0 as soon as one bond is out), as a sum of logs: an
        # index_add, which every backend and the compiler handle
        log_w = torch.zeros(x.shape[0], dtype=ramp.dtype, device=x.device).index_add_(0, recv, ramp.clamp_min(1e-30).log())
        w = torch.where(log_w < -40.0, 0.0, log_w.exp())  # a bond fully out: exactly the prior
        return w.to(x.dtype).unsqueeze(-1)

    def forward(self, batch: FrameBatch, x_noisy: torch.Tensor, std: torch.Tensor,
                graph: Graph | None = None, x_anchor: torch.Tensor | None = None) -> torch.Tensor:
        graph = complete_graph(batch.batch) if graph is None else graph
        if graph.bonds is None:
            graph = window_graph(batch)
        if x_anchor is None:  # (N, 3) Å: the prior's forces once, for both scores
            x_anchor = self.net.anchor(batch, graph)
        score = self.net(batch, x_noisy, std, graph, x_anchor=x_anchor)
        anchor_score = (x_anchor - x_noisy) / (std * std)
        return anchor_score + self.trust(batch.x, batch.z, graph, batch.x_prev) * (score - anchor_score)


def score_net_of(model: nn.Module) -> ScoreNet | None:
    """The ScoreNet inside ``model`` (itself, or wrapped by AnchorScore, PriorFallback or DDP); None if none."""
    while not isinstance(model, ScoreNet):
        inner = getattr(model, "net", None)
        inner = getattr(model, "module", None) if inner is None else inner
        if not isinstance(inner, nn.Module):
            return None
        model = inner
    return model


def is_phase_space(model: nn.Module) -> bool:
    """Whether ``model`` (a ScoreNet, or one wrapped) is a phase-space model (``model.prior_substeps`` > 0)."""
    net = score_net_of(model)
    return net is not None and net.cfg.prior_substeps > 0


def carried_velocity(model: nn.Module, batch: FrameBatch, graph: Graph, x_new: torch.Tensor) -> torch.Tensor | None:
    """(N, 3) Å/fs: the velocity at the generated frame x_new (N, 3) Å after the window ``batch`` for a
    phase-space model (valence.verlet.next_velocity about its prior step), None for any other model."""
    net = score_net_of(model)
    if net is None or net.cfg.prior_substeps == 0:
        return None
    x_prior, v_prior = net.prior_step(batch, graph)
    return next_velocity(x_new, x_prior, v_prior, net.frame_fs)


def build_model(cfg: ModelConfig) -> ScoreNet:
    return ScoreNet(cfg)
