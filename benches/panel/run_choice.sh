#!/usr/bin/env bash
# Choosing the prior's fit on the bundled molecules only: configs/long.toml with Boltzmann-inverted
# (FIT=false) or force-matched (FIT=true) bond and angle constants, the full model beside the prior
# alone, 8 starts x $PS ps, Langevin tau 100 fs (the reference's friction) and tau 5 fs (long.toml's).
set -euo pipefail
V=${V:-.venv/bin}
RUNS=${RUNS:-runs}
PS=${PS:-20}
FIT=${FIT:-false}
MOLS=${MOLS:-ethanol,aspirin}
SET=${SET:-bundled}
export OMP_NUM_THREADS=1
for tau in 100 5; do
  "$V/python" benches/bench_stability.py --molecules "$MOLS" --strides 4 --samplers prior-only,heun1 --ps "$PS" --starts 8 \
    --max-minutes 20 --set model.prior_force_matching=$FIT --rollout-set rollout.compile=false --rollout-set rollout.tau_fs=$tau \
    --runs "$RUNS/choice_$FIT" --json "benches/results/stability_${SET}_fm_${FIT}_tau${tau}_${PS}ps.json"
done
