# Sourced by the make_*.sh scripts: simulate_each reads "name SMILES" lines on stdin and runs
# `diffmd simulate` for each (GFN2-xTB, 500 K, 0.5 fs, Langevin friction 0.01/fs, the bundled data's
# protocol) into $OUT/name.npz (the caller sets OUT), $FRAMES frames (default 24,000: 12 ps) after 2 ps
# of equilibration, 1 thread, with the diffmd of $V (default .venv/bin); a molecule whose npz exists is
# skipped, so a killed run resumes.
V=${V:-.venv/bin}
FRAMES=${FRAMES:-24000}
simulate_each() {
  mkdir -p "$OUT"
  while read -r name smiles; do
    [ -f "$OUT/$name.npz" ] && continue
    OMP_NUM_THREADS=1 "$V/diffmd" simulate "$smiles" --out "$OUT/$name.npz" --name "$name" --temperature 500 \
      --timestep 0.5 --frames "$FRAMES" --equilibration 2000 --seed 7 --threads 1 --quiet
  done
}
