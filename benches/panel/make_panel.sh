#!/usr/bin/env bash
# The held-out panel of molecules (none of them bundled, none used to choose any setting):
# structures from ASE's G2 set, reference MD with `diffmd simulate` (GFN2-xTB, 500 K, 0.5 fs,
# Langevin friction 0.01/fs), one npz each under $OUT (default runs/panel). Resumable: a molecule
# whose npz exists is skipped. About 2 minutes per molecule on one core.
set -euo pipefail
V=${V:-.venv/bin}
OUT=${OUT:-runs/panel}
FRAMES=${FRAMES:-24000}
mkdir -p "$OUT"
for mol in CH3COOH CH3CONH2 C2H6CHOH; do
  [ -f "$OUT/$mol.npz" ] && continue
  "$V/python" -c "from ase.build import molecule; from ase.io import write; write('$OUT/$mol.xyz', molecule('$mol'))"
  OMP_NUM_THREADS=1 "$V/diffmd" simulate "$OUT/$mol.xyz" --out "$OUT/$mol.npz" --name "$mol" --temperature 500 \
    --timestep 0.5 --frames "$FRAMES" --equilibration 2000 --seed 7 --quiet
done
