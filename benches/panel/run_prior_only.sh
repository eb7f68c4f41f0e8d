#!/usr/bin/env bash
# The valence prior alone (no network: 1-step training runs carry the fitted force field), Boltzmann
# inversion against force matching, on the bundled molecules (where settings are chosen) and the
# held-out panel (reported only), Langevin tau 100 fs (the reference's friction), 8 starts x $PS ps.
set -euo pipefail
V=${V:-.venv/bin}
RUNS=${RUNS:-runs}
PS=${PS:-20}
export OMP_NUM_THREADS=1
MOLS=ethanol,aspirin,$RUNS/panel/CH3COOH.npz,$RUNS/panel/CH3CONH2.npz,$RUNS/panel/C2H6CHOH.npz
for fit in false true; do
  "$V/python" benches/bench_stability.py --molecules "$MOLS" --strides 4 --samplers prior-only --ps "$PS" --starts 8 \
    --set train.max_steps=1 --set train.epochs=1 --set train.val_rollout_frames=0 --set model.prior_force_matching=$fit \
    --rollout-set rollout.compile=false --rollout-set rollout.tau_fs=100 --runs "$RUNS/m_$fit" \
    --json "benches/results/stability_prior_only_fm_${fit}_tau100_${PS}ps.json"
done
