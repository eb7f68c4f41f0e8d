#!/usr/bin/env bash
# Choosing the long-rollout settings on the bundled molecules only (ethanol, aspirin): configs/long.toml
# as shipped (force-matched prior; Langevin tau 100 fs, the reference's friction; the step's calibrated
# fluctuation; the prior fallback), and each choice undone in turn: no thermostat (the step's
# fluctuation alone, measured with and without the thermostat), no prior fallback, the
# Boltzmann-inverted prior. Every full-model row beside the prior alone, 8 starts x $PS ps.
# Resumable (trained runs and finished cells cached under $RUNS). 1 torch thread.
set -euo pipefail
V=${V:-.venv/bin}
RUNS=${RUNS:-runs/bundled}
PS=${PS:-20}
export OMP_NUM_THREADS=1
run() {  # $1: output tag, $2: runs directory, then extra bench arguments
  local tag=$1 runs=$2
  shift 2
  "$V/python" benches/bench_stability.py --molecules ethanol,aspirin --strides 4 --samplers heun1,prior-only \
    --ps "$PS" --starts 8 --max-minutes 20 --rollout-set rollout.compile=false --runs "$runs" \
    --json "benches/results/stability_bundled_${tag}_${PS}ps.json" "$@"
}
run shipped "$RUNS"
run no_thermostat "$RUNS" --rollout-set rollout.thermostat=none
# the same, but the step's friction measured without the thermostat too (a run trained with its [rollout]
# section saying so), so that the fluctuation alone balances the step
run no_thermostat_calibrated "$RUNS/no_thermostat" --set rollout.thermostat=none --rollout-set rollout.thermostat=none
run no_fallback "$RUNS" --rollout-set rollout.prior_fallback=0
run boltzmann_inverted "$RUNS/boltzmann_inverted" --set model.prior_force_matching=false
