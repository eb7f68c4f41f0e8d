#!/usr/bin/env bash
# The fitted valence prior's normal modes against GFN2-xTB's (`diffmd bench modes`) on the bundled
# molecules' 12 ps references and the held-out panel: the shipped prior (configs/long.toml) and the
# same with torsion amplitudes force-matched (model.prior_torsion_matching). Needs make_bundled_long.sh
# and make_panel6.sh's files; about a minute in all.
set -euo pipefail
V=${V:-.venv/bin}
BUNDLED=${BUNDLED:-runs/bundled_long}
PANEL=${PANEL:-runs/panel6}
export OMP_NUM_THREADS=1
B="$BUNDLED/ethanol.npz,$BUNDLED/aspirin.npz"
P=$(printf "$PANEL/%s.npz," ethylphenol acetanilide benzylamine methylbutanoate chloroanisole ethylpyridine)
P=${P%,}
"$V/python" benches/bench_modes.py --molecules "$B" --json benches/results/modes_bundled_long.json
"$V/python" benches/bench_modes.py --molecules "$B" --set model.prior_torsion_matching=true \
  --json benches/results/modes_bundled_long_torsion_matching.json
"$V/python" benches/bench_modes.py --molecules "$P" --json benches/results/modes_panel6.json
"$V/python" benches/bench_modes.py --molecules "$P" --set model.prior_torsion_matching=true \
  --json benches/results/modes_panel6_torsion_matching.json
