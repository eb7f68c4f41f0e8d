"""Reference molecular dynamics with GFN2-xTB (tblite) under ASE's Langevin thermostat.

    diffmd simulate CCO --out ethanol.npz --temperature 500 --timestep 0.5 --frames 10000
    diffmd simulate start.xyz --out mol.npz --temperature 100 --timestep 1.0

The start geometry comes from a SMILES (RDKit: hydrogens, ETKDG embedding, MMFF relaxation) or
any structure file ASE reads; the SMILES's formal charges and radicals set the total charge and
spin (--charge, --multiplicity override them). The output is an MD17-style npz (R in Å, z, E in eV,
F in eV/Å) plus the time step and the full provenance, including this command line. A stopped run
keeps its frames and state in OUT.partial.npz, and the same command continues it.
"""
from __future__ import annotations

NAME = "simulate"
HELP = "reference MD with GFN2-xTB (ASE + tblite)"


def add_arguments(p):
    p.add_argument("start", metavar="SMILES_OR_FILE", help="SMILES string or structure file (xyz, pdb, ...)")
    p.add_argument("--out", required=True, metavar="FILE.npz", help="output trajectory (npz; .extxyz also written with --extxyz)")
    p.add_argument("--temperature", type=float, default=500.0, metavar="K", help="thermostat temperature in K (paper: 500 for MD17, 100 for C7O2H10)")
    p.add_argument("--timestep", type=float, default=0.5, metavar="FS", help="MD time step in fs (paper: 0.5 for MD17, 1.0 for C7O2H10)")
    p.add_argument("--frames", type=int, default=1000, help="frames to store after equilibration")
    p.add_argument("--equilibration", type=float, default=2000.0, metavar="FS", help="equilibration time in fs before frame 0 (>= 2000 keeps the mean temperature on target)")
    p.add_argument("--friction", type=float, default=0.01, metavar="1/FS", help="Langevin friction in 1/fs")
    p.add_argument("--save-every", type=int, default=1, metavar="STEPS", help="MD steps between stored frames")
    p.add_argument("--seed", type=int, default=1, help="seed of the embedding, the velocities and the thermostat noise")
    p.add_argument("--name", help="trajectory name (default: from the SMILES/file)")
    p.add_argument("--threads", type=int, default=1, help="OpenMP threads for tblite (1 is fastest for small molecules)")
    p.add_argument("--charge", type=int, default=None, metavar="E",
                   help="total charge (default: the SMILES's formal charges, a structure file's own, else 0)")
    p.add_argument("--multiplicity", type=int, default=None, metavar="2S+1",
                   help="spin multiplicity (default: from the SMILES's radical electrons, else closed-shell)")
    p.add_argument("--forces-dtype", choices=("float64", "float32"), default="float64",
                   help="storage of forces and velocities in the npz (float32 halves shipped files; positions stay float64)")
    p.add_argument("--extxyz", action="store_true", help="also write an extxyz beside the npz (for OVITO/VMD)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    from pathlib import Path

    import numpy as np

    from ..data import write_extxyz
    from ..data.simulate import simulate

    out = Path(args.out)
    if out.suffix != ".npz":
        raise ValueError(f"--out must end in .npz, got {out}")
    traj = simulate(args.start, temperature_K=args.temperature, timestep_fs=args.timestep, frames=args.frames,
                    equilibration_fs=args.equilibration, friction_per_fs=args.friction, seed=args.seed,
                    save_every=args.save_every, progress=not args.quiet, name=args.name, threads=args.threads,
                    charge=args.charge, multiplicity=args.multiplicity, out=out,
                    forces_dtype=getattr(np, args.forces_dtype))
    if args.extxyz:
        write_extxyz(traj, out.with_suffix(".extxyz"))
    prov = traj.provenance
    print(f"wrote {out}: {traj.name} {traj.formula}, {traj.num_frames} frames x {traj.dt_fs} fs, "
          f"mean T {prov['mean_temperature_K']:.1f} K, {prov['ms_per_step']:.1f} ms/step")
    return 0
