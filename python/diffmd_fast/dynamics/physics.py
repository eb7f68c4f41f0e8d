"""Physics applied to every generated frame (beyond the paper): exact momentum constraints and a
thermostat on the implied velocities, or on the carried velocities of a phase-space model.

A generated frame x(t+1) implies the velocity v = (x(t+1) - x(t)) / Δt (Å/fs, Δt the model's frame
time). A ``FrameCorrection`` maps (window, x(t+1), its random numbers) to a corrected x(t+1) by
changing that velocity; the stepper applies corrections in order before its health checks, so the
next window conditions on the corrected frame. A correction draws its random numbers in ``noise``,
before the frame is sampled, so that the frame itself is a pure function of its inputs (one
torch.compile graph, see dynamics/stepper.py).

- ``MomentumProjection`` removes the net linear and angular momentum of v per molecule (mass-weighted,
  about the centre of mass of x(t)): a molecule in vacuum has neither, and a learned sampler's small
  net drifts and spins accumulate over 10^5 frames. It removes exactly those six components and
  nothing else (the projection is orthogonal in the mass-weighted metric) and commutes with
  rotations and reflections.
- ``VelocityRescaling`` (Bussi) controls each molecule's kinetic energy as a whole, see its docstring.
- ``LangevinThermostat`` is Langevin dynamics in the BAOAB splitting (Leimkuhler & Matthews 2013,
  "Rational construction of stochastic numerical methods for molecular sampling"), written on
  positions. A model frame x(t+1) is a Verlet step x(t) + (x(t) - x(t-1)) + Δt² F/m (exactly so
  for the valence prior alone); BAOAB's positions obey
      x(t+1) = x(t) + c (x(t) - x(t-1)) + ((1+c)/2) Δt² F/m + (σ Δt / 2) (ξ(t-1) + ξ(t)),
  c = exp(-Δt / τ), σ = sqrt((1 - c²) k_B T / m), ξ standard normal per atom and component, so the
  correction is v ← c v + (σ/√2) η on the implied velocity with η = (ξ(t-1) + ξ(t))/√2: the
  stepper keeps each frame's ξ for the next (``noise_memory``), and the (1-c)/2 of the force the
  model's frame already holds is left out (O(Δt/τ)). The moving average is what makes it sample
  positions right at a large ω Δt: for a harmonic mode BAOAB's positions are exactly canonical at
  any stable step, while white noise on the same step (Ornstein-Uhlenbeck on the Verlet velocity)
  inflates a mode's variance by 1 / (1 - (ω Δt / 2)²), 1.5 for a C-H stretch at 2 fs frames: the
  hydrogens ran 40 % hot. Applied to a model that reproduces the dynamics, it turns the trajectory
  into Langevin dynamics at temperature T with friction 1/τ (large τ disturbs the dynamics less);
  applied to a model that heats or cools, it pulls each atom back to T on the time scale τ.

A phase-space model (``model.prior_substeps``, valence/verlet.py) carries each atom's velocity v(t+1)
with the frame, and every correction has a ``phase`` form that acts on that velocity instead, once
per frame after the model's step: the Langevin thermostat becomes BAOAB's O-step on momenta,
v ← c v + sqrt((1 - c²) k_B T / m) ξ with white ξ (the prior's velocity-Verlet substeps are the B
and A steps, so the prior alone is Langevin dynamics exactly, at any frame time its substeps allow);
the step's fluctuation the same noise without the friction; Bussi rescales v; the momentum projection
takes the net momentum out of v as well as out of the implied displacement.
"""
from __future__ import annotations

import math

import torch
from ase import units

from ..config import RolloutConfig
from ..data.batch import FrameBatch
from ..data.elements import masses_of
from .correction import THERMAL_SPEED, FrameCorrection, PerWindow, kick_amplitude, standard_normal
from .fluctuation import StepFluctuation


def _molecule_masses(frame: FrameBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """Masses (N, 1) amu of the atoms and (B, 1) amu of the molecules."""
    m = masses_of(frame.z).unsqueeze(-1)  # (N, 1) amu
    return m, torch.zeros(frame.num_graphs, 1, dtype=m.dtype, device=m.device).index_add_(0, frame.batch, m)

class MomentumProjection:
    """Remove the net linear and angular momentum of the implied velocity of every molecule.

    The angular velocity ω = I⁺ L (I the inertia tensor about the centre of mass, L the angular
    momentum) is solved in closed form, with the adjugate: as fast as pinv at batch 1, and the whole
    projection is a quarter faster at batch 100, where pinv's eigendecompositions loop over the
    molecules. I is singular for a linear molecule (moments λ, λ, 0: no rotation about the axis) and
    zero for one atom; there the pseudo-inverse is I⁺ = I / (tr(I) / 2)², which also covers a
    molecule that is linear up to the rounding of its positions (float32 puts a collinear molecule's
    atoms ~1e-7 of its length off the axis, a moment ratio ~1e-14; pinv would invert that noise)
    and gives ω = 0 for one atom (I = 0, L = 0)."""

    # A molecule counts as linear when its smallest principal moment is below ~``rtol`` times its largest.
    rtol = 1e-10

    def __init__(self) -> None:
        self._masses = PerWindow(_molecule_masses)

    def noise(self, frame: FrameBatch, generator: torch.Generator | None = None) -> None:
        return None

    def __call__(self, frame: FrameBatch, x_new: torch.Tensor, noise: None = None) -> torch.Tensor:
        return (frame.x.double() + self._internal(frame, frame.x, x_new - frame.x)).to(x_new.dtype)

    def phase(self, frame: FrameBatch, x_new: torch.Tensor, v_new: torch.Tensor,
              noise: None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The implied displacement projected as in __call__, and the carried velocity about x(t+1)."""
        x = self(frame, x_new)
        return x, self._internal(frame, x, v_new).to(v_new.dtype)

    def _internal(self, frame: FrameBatch, pos: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        """(N, 3) float64: the motion d (N, 3) (a displacement or a velocity) of atoms at ``pos`` (N, 3) Å
        without each molecule's net translation and rotation about its centre of mass."""
        batch, num = frame.batch, frame.num_graphs
        m, mt = self._masses(frame)  # (N, 1), (B, 1) amu
        # positions and motions side by side, so that one reduction gives the centre of mass and the
        # mean motion, and one subtraction both relative quantities
        xd = torch.cat([pos, d], -1).double()  # (N, 6)
        rd = xd - (xd.new_zeros(num, 6).index_add_(0, batch, m * xd) / mt)[batch]  # (N, 6)
        r, d = rd[:, :3], rd[:, 3:]  # about the centre of mass; without the net translation
        mr = m * r  # (N, 3) amu Å
        # angular momentum L = Σ m r × d and second moment S = Σ m r rᵀ, (B, 3) + (B, 9) amu Å², one reduction
        sums = xd.new_zeros(num, 12).index_add_(
            0, batch, torch.cat([torch.cross(mr, d, dim=-1), (mr.unsqueeze(-1) * r.unsqueeze(-2)).view(-1, 9)], -1))
        ang, second = sums[:, :3, None], sums[:, 3:].view(num, 3, 3)
        half = second.diagonal(dim1=1, dim2=2).sum(-1, keepdim=True)  # (B, 1) tr(S) = tr(I) / 2 = (λ1 + λ2 + λ3) / 2
        inertia = torch.diag_embed(half.expand(-1, 3)) - second  # (B, 3, 3) amu Å², I = tr(S) 1 - S
        # rows a1 x a2, a2 x a0, a0 x a1: the cofactor matrix, = adj(I) since I is symmetric
        adj = torch.cross(inertia.roll(-1, 1), inertia.roll(-2, 1), dim=-1)  # (B, 3, 3)
        det = (inertia[:, 0] * adj[:, 0]).sum(-1, keepdim=True)  # (B, 1) = λ1 λ2 λ3
        # Moments obey the triangle inequality, so at most one is small and the other two are ~ tr(I) / 2:
        # det < rtol (tr(I) / 2)³ says λ_min < ~rtol λ_max. False for one atom (all zero).
        half_sq = half * half
        regular = det > half_sq * half * self.rtol  # (B, 1)
        # ω = adj(I) L / det, or for a linear molecule I L / (tr(I) / 2)²; one atom: 0 L / tiny = 0
        omega = (torch.where(regular.unsqueeze(-1), adj, inertia) @ ang).squeeze(-1) / torch.where(
            regular, det, half_sq.clamp_min(torch.finfo(xd.dtype).tiny))  # (B, 3) per unit of d's time
        return d - torch.cross(omega[batch], r, dim=-1)

class LangevinThermostat:
    """Per-atom Langevin step (BAOAB on positions) on the implied velocity, see the module docstring.

    temperature_K: target T (K); tau_fs: relaxation time τ (fs, the inverse friction);
    frame_fs: the model's frame time Δt (fs). Raises ValueError on non-positive values."""

    noise_memory = True  # its noise is (ξ(t-1) + ξ(t)) / √2: the stepper keeps the last ξ

    def __init__(self, temperature_K: float, tau_fs: float, frame_fs: float) -> None:
        if not (temperature_K > 0 and tau_fs > 0 and frame_fs > 0):
            raise ValueError(f"LangevinThermostat needs temperature_K, tau_fs, frame_fs > 0; got "
                             f"{temperature_K}, {tau_fs}, {frame_fs}")
        self.temperature_K, self.tau_fs, self.frame_fs = temperature_K, tau_fs, frame_fs
        self.c = math.exp(-frame_fs / tau_fs)
        self._noise = PerWindow(lambda frame: kick_amplitude(frame.z, self.c, self.temperature_K))

    def noise(self, frame: FrameBatch, generator: torch.Generator | None = None) -> torch.Tensor:
        """ξ (N, 3) float64 standard normal, one per atom and component (this frame's; the stepper
        hands __call__ η = (ξ(t-1) + ξ(t)) / √2)."""
        return standard_normal(frame, generator)

    def __call__(self, frame: FrameBatch, x_new: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x(t+1) with v ← c v + (σ/√2) η, ``noise`` η (N, 3) (module docstring)."""
        dt = self.frame_fs
        v = (x_new - frame.x).double() / dt  # (N, 3) Å/fs
        v = self.c * v + self._noise(frame) * noise
        return (frame.x.double() + v * dt).to(x_new.dtype)

    def phase(self, frame: FrameBatch, x_new: torch.Tensor, v_new: torch.Tensor,
              noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """BAOAB's O-step on the carried velocity, v ← c v + σ ξ, once per frame: with the prior's
        velocity-Verlet substeps as the B and A steps, Langevin dynamics of the prior exactly."""
        v = self.c * v_new.double() + math.sqrt(2.0) * self._noise(frame) * noise
        return x_new, v.to(v_new.dtype)

def _linear_molecules(frame: FrameBatch, m: torch.Tensor) -> torch.Tensor:
    """(B,) bool: which molecules of ``frame`` are linear at x(t) (evaluation.longrun.is_linear, as the
    temperatures count them), masses m (N, 1) amu. Per window, not per frame (VelocityRescaling's layout)."""
    from ..evaluation.longrun import is_linear

    x, mass, batch = frame.x.double().cpu().numpy(), m[:, 0].double().cpu().numpy(), frame.batch.cpu().numpy()
    return torch.tensor([is_linear(x[batch == b], mass[batch == b]) for b in range(frame.num_graphs)],
                        dtype=torch.bool, device=frame.z.device)


class VelocityRescaling:
    """Stochastic velocity rescaling (Bussi, Donadio & Parrinello 2007, J. Chem. Phys. 126, 014101,
    Eq. A7) of each molecule's implied velocity: the whole molecule's internal kinetic energy K is
    moved by one stochastic step of relaxation time τ towards the canonical distribution of
    N_f = 3n - 6 degrees of freedom (3n - 5 for a linear molecule at x(t), a diatomic among them) at
    temperature T, and every velocity scaled by the same α. Applied
    to a model that reproduces the dynamics, it samples the canonical ensemble and, unlike the
    Langevin step, leaves each atom's direction of motion (the dynamics within the molecule) untouched;
    applied to a model that drains or pumps heat, it holds the molecule's temperature at T whatever the
    model's bias, since K itself is controlled rather than each atom's velocity nudged. What it cannot
    fix is heat in one bond: it redistributes nothing between atoms. It acts after the momentum
    projection (a uniform scaling keeps zero momentum) on molecules of 2 or more atoms; a molecule at
    rest stays at rest (there is no direction to scale).

    temperature_K: target T (K); tau_fs: relaxation time τ (fs); frame_fs: frame time Δt (fs). Raises
    ValueError on non-positive values."""

    def __init__(self, temperature_K: float, tau_fs: float, frame_fs: float) -> None:
        if not (temperature_K > 0 and tau_fs > 0 and frame_fs > 0):
            raise ValueError(f"VelocityRescaling needs temperature_K, tau_fs, frame_fs > 0; got "
                             f"{temperature_K}, {tau_fs}, {frame_fs}")
        self.temperature_K, self.tau_fs, self.frame_fs = temperature_K, tau_fs, frame_fs
        self.c = math.exp(-frame_fs / tau_fs)
        self._layout = PerWindow(self._molecule_layout)

    @staticmethod
    def _molecule_layout(frame: FrameBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(masses (N, 1) amu, N_f (B,), first (N, 3) bool: the R1 entry of each molecule, rest (N, 3)
        bool: its N_f - 1 further entries), the noise entries numbered 3 a + c within each molecule."""
        m = masses_of(frame.z).unsqueeze(-1)
        counts = torch.bincount(frame.batch, minlength=frame.num_graphs)  # (B,)
        # 3n - 5 internal degrees of freedom for a linear molecule (every diatomic), else 3n - 6
        dof = torch.where(counts >= 2, 3 * counts - 6 + _linear_molecules(frame, m).long(), 0)  # (B,)
        local = torch.arange(frame.z.numel(), device=frame.z.device) - (torch.cumsum(counts, 0) - counts)[frame.batch]
        entry = 3 * local.unsqueeze(-1) + torch.arange(3, device=frame.z.device)  # (N, 3)
        limit = dof[frame.batch].unsqueeze(-1)  # (N, 1)
        return m, dof, (entry == 0) & (limit > 0), (entry >= 1) & (entry < limit)

    def noise(self, frame: FrameBatch, generator: torch.Generator | None = None) -> torch.Tensor:
        """ξ (N, 3) float64 standard normal: per molecule R1 and the N_f - 1 terms of the χ² sum."""
        return standard_normal(frame, generator)

    def __call__(self, frame: FrameBatch, x_new: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        v = (x_new - frame.x).double() / self.frame_fs  # (N, 3) Å/fs
        return (frame.x.double() + self._rescaled(frame, v, noise) * self.frame_fs).to(x_new.dtype)

    def phase(self, frame: FrameBatch, x_new: torch.Tensor, v_new: torch.Tensor,
              noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The carried velocity rescaled (the implied one is left as the model's step made it)."""
        return x_new, self._rescaled(frame, v_new.double(), noise).to(v_new.dtype)

    def _rescaled(self, frame: FrameBatch, v: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """(N, 3) float64 Å/fs: velocities v (N, 3) Å/fs times each molecule's α (class docstring)."""
        m, dof, first, rest = self._layout(frame)
        num, c = frame.num_graphs, self.c
        per_mol = torch.zeros(num, 3, dtype=v.dtype, device=v.device)
        # K (eV), R1 and Σ R_i² (i = 2..N_f) of each molecule, (B,) each
        kinetic = per_mol.index_add(0, frame.batch, 0.5 * m * v * v / THERMAL_SPEED**2 * units.kB).sum(-1)
        r1 = per_mol.index_add(0, frame.batch, noise * first).sum(-1)
        chi2 = per_mol.index_add(0, frame.batch, noise * noise * rest).sum(-1)
        target = 0.5 * dof * units.kB * self.temperature_K  # (B,) eV, K̄
        ratio = target / (dof.clamp_min(1) * kinetic.clamp_min(1e-30))  # K̄ / (N_f K)
        alpha2 = c + (1.0 - c) * (r1 * r1 + chi2) * ratio + 2.0 * r1 * torch.sqrt(c * (1.0 - c) * ratio)
        sign = torch.sign(r1 + torch.sqrt(c / ((1.0 - c) * ratio)))
        alpha = torch.where((dof > 0) & (kinetic > 0), sign * alpha2.clamp_min(0.0).sqrt(), 1.0)  # (B,)
        return alpha[frame.batch].unsqueeze(-1) * v

def corrections_from_config(cfg: RolloutConfig, frame_fs: float, data_temperature_K: float | None,
                            step_friction: dict[int, float] | None = None,
                            stretch_friction: dict[int, float] | None = None) -> list[FrameCorrection]:
    """The corrections a run's [rollout] section asks for, in the order they apply: the step's own
    fluctuation (``StepFluctuation``, with ``cfg.step_fluctuation`` and a calibrated ``step_friction``
    {atomic number: 1/fs}, and ``stretch_friction`` of the X-H stretches when measured; part of the
    model's frame, so first), the Langevin thermostat, then the
    momentum projection, then velocity rescaling. That order matters: the Langevin noise is isotropic
    in mass-weighted coordinates, so it also feeds the six rigid-body modes; projecting them out
    afterwards leaves the 3n - 6 internal modes at the target temperature and the molecule without
    net drift or spin. Rescaling, uniform per molecule, comes after the projection and keeps its zero
    momentum. ``frame_fs``: the model's frame time; ``data_temperature_K``: the training data's mean
    kinetic temperature (the default target). The step's fluctuation has the thermostat's target
    temperature: the measured friction balanced at another T holds that T. Raises ValueError when the
    thermostat has no target temperature."""
    out: list[FrameCorrection] = []
    target = cfg.temperature_K or data_temperature_K
    if cfg.thermostat != "none" and not target:
        raise ValueError(f"the {cfg.thermostat} thermostat needs a temperature: set rollout.temperature_K "
                         "(this checkpoint does not record its training data's temperature)")
    if cfg.step_fluctuation and step_friction and target:
        out.append(StepFluctuation(target, step_friction, frame_fs, stretch_friction))
    if cfg.thermostat == "langevin":
        out.append(LangevinThermostat(target, cfg.tau_fs, frame_fs))
    if cfg.momentum:
        out.append(MomentumProjection())
    if cfg.thermostat == "bussi":  # after the projection: a uniform rescaling keeps zero momentum
        out.append(VelocityRescaling(target, cfg.tau_fs, frame_fs))
    return out
