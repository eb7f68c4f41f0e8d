#!/usr/bin/env bash
# Developer loop: rebuild the extension incrementally (build/ is reused) and drop the compiled
# module next to the sources, so `PYTHONPATH=python` runs the working tree with the fused ops.
set -euo pipefail
cd "$(dirname "$0")/.."
pip install --no-build-isolation --no-deps -q .
site=$(cd /tmp && python -c "import diffmd_fast._C as c; print(c.__file__)")
cp -f "$site" python/diffmd_fast/
echo "built $site"
