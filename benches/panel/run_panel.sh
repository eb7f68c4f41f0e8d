#!/usr/bin/env bash
# Long-rollout quality on the held-out panel (make_panel.sh) and on the bundled molecules, every
# full-model row beside its prior-only row, under a thermostat no stronger than the reference's
# (Langevin tau 100 fs = friction 0.01/fs), and under the shipped long.toml coupling (tau 5 fs).
# Resumable: trained runs and finished cells are cached under $RUNS; one JSON per (set, tau) in
# benches/results/. 1 torch thread.
set -euo pipefail
V=${V:-.venv/bin}
RUNS=${RUNS:-runs/panel}
PS=${PS:-100}
export OMP_NUM_THREADS=1
PANEL=$RUNS/CH3COOH.npz,$RUNS/CH3CONH2.npz,$RUNS/C2H6CHOH.npz
for tau in 100 5; do
  for set in panel bundled; do
    mols=$([ $set = panel ] && echo "$PANEL" || echo ethanol,aspirin)
    "$V/python" benches/bench_stability.py --molecules "$mols" --strides 4 --samplers prior-only,heun1 --ps "$PS" \
      --starts 8 --max-minutes 20 --rollout-set rollout.compile=false --rollout-set rollout.tau_fs=$tau \
      --runs "$RUNS/stability" --json "benches/results/stability_${set}_tau${tau}.json"
  done
done
