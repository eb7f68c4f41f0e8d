#!/usr/bin/env bash
# Developer loop: rebuild the extension incrementally (build/ is reused) and drop the compiled
# module next to the sources, so `PYTHONPATH=python` runs the working tree with the fused ops.
set -euo pipefail
cd "$(dirname "$0")/.."
pip install --no-build-isolation --no-deps -q .
site=$(cd /tmp && python -c "import diffmd_fast._C as c; print(c.__file__)")
# copy then rename: overwriting the file in place would change the pages of every running process
# that has it mapped (and crash it)
tmp=$(mktemp python/diffmd_fast/.C.XXXXXX)
cp "$site" "$tmp" && mv -f "$tmp" "python/diffmd_fast/$(basename "$site")"
echo "built $site"
