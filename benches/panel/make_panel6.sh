#!/usr/bin/env bash
# The held-out drug-like panel: six molecules of 16-20 atoms, none bundled and none used to choose
# any setting, one functional group each (phenol, amide, amine, ester, aryl halide, heteroaromatic).
# Reference MD with `diffmd simulate` from SMILES (RDKit embedding; GFN2-xTB, 500 K, 0.5 fs, Langevin
# friction 0.01/fs, the bundled data's protocol), one npz each under $OUT (default runs/panel6).
# Resumable: a molecule whose npz exists is skipped. 1 thread per molecule.
set -euo pipefail
OUT=${OUT:-runs/panel6}
source "$(dirname "$0")/simulate_each.sh"
simulate_each <<'PANEL'
ethylphenol CCc1ccc(O)cc1
acetanilide CC(=O)Nc1ccccc1
benzylamine NCc1ccccc1
methylbutanoate CCCC(=O)OC
chloroanisole COc1ccc(Cl)cc1
ethylpyridine CCc1cccnc1
PANEL
