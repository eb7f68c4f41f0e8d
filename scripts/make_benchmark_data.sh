#!/usr/bin/env bash
# Regenerate the full benchmark reference sets with GFN2-xTB (tblite) Langevin MD (DESIGN.md §4):
#   - the eight MD17 molecules at 500 K, 0.5 fs, 2 ps equilibration, 40,000 frames each
#     (enough for the default short-to-long split: 20,000 train / 10,000 val / 10,000 test);
#   - 99 C7O2H10 (C7H10O2) isomers at 100 K, 1 fs, 2 ps equilibration, 5,000 frames each
#     (ISO17-like; for the one-to-others task).
# NOT run in CI. Cost on one core (OMP_NUM_THREADS=1), measured ms/step: ethanol 1.3, C7H10O2 ~4.7,
# aspirin 7.6 => MD17 set ~15 min, isomers ~40 min; JOBS=N runs N molecules in parallel.
# Usage: scripts/make_benchmark_data.sh [OUT_DIR=out/benchmark]   (env JOBS, default 1)
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
export PYTHONPATH="$PWD/python${PYTHONPATH:+:$PYTHONPATH}"
export OUT="${1:-out/benchmark}"
JOBS="${JOBS:-1}"
mkdir -p "$OUT"

gen() {  # gen NAME SMILES TEMPERATURE_K TIMESTEP_FS FRAMES
  [[ -s "$OUT/$1.npz" ]] && { echo "skip $1 (exists)"; return 0; }
  python - "$@" <<'PY'
import os
import sys
from diffmd_fast.data.simulate import simulate
name, smiles, temp, dt, frames = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
traj = simulate(smiles, temperature_K=temp, timestep_fs=dt, frames=frames, equilibration_fs=2000.0,
                friction_per_fs=0.01, seed=1, save_every=1, name=name, progress=False,
                out=os.path.join(os.environ["OUT"], f"{name}.npz"))
print(traj, f"mean T {traj.provenance['mean_temperature_K']:.1f} K, {traj.provenance['ms_per_step']:.2f} ms/step")
PY
}
export -f gen

{
  # MD17 molecules: name SMILES T_K dt_fs frames
  cat <<'LIST'
aspirin CC(=O)OC1=CC=CC=C1C(=O)O 500 0.5 40000
benzene c1ccccc1 500 0.5 40000
ethanol CCO 500 0.5 40000
malonaldehyde O=CCC=O 500 0.5 40000
naphthalene c1ccc2ccccc2c1 500 0.5 40000
salicylic_acid OC(=O)c1ccccc1O 500 0.5 40000
toluene Cc1ccccc1 500 0.5 40000
uracil O=C1C=CNC(=O)N1 500 0.5 40000
LIST
  # C7H10O2 isomers (RDKit-checked: formula C7H10O2, unique canonical SMILES, embeddable)
  i=0
  while read -r smi; do
    printf 'c7o2h10_%03d %s 100 1.0 5000\n' "$i" "$smi"
    i=$((i + 1))
  done <<'SMILES'
O=C1CCCC(=O)C1C
OC(=O)C1CCC=CC1
CCOC(=O)C=CC=C
CC1=CC(=O)CC(O)C1
OC(=O)C1=CCCCC1
OC(=O)CC1=CCCC1
CC(=O)OC1=CCCC1
CC(=O)OCC1=CCC1
COC(=O)C1=CCCC1
COC(=O)C1CCC=C1
CCC(=O)OC1=CCC1
C=CCOC(=O)C(C)=C
C=CCOC(=O)C=CC
C=CC(=O)OCCC=C
CC#CC(=O)OCCC
CC#CCOC(=O)CC
C#CCOC(=O)CCC
C#CCCOC(=O)CC
CCOC(=O)C#CCC
COC(=O)C#CCCC
CC(C)OC(=O)C#CC
O=C1CCC(=O)C(C)C1
O=C1CCCCC1C=O
O=CC1CCCC(=O)C1
O=CC1CCC(=O)CC1
CC1(C)C(=O)CCC1=O
CC1CC(=O)CC1C=O
O=C1CCC(C1)CC=O
O=CCCC(=O)CC=C
CC(=O)CCC(=O)C=C
CC(=O)C(C)C(=O)C=C
CC(=O)CC(=O)C(C)=C
CC(=O)CC(=O)C=CC
CCC(=O)CC(=O)C=C
CC(=O)C=CCC(C)=O
CCC(=O)C=CC(C)=O
O=C1OC2CCCC2C1
O=C1OC2CCC1CC2
CC1=C(C)C(=O)OC1C
CCC1=CC(=O)OC1C
CCCC1=CC(=O)OC1
C=C1CCOC(=O)C1C
O=C1CCCC=C(O1)C
OC1=CC(=O)CCC1C
OC1=C(C)C(=O)CCC1
OC1CCC(=O)C=C1C
O=C1C=CCCC1CO
OCC1=CC(=O)CCC1
OCC1CCC(=O)C=C1
O=C1C=CC(O)CC1C
C1CC2(CCO2)C(=O)C1
O=C1CCC2(CC1)OC2
OC1CCCC2(OC2)C=1
CC12OC1CCCC2=O
O=C1CCCC2OC2C1
CC1CCC2OC2C1=O
O=C1C2CCCC1OC2
OC1C2CC3C1OC3C2
O1C2CC3CC1CC2O3
OC1C=CC2CCC1O2
OC1CC2OC2C1C=C
C=CC1OC1C(C)C=O
CC1OC1C(=O)C(C)=C
C=CC(=O)C1OC1(C)C
CC1OC(C)(C=O)C1=C
O=CC1=CCCC1CO
OC1CC=CC1CC=O
O=CCC1CC=CC1O
C=CC(O)CC(=O)C=C
C=CC(O)C(=O)C=CC
OC(C=C)C=CC(C)=O
CC(O)C#CC(C)C=O
CC(=O)C#CC(C)(C)O
CC(C)(O)C#CCC=O
OCC#CCCC(C)=O
OCCC#CCC(C)=O
CC(O)CC#CC(C)=O
OC1(CC1)C#CC(C)O
CC(O)(C#C)C1CC1O
OCC1(CC1)C#CCO
OC1CC1C#CC(C)O
O=C(O)C1CC1C(C)=C
OC(=O)C1(C)CC1C=C
OC(=O)C1CC(C)=CC1
CC1=C(CCC1)C(=O)O
CC1CC=C(C1)C(=O)O
OC(=O)C1C2CCC1C2
OC(=O)C12CCC(C1)C2
OC(=O)CC1CC1C=C
OC(=O)C=CCCC=C
OC(=O)C=CC=CCC
CC=CC=CCC(=O)O
OC(=O)CCCC#CC
OC(=O)CC(C)(C)C#C
COC(=O)C1CC1C=C
COC1=CC(=O)CCC1
COC1=CCCC(=O)C1
COC1=CC(=O)CC1C
CCOC1=CC(=O)CC1
SMILES
} | xargs -P "$JOBS" -L 1 bash -c 'gen "$@"' _
ls -l "$OUT"
