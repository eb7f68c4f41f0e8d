#!/usr/bin/env bash
# The full model (configs/long.toml: network on the valence prior) beside the prior alone, on bundled
# ethanol and the held-out acetic acid, 8 starts x $PS ps, under the reference's friction (Langevin
# tau 100 fs) and under long.toml's shipped coupling (tau 5 fs). Resumable (runs and cells cached).
set -euo pipefail
V=${V:-.venv/bin}
RUNS=${RUNS:-runs}
PS=${PS:-100}
export OMP_NUM_THREADS=1
for tau in 100 5; do
  "$V/python" benches/bench_stability.py --molecules ethanol,$RUNS/panel/CH3COOH.npz --strides 4 --samplers prior-only,heun1 \
    --ps "$PS" --starts 8 --max-minutes 20 --rollout-set rollout.compile=false --rollout-set rollout.tau_fs=$tau \
    --runs "$RUNS/full" --json "benches/results/stability_full_tau${tau}_${PS}ps.json"
done
