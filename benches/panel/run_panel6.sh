#!/usr/bin/env bash
# Long-rollout quality on the held-out drug-like panel (make_panel6.sh), configs/long.toml (force-matched
# prior; Langevin at the reference's friction, tau 100 fs; the step's calibrated fluctuation; the prior
# fallback) with the fluctuation per element only, then with the Boltzmann-inverted prior instead, with
# targets continued by the data's forces, without a thermostat (the step's friction measured without
# one), and last the shipped calibration: the first runs' networks calibrated again with each X-H
# stretch on its own; every full-model row beside the prior alone, 8 starts x $PS ps. Nothing here was
# tuned on these molecules.
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
ELEMENT="--set train.calibrate_stretches=false"  # the step's fluctuation per element only
run "benches/results/stability_panel6_element_fluctuation_${PS}ps.json" "$RUNS" $ELEMENT
run "benches/results/stability_panel6_boltzmann_inverted_${PS}ps.json" "$RUNS/boltzmann_inverted" --set model.prior_force_matching=false $ELEMENT
# targets continued by the data's forces (train.force_targets): chosen on the bundled molecules' 12 ps
# references (run_bundled_long.sh), measured here
run "benches/results/stability_panel6_force_targets_${PS}ps.json" "$RUNS/force_targets" --set train.force_targets=true $ELEMENT
# no thermostat at all: the step's friction measured without one (the run's [rollout] section), the
# fluctuation alone balancing it
run "benches/results/stability_panel6_no_thermostat_calibrated_${PS}ps.json" "$RUNS/no_thermostat" \
  --set rollout.thermostat=none --rollout-set rollout.thermostat=none $ELEMENT
# the shipped calibration (train.calibrate_stretches, chosen on the bundled molecules' 12 ps references):
# the first runs' trained networks, calibrated again
"$V/python" benches/panel/recalibrate.py "$RUNS" "$RUNS/stretches"
run "benches/results/stability_panel6_stretch_calibrated_${PS}ps.json" "$RUNS/stretches"
# diffusion times drawn uniformly in training (sde.time_sampling = "uniform"; chosen on the bundled molecules'
# 12 ps references, run_bundled_long.sh), trained afresh
run "benches/results/stability_panel6_uniform_time_${PS}ps.json" "$RUNS/uniform_time" --set sde.time_sampling=uniform
# benzylamine, a second training each way (the uniform times' first training lost one start)
BZ="--molecules $DATA/benzylamine.npz --samplers heun1 --set train.seed=2"
run "benches/results/stability_panel6_benzylamine_seed2_uniform_${PS}ps.json" "$RUNS/uniform_time_seed2" $BZ --set sde.time_sampling=uniform
run "benches/results/stability_panel6_benzylamine_seed2_log_uniform_${PS}ps.json" "$RUNS/seed2" $BZ --set sde.time_sampling=log_uniform
# torsion amplitudes force-matched (model.prior_torsion_matching; chosen on the bundled molecules' 12 ps references,
# run_bundled_long.sh), trained afresh
run "benches/results/stability_panel6_torsion_matching_${PS}ps.json" "$RUNS/torsion_matching" --set model.prior_torsion_matching=true
# torsion amplitudes force-matched, diffusion times drawn uniformly and the prior fallback on each bond's
# oscillation amplitude (chosen on the bundled molecules' 12 ps references, run_bundled_long.sh), trained afresh
run "benches/results/stability_panel6_torsion_matching_uniform_time_energy_fallback_${PS}ps.json" "$RUNS/torsion_matching_uniform" \
  --set model.prior_torsion_matching=true --set sde.time_sampling=uniform --set rollout.prior_fallback_energy=true
