#!/usr/bin/env bash
# Phase-space models at 4 fs frames (model.prior_substeps = 4: the valence prior's frame in four 1 fs
# velocity-Verlet substeps, each frame's velocity carried), configs/long.toml otherwise, every full-model
# row beside the prior alone, 8 starts x $PS ps: on the bundled molecules (SET=bundled, 20 ps, where the
# settings were chosen) or on the held-out panel (SET=panel6, 100 ps, make_panel6.sh; nothing tuned on
# it). MOLS picks a subset (to run halves side by side; a last run over all of them reads the cached
# cells and writes the whole JSON). Resumable: trained runs and finished cells are cached under $RUNS.
# 1 torch thread.
set -euo pipefail
V=${V:-.venv/bin}
SET=${SET:-bundled}
DATA=${DATA:-runs/panel6}
if [ "$SET" = bundled ]; then
  PS=${PS:-20}; MOLS=${MOLS:-ethanol,aspirin}; EXTRA=()
else
  PS=${PS:-100}
  # the panel's training split is about 4x the bundled molecules': 30 epochs give about the optimiser
  # steps of long.toml's 120 on bundled ethanol (as run_panel6.sh)
  EXTRA=(--set train.epochs=30)
  if [ -z "${MOLS:-}" ]; then
    for mol in ethylphenol acetanilide benzylamine methylbutanoate chloroanisole ethylpyridine; do
      MOLS="${MOLS:+$MOLS,}$DATA/$mol.npz"
    done
  fi
fi
RUNS=${RUNS:-runs/phase_space/$SET}
export OMP_NUM_THREADS=1
"$V/python" benches/bench_stability.py --molecules "$MOLS" --strides 8 --samplers heun1,prior-only --ps "$PS" --starts 8 \
  --max-minutes 30 --set model.prior_substeps=4 "${EXTRA[@]}" --rollout-set rollout.compile=false --runs "$RUNS" \
  --json "benches/results/stability_${SET}_phase_space_4fs_${PS}ps${TAG:-}.json"
