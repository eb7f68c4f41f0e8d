#!/usr/bin/env bash
# Choosing on spectra: the bundled molecules' 12 ps references (make_bundled_long.sh), whose own two halves
# agree to VDOS 0.89, against 0.75 and 0.84 for the short bundled files. configs/long.toml as shipped,
# then with targets continued by the data's forces, and, prior alone, Morse bonds. Every full-model row
# beside the prior alone, 8 starts x $PS ps; 30 epochs, as the panel (the same ~6,700 optimiser steps on
# 4x the bundled training frames). Resumable (trained runs and finished cells cached under $RUNS).
# 1 torch thread.
set -euo pipefail
V=${V:-.venv/bin}
DATA=${DATA:-runs/bundled_long}
RUNS=${RUNS:-runs/bundled_long/stability}
PS=${PS:-100}
export OMP_NUM_THREADS=1
run() {  # $1: output tag, $2: runs directory, then extra bench arguments
  local tag=$1 runs=$2
  shift 2
  "$V/python" benches/bench_stability.py --molecules "$DATA/ethanol.npz,$DATA/aspirin.npz" --strides 4 \
    --ps "$PS" --starts 8 --max-minutes 20 --rollout-set rollout.compile=false --runs "$runs" \
    --json "benches/results/stability_bundled_long_${tag}_${PS}ps.json" "$@"
}
ELEMENT="--set train.calibrate_stretches=false"  # the step's fluctuation per element only
run element_fluctuation "$RUNS" --samplers heun1,prior-only --set train.epochs=30 $ELEMENT
run element_fluctuation_seed2 "$RUNS/seed2" --samplers heun1 --set train.epochs=30 --set train.seed=2 $ELEMENT
# the shipped calibration, each X-H stretch on its own (train.calibrate_stretches): the same networks calibrated again
"$V/python" benches/panel/recalibrate.py "$RUNS" "$RUNS/stretches"
"$V/python" benches/panel/recalibrate.py "$RUNS/seed2" "$RUNS/stretches_seed2"
run stretch_calibrated "$RUNS/stretches" --samplers heun1 --set train.epochs=30
run stretch_calibrated_seed2 "$RUNS/stretches_seed2" --samplers heun1 --set train.epochs=30 --set train.seed=2
run force_targets "$RUNS/force_targets" --samplers heun1,prior-only --set train.epochs=30 --set train.force_targets=true $ELEMENT
# torsion amplitudes force-matched with the bonds and angles (model.prior_torsion_matching), two seeds
run torsion_matching "$RUNS/torsion_matching" --samplers heun1,prior-only --set train.epochs=30 \
  --set model.prior_torsion_matching=true $ELEMENT
run torsion_matching_seed2 "$RUNS/torsion_matching_seed2" --samplers heun1 --set train.epochs=30 --set train.seed=2 \
  --set model.prior_torsion_matching=true $ELEMENT
# the prior alone needs no trained network: one epoch, no calibration
run morse_bonds_prior_alone "$RUNS/morse" --samplers prior-only --set train.epochs=1 --set train.calibration_frames=0 \
  --set model.prior_anharmonic=true $ELEMENT
# diffusion times drawn uniformly in training (sde.time_sampling = "uniform"), two seeds
run uniform_time "$RUNS/uniform_time" --samplers heun1,prior-only --set train.epochs=30 --set train.seed=1 \
  --set sde.time_sampling=uniform
run uniform_time_seed2 "$RUNS/uniform_time_seed2" --samplers heun1 --set train.epochs=30 --set train.seed=2 \
  --set sde.time_sampling=uniform
# torsion amplitudes force-matched (model.prior_torsion_matching) with the shipped calibration, two seeds
run torsion_matching_stretch_calibrated "$RUNS/torsion_matching_stretches" --samplers heun1,prior-only --set train.epochs=30 \
  --set model.prior_torsion_matching=true
run torsion_matching_stretch_calibrated_seed2 "$RUNS/torsion_matching_stretches_seed2" --samplers heun1 --set train.epochs=30 \
  --set train.seed=2 --set model.prior_torsion_matching=true
# torsion amplitudes force-matched with diffusion times drawn uniformly (the network keeps the angles: its 1-3
# h(r) JSD at the prior's), then the same networks with the prior fallback reading each bond's oscillation
# amplitude (rollout.prior_fallback_energy)
run torsion_matching_uniform_time "$RUNS/torsion_matching_uniform" --samplers heun1,prior-only --set train.epochs=30 \
  --set model.prior_torsion_matching=true --set sde.time_sampling=uniform
run torsion_matching_uniform_time_energy_fallback "$RUNS/torsion_matching_uniform" --samplers heun1 --set train.epochs=30 \
  --set model.prior_torsion_matching=true --set sde.time_sampling=uniform --rollout-set rollout.prior_fallback_energy=true
run torsion_matching_uniform_time_energy_fallback_seed2 "$RUNS/torsion_matching_uniform_seed2" --samplers heun1 --set train.epochs=30 \
  --set train.seed=2 --set model.prior_torsion_matching=true --set sde.time_sampling=uniform --set rollout.prior_fallback_energy=true
