"""Physics applied to every generated frame (beyond the paper): exact momentum constraints and a
thermostat on the implied velocities.

A generated frame x(t+1) implies the velocity v = (x(t+1) - x(t)) / Δt (Å/fs, Δt the model's frame
time). A ``FrameCorrection`` maps (window, x(t+1)) to a corrected x(t+1) by changing that velocity;
the stepper applies corrections in order before its health checks, so the next window conditions
on the corrected frame.

- ``MomentumProjection`` removes the net linear and angular momentum of v per molecule (mass-weighted,
  about the centre of mass of x(t)): a molecule in vacuum has neither, and a learned sampler's small
  net drifts and spins accumulate over 10^5 frames. It removes exactly those six components and
  nothing else (the projection is orthogonal in the mass-weighted metric) and commutes with
  rotations and reflections.
- ``LangevinThermostat`` is the exact Ornstein-Uhlenbeck velocity update of Langevin dynamics
  (Bussi & Parrinello 2007, "Accurate sampling using Langevin dynamics", the O step of BAOAB):
  v ← c v + sqrt((1 - c²) k_B T / m) ξ with c = exp(-Δt / τ), per atom and per Cartesian
  component. Applied to a model that reproduces the dynamics, it turns the sampled trajectory
  into Langevin dynamics at temperature T with friction 1/τ (the canonical ensemble, with
  dynamical properties damped on the time scale τ; large τ disturbs the dynamics less). Applied to
  a model that heats or cools, it pulls the kinetic temperature back to T on the time scale τ,
  atom by atom, so local heating (a hydrogen spun up by model error) is drained where it occurs.
"""
from __future__ import annotations

import math
from typing import Protocol

import torch
from ase import units
from ase.data import atomic_masses

from ..config import RolloutConfig
from ..data.batch import FrameBatch

# sqrt(k_B T / m) for T in K and m in amu, in Å/fs: ASE's velocity unit is sqrt(eV/amu) and one fs
# is units.fs ASE time units.
_THERMAL_SPEED = math.sqrt(units.kB) * units.fs


_MASS_TABLES: dict[tuple[torch.dtype, torch.device], torch.Tensor] = {}


def masses_of(z: torch.Tensor, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """(N,) atomic masses in amu (ASE's table, IUPAC standard atomic weights) for atomic numbers z (N,)."""
    key = (dtype, z.device)
    if key not in _MASS_TABLES:
        _MASS_TABLES[key] = torch.as_tensor(atomic_masses, dtype=dtype, device=z.device)
    return _MASS_TABLES[key][z]


class _PerMolecule:
    """Masses (N, 1) amu and molecule masses (B, 1) of the last window's atoms, recomputed only when
    the window's atoms change (a molecule stopped): per frame they are the same tensors."""

    def __init__(self) -> None:
        self._z = self._batch = None  # the window's tensors themselves: held, so never recycled

    def __call__(self, frame: FrameBatch) -> tuple[torch.Tensor, torch.Tensor]:
        if frame.z is not self._z or frame.batch is not self._batch:
            m = masses_of(frame.z).unsqueeze(-1)  # (N, 1) amu
            mt = torch.zeros(frame.num_graphs, 1, dtype=m.dtype, device=m.device).index_add_(0, frame.batch, m)
            self._z, self._batch, self._values = frame.z, frame.batch, (m, mt)
        return self._values


class FrameCorrection(Protocol):
    def __call__(self, frame: FrameBatch, x_new: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """x(t+1) (N, 3) Å corrected, given the window ``frame`` whose current frame is x(t)."""


class MomentumProjection:
    """Remove the net linear and angular momentum of the implied velocity of every molecule."""

    def __init__(self) -> None:
        self._masses = _PerMolecule()

    def __call__(self, frame: FrameBatch, x_new: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        batch, num = frame.batch, frame.num_graphs
        x, d = frame.x.double(), (x_new - frame.x).double()  # (N, 3) Å, displacement ∝ velocity
        m, mt = self._masses(frame)  # (N, 1), (B, 1) amu
        com = torch.zeros(num, 3, dtype=x.dtype, device=x.device).index_add_(0, batch, m * x) / mt
        d = d - (torch.zeros(num, 3, dtype=x.dtype, device=x.device).index_add_(0, batch, m * d) / mt)[batch]
        r = x - com[batch]  # (N, 3) Å about the centre of mass
        ang = torch.zeros(num, 3, dtype=x.dtype, device=x.device).index_add_(0, batch, m * torch.cross(r, d, dim=-1))
        eye = torch.eye(3, dtype=x.dtype, device=x.device)
        per_atom = m.unsqueeze(-1) * ((r * r).sum(-1)[:, None, None] * eye - r.unsqueeze(-1) * r.unsqueeze(-2))
        inertia = torch.zeros(num, 3, 3, dtype=x.dtype, device=x.device).index_add_(0, batch, per_atom)
        # pinv: a linear molecule (or one atom) has a singular inertia tensor and no rotation about its axis
        omega = (torch.linalg.pinv(inertia, hermitian=True) @ ang.unsqueeze(-1)).squeeze(-1)  # (B, 3)
        d = d - torch.cross(omega[batch], r, dim=-1)
        return (frame.x.double() + d).to(x_new.dtype)


class LangevinThermostat:
    """Per-atom Langevin (Ornstein-Uhlenbeck) step on the implied velocity, see the module docstring.

    temperature_K: target T (K); tau_fs: relaxation time τ (fs, the inverse friction);
    frame_fs: the model's frame time Δt (fs). Raises ValueError on non-positive values."""

    def __init__(self, temperature_K: float, tau_fs: float, frame_fs: float) -> None:
        if not (temperature_K > 0 and tau_fs > 0 and frame_fs > 0):
            raise ValueError(f"LangevinThermostat needs temperature_K, tau_fs, frame_fs > 0; got "
                             f"{temperature_K}, {tau_fs}, {frame_fs}")
        self.temperature_K, self.tau_fs, self.frame_fs = temperature_K, tau_fs, frame_fs
        self.c = math.exp(-frame_fs / tau_fs)
        self._masses = _PerMolecule()

    def __call__(self, frame: FrameBatch, x_new: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        dt = self.frame_fs
        v = (x_new - frame.x).double() / dt  # (N, 3) Å/fs
        sigma = _THERMAL_SPEED * math.sqrt(self.temperature_K) / self._masses(frame)[0].sqrt()  # (N, 1) Å/fs
        device = generator.device if generator is not None else v.device  # the stepper's (resumable) stream
        xi = torch.randn(v.shape, generator=generator, dtype=torch.float64, device=device).to(v.device)
        v = self.c * v + math.sqrt(1.0 - self.c**2) * sigma * xi
        return (frame.x.double() + v * dt).to(x_new.dtype)


def corrections_from_config(cfg: RolloutConfig, frame_fs: float, data_temperature_K: float | None) -> list[FrameCorrection]:
    """The corrections a run's [rollout] section asks for, in the order they apply: the thermostat,
    then the momentum projection. That order matters: the Langevin noise is isotropic in
    mass-weighted coordinates, so it also feeds the six rigid-body modes; projecting them out
    afterwards leaves the 3n - 6 internal modes at the target temperature and the molecule without
    net drift or spin. ``frame_fs``: the model's frame time; ``data_temperature_K``: the training
    data's mean kinetic temperature (the default target). Raises ValueError when the thermostat
    has no target temperature."""
    out: list[FrameCorrection] = []
    if cfg.thermostat == "langevin":
        target = cfg.temperature_K or data_temperature_K
        if not target:
            raise ValueError("the Langevin thermostat needs a temperature: set rollout.temperature_K "
                             "(this checkpoint does not record its training data's temperature)")
        out.append(LangevinThermostat(target, cfg.tau_fs, frame_fs))
    if cfg.momentum:
        out.append(MomentumProjection())
    return out
