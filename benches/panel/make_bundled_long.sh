#!/usr/bin/env bash
# Longer references of the two bundled molecules, for choosing settings on a spectrum: the bundled
# files (3 ps of ethanol, 1.5 ps of aspirin) know their own VDOS only to 0.75 and 0.84 (two halves
# against each other), too coarsely to tell the settings apart. The same molecules and protocol as
# the bundled data and the held-out panel (GFN2-xTB, 500 K, 0.5 fs, Langevin friction 0.01/fs),
# 24,000 frames (12 ps) each, as the panel's. One npz each under $OUT (default runs/bundled_long);
# resumable: a molecule whose npz exists is skipped. 1 thread per molecule.
set -euo pipefail
OUT=${OUT:-runs/bundled_long}
source "$(dirname "$0")/simulate_each.sh"
simulate_each <<'MOLECULES'
ethanol CCO
aspirin CC(=O)OC1=CC=CC=C1C(=O)O
MOLECULES
