#!/usr/bin/env bash
# Regenerate the reference trajectories shipped in python/diffmd_fast/bundled/ with the project's
# own `diffmd simulate` (GFN2-xTB via tblite, ASE Langevin, RDKit start geometry, seed 1).
# One molecule at a time on one core: about 3 minutes in all on a quiet machine.
# The exact commands are recorded in python/diffmd_fast/bundled/COMMANDS.md and, as argv, in
# every file's provenance.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
if command -v diffmd >/dev/null; then DIFFMD=(diffmd); else DIFFMD=(python -m diffmd_fast.cli); fi
OUT=python/diffmd_fast/bundled
common=(--equilibration 2000 --friction 0.01 --seed 1 --forces-dtype float32 --quiet)
"${DIFFMD[@]}" simulate 'CCO'                      --name ethanol   --out $OUT/ethanol.npz   --temperature 500 --timestep 0.5 --frames 6000 "${common[@]}"
"${DIFFMD[@]}" simulate 'CC(=O)OC1=CC=CC=C1C(=O)O' --name aspirin   --out $OUT/aspirin.npz   --temperature 500 --timestep 0.5 --frames 3000 "${common[@]}"
"${DIFFMD[@]}" simulate 'O=C1CCCC(=O)C1C'          --name c7o2h10_0 --out $OUT/c7o2h10_0.npz --temperature 100 --timestep 1.0 --frames 1500 "${common[@]}"
"${DIFFMD[@]}" simulate 'OC(=O)C1CCC=CC1'          --name c7o2h10_1 --out $OUT/c7o2h10_1.npz --temperature 100 --timestep 1.0 --frames 1500 "${common[@]}"
"${DIFFMD[@]}" simulate 'CCOC(=O)C=CC=C'           --name c7o2h10_2 --out $OUT/c7o2h10_2.npz --temperature 100 --timestep 1.0 --frames 1500 "${common[@]}"
