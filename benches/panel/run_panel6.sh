#!/usr/bin/env bash
# Long-rollout quality on the held-out drug-like panel (make_panel6.sh), configs/long.toml as shipped
# (force-matched prior; Langevin at the reference's friction, tau 100 fs; the step's calibrated
# fluctuation; the prior fallback), then with the Boltzmann-inverted prior instead, with targets
# continued by the data's forces, then without a thermostat (the step's friction measured without
# one); every full-model row beside the prior alone, 8 starts x $PS ps. Nothing here was tuned on these molecules.
# Resumable: trained runs and finished cells are cached under $RUNS. 1 torch thread.
set -euo pipefail
V=${V:-.venv/bin}
DATA=${DATA:-runs/panel6}
RUNS=${RUNS:-runs/panel6/stability}
PS=${PS:-100}
# the panel's training split is about 4x the bundled molecules': 30 epochs give the same ~6,600 optimiser
# steps as long.toml's 120 epochs on bundled ethanol
EPOCHS=${EPOCHS:-30}
export OMP_NUM_THREADS=1
MOLS=""
for mol in ethylphenol acetanilide benzylamine methylbutanoate chloroanisole ethylpyridine; do
  while [ ! -f "$DATA/$mol.npz" ]; do sleep 30; done  # make_panel6.sh may still be writing it
  MOLS="${MOLS:+$MOLS,}$DATA/$mol.npz"
done
run() {  # $1: output name, $2: runs directory, then extra bench arguments
  local json=$1 runs=$2
  shift 2
  "$V/python" benches/bench_stability.py --molecules "$MOLS" --strides 4 --samplers heun1,prior-only --ps "$PS" --starts 8 \
    --max-minutes 20 --set train.epochs=$EPOCHS --rollout-set rollout.compile=false --runs "$runs" --json "$json" "$@"
}
run "benches/results/stability_panel6_${PS}ps.json" "$RUNS"
run "benches/results/stability_panel6_boltzmann_inverted_${PS}ps.json" "$RUNS/boltzmann_inverted" --set model.prior_force_matching=false
# targets continued by the data's forces (train.force_targets): chosen on the bundled molecules' 12 ps
# references (run_bundled_long.sh), measured here
run "benches/results/stability_panel6_force_targets_${PS}ps.json" "$RUNS/force_targets" --set train.force_targets=true
# torsion amplitudes force-matched with the bonds and angles (model.prior_torsion_matching): chosen on
# the bundled molecules' 12 ps references (run_bundled_long.sh), measured here
run "benches/results/stability_panel6_torsion_matching_${PS}ps.json" "$RUNS/torsion_matching" --set model.prior_torsion_matching=true
# no thermostat at all: the step's friction measured without one (the run's [rollout] section), the
# fluctuation alone balancing it
run "benches/results/stability_panel6_no_thermostat_calibrated_${PS}ps.json" "$RUNS/no_thermostat" \
  --set rollout.thermostat=none --rollout-set rollout.thermostat=none
