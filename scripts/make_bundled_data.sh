#!/usr/bin/env bash
# Regenerate the small reference trajectories shipped in python/diffmd_fast/bundled/.
# GFN2-xTB (tblite) Langevin MD via diffmd_fast.simulate; one molecule at a time, one core each.
# Runtime on one core: a few minutes in total. Exact commands are also recorded in
# python/diffmd_fast/bundled/COMMANDS.md and in each file's provenance.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
export PYTHONPATH="$PWD/python${PYTHONPATH:+:$PYTHONPATH}"
OUT=python/diffmd_fast/bundled

gen() {  # gen NAME SMILES TEMPERATURE_K TIMESTEP_FS FRAMES
  python - "$@" <<'PY'
import sys
import numpy as np
from diffmd_fast.data import save_npz
from diffmd_fast.simulate import simulate
name, smiles, temp, dt, frames = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
traj = simulate(smiles, temperature_K=temp, timestep_fs=dt, frames=frames, equilibration_fs=2000.0,
                friction_per_fs=0.01, seed=1, save_every=1, name=name)
save_npz(traj, f"python/diffmd_fast/bundled/{name}.npz", forces_dtype=np.float32)
print(traj, f"mean T {traj.provenance['mean_temperature_K']:.1f} K, {traj.provenance['ms_per_step']:.2f} ms/step")
PY
}

gen ethanol   'CCO'                       500 0.5 10000
gen aspirin   'CC(=O)OC1=CC=CC=C1C(=O)O'  500 0.5 5000
gen c7o2h10_0 'O=C1CCCC(=O)C1C'           100 1.0 2000   # 2-methylcyclohexane-1,3-dione
gen c7o2h10_1 'OC(=O)C1CCC=CC1'           100 1.0 2000   # cyclohex-3-ene-1-carboxylic acid
gen c7o2h10_2 'CCOC(=O)C=CC=C'            100 1.0 2000   # ethyl penta-2,4-dienoate
ls -l "$OUT"/*.npz
