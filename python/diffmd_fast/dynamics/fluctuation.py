"""The step's own fluctuation: the noise that balances the friction a conditional-mean step keeps
(``StepFluctuation``), per element and per X-H stretch, and the hydrogens' bonded partners it kicks along."""
from __future__ import annotations

import math

import torch

from ..data.batch import FrameBatch
from ..data.elements import BOND_SCALE
from .correction import PerWindow, kick_amplitude, standard_normal


def hydrogen_partners(frame: FrameBatch) -> torch.Tensor:
    """(N,) int64: for each hydrogen the index of the atom it is bonded to, -1 for every other atom and
    for a hydrogen without exactly one bond. The bonds are ``frame.bonds`` (the molecule's fixed
    topology) when the window carries them, else each hydrogen's nearest atom of its molecule at x(t)
    within BOND_SCALE × the sum of their covalent radii (ASE's)."""
    from ase.data import covalent_radii

    z, n = frame.z, frame.z.numel()
    if frame.bonds is not None:
        return partners_from_bonds(z, frame.bonds)
    partner = torch.full((n,), -1, dtype=torch.int64, device=z.device)
    h = (z == 1).nonzero().squeeze(-1)  # (H,)
    if h.numel() == 0:
        return partner
    x = frame.x.double()
    d = torch.cdist(x[h], x)  # (H, N) Å
    d = d.masked_fill(frame.batch[h].unsqueeze(-1) != frame.batch.unsqueeze(0), math.inf)
    d[torch.arange(h.numel(), device=z.device), h] = math.inf
    nearest, near = d.min(-1)  # (H,)
    radii = torch.as_tensor(covalent_radii, dtype=torch.float64, device=z.device)
    bonded = nearest < BOND_SCALE * (radii[1] + radii[z[near]])
    partner[h[bonded]] = near[bonded]
    return partner


def partners_from_bonds(z: torch.Tensor, bonds: torch.Tensor) -> torch.Tensor:
    """(N,) int64: each hydrogen's one bonded atom among ``bonds`` (2, M) receiver, sender (each bond both
    ways, FrameBatch.bonds), -1 for every other atom and for a hydrogen without exactly one bond; z (N,)."""
    n = z.numel()
    partner = torch.full((n,), -1, dtype=torch.int64, device=z.device)
    recv, send = bonds
    count = torch.bincount(recv, minlength=n)  # (N,) bonds per atom
    single = (z[recv] == 1) & (count[recv] == 1)
    partner[recv[single]] = send[single]
    return partner


def friction_label(z: int, stretch: bool = False) -> str:
    """How a step friction is named: its element's symbol ("H"), or for the X-H stretch of partner
    element z "X-H stretch" ("C-H stretch")."""
    from ase.data import chemical_symbols

    return f"{chemical_symbols[z]}-H stretch" if stretch else chemical_symbols[z]


def friction_labels(friction_per_fs: dict[int, float], stretch_friction_per_fs: dict[int, float] | None = None
                    ) -> dict[str, float]:
    """{friction_label: γ (1/fs)} of a StepFluctuation's tables, the elements then the stretches, each by
    atomic number."""
    return {**{friction_label(z): g for z, g in sorted(friction_per_fs.items())},
            **{friction_label(z, True): g for z, g in sorted((stretch_friction_per_fs or {}).items())}}


def step_fluctuation_in(corrections) -> "StepFluctuation | None":
    """The StepFluctuation among ``corrections``, None when there is none."""
    return next((c for c in corrections if isinstance(c, StepFluctuation)), None)


class StepFluctuation:
    """The random half of a Langevin step without its friction: v ← v + sqrt((1 - c_e²) k_B T / 2m) η,
    c_e = exp(-γ_e Δt), with η the same moving average of white noise as ``LangevinThermostat``'s.

    Why: a one-evaluation sampler returns the conditional mean of the next frame, E[x(t+1) | window].
    That mean keeps whatever friction the data's dynamics and the regression put into it, and none of
    the fluctuations that balanced it: alone, it cools (a reference made under Langevin friction
    0.01/fs teaches the mean that friction, and the fit's shrinkage adds more). By the
    fluctuation-dissipation theorem, a step whose velocities are damped at rate γ_e holds the
    temperature T when it is kicked with this noise; ``γ_e`` per element is the model's own friction,
    measured on its training data after training (training/calibration.py), so the step samples the
    fluctuations the mean left out and no friction is added. On a model that reproduces Langevin
    dynamics exactly, γ_e is the data's friction and the rollout is the reference's own process.

    The step's friction is not the same for every motion of an atom: a conditional mean damps the fast
    modes more, and how much more varies from one training to the next (bundled ethanol's C-H stretch
    band held 0.13-0.22 of the spectrum over seeds, against the reference's 0.22, its hydrogens' total
    temperature within 4 %). With ``stretch_friction_per_fs`` {partner's atomic number: γ_s (1/fs)} a
    hydrogen's kick along its bond to that partner (at x(t), ``hydrogen_partners``) has the amplitude of
    γ_s and the two perpendicular components that of γ_e: the X-H stretch, the fastest motion there is,
    measured and balanced on its own.

    temperature_K: T (K); friction_per_fs: {atomic number: γ_e (1/fs)}, elements missing from it get the
    largest γ given; frame_fs: frame time Δt (fs). Raises ValueError on non-positive T or Δt, a
    negative γ or an empty element table."""

    noise_memory = True

    def __init__(self, temperature_K: float, friction_per_fs: dict[int, float], frame_fs: float,
                 stretch_friction_per_fs: dict[int, float] | None = None) -> None:
        if not (temperature_K > 0 and frame_fs > 0):
            raise ValueError(f"StepFluctuation needs temperature_K, frame_fs > 0; got {temperature_K}, {frame_fs}")
        self.temperature_K, self.frame_fs = temperature_K, frame_fs
        self.set_friction(friction_per_fs, stretch_friction_per_fs)

    def set_friction(self, friction_per_fs: dict[int, float],
                     stretch_friction_per_fs: dict[int, float] | None = None) -> None:
        """Replace the tables {atomic number: γ (1/fs)} of the elements and of the X-H stretches (class
        docstring). Raises ValueError for an empty element table or a γ < 0."""
        stretch_friction_per_fs = stretch_friction_per_fs or {}
        values = [*friction_per_fs.values(), *stretch_friction_per_fs.values()]
        if not friction_per_fs or not all(g >= 0 and math.isfinite(g) for g in values):
            raise ValueError(f"StepFluctuation needs finite frictions >= 0 per element, got {friction_per_fs} "
                             f"and per X-H stretch {stretch_friction_per_fs}")
        self.friction_per_fs = {int(z): float(g) for z, g in friction_per_fs.items()}
        self.stretch_friction_per_fs = {int(z): float(g) for z, g in stretch_friction_per_fs.items()}
        self._noise = PerWindow(self._amplitudes)

    def _table(self, table: dict[int, float], z: torch.Tensor, fallback: float) -> torch.Tensor:
        """(N,) float64 γ (1/fs) of atomic numbers z from ``table``, ``fallback`` where it has none."""
        out = torch.full((int(z.max()) + 1,), fallback, dtype=torch.float64, device=z.device)
        for e, g in table.items():
            if e < out.numel():
                out[e] = g
        return out[z]

    def _amplitudes(self, frame: FrameBatch) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """(a (N, 1) Å/fs the kick of each atom, a_s (N, 1) the kick along a hydrogen's bond, partner (N,)
        its bonded atom (-1: none)); a_s and partner None without a stretch table."""
        c = torch.exp(-self._table(self.friction_per_fs, frame.z, max(self.friction_per_fs.values())) * self.frame_fs)
        a = kick_amplitude(frame.z, c.unsqueeze(-1), self.temperature_K)  # (N, 1)
        if not self.stretch_friction_per_fs:
            return a, None, None
        partner = hydrogen_partners(frame)
        has = partner >= 0
        gamma_s = self._table(self.stretch_friction_per_fs, frame.z[partner.clamp_min(0)], math.nan)
        known = has & torch.isfinite(gamma_s)
        partner = torch.where(known, partner, -1)
        c_s = torch.exp(-torch.where(known, gamma_s, 0.0) * self.frame_fs).unsqueeze(-1)
        a_s = torch.where(known.unsqueeze(-1), kick_amplitude(frame.z, c_s, self.temperature_K), a)  # (N, 1)
        return a, a_s, partner

    def _kick(self, frame: FrameBatch, noise: torch.Tensor) -> torch.Tensor:
        """(N, 3) float64 Å/fs: the velocity kick of standard normal ``noise`` η (N, 3)."""
        a, a_s, partner = self._noise(frame)
        if a_s is None:
            return a * noise
        x = frame.x.double()
        bond = torch.where((partner >= 0).unsqueeze(-1), x - x[partner.clamp_min(0)], 0.0)  # (N, 3) Å, X -> H
        e = bond / bond.norm(dim=-1, keepdim=True).clamp_min(1e-12)  # unit vector (0 for atoms without one)
        along = (noise * e).sum(-1, keepdim=True) * e  # (N, 3)
        return a * (noise - along) + a_s * along

    def noise(self, frame: FrameBatch, generator: torch.Generator | None = None) -> torch.Tensor:
        """ξ (N, 3) float64 standard normal (the stepper hands __call__ η = (ξ(t-1) + ξ(t)) / √2)."""
        return standard_normal(frame, generator)

    def __call__(self, frame: FrameBatch, x_new: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        kick = self._kick(frame, noise) * self.frame_fs  # (N, 3) Å
        return (x_new.double() + kick).to(x_new.dtype)

    def phase(self, frame: FrameBatch, x_new: torch.Tensor, v_new: torch.Tensor,
              noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The O-step's noise without its friction on the carried velocity: v ← v + sqrt((1 - c_e²) k_B T / m) ξ."""
        return x_new, (v_new.double() + math.sqrt(2.0) * self._kick(frame, noise)).to(v_new.dtype)
