"""What the network does to each kind of pair distance: for every molecule of `bench stability` JSON
files, the h(r) JSD of the pairs 1, 2, 3 and >= 4 bonds apart (bonds, angles, torsions, the rest) with
the network beside the prior alone's, as a markdown table.

    python benches/panel/separations.py benches/results/stability_panel6_*_100ps.json

A network whose 1-3 JSD is several times its prior's moves the angles' distributions off the
reference's, which the force-matched angle terms alone hold; 1-4 and 1-5+ follow the conformers. A file
without prior-only cells compares with nothing and prints '-' there."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from diffmd_fast.evaluation.longrun import SEPARATIONS


def rows(path: Path) -> list[str]:
    cells = json.loads(path.read_text())["cells"]
    by_molecule: dict[str, dict[str, dict]] = {}
    for c in cells:
        by_molecule.setdefault(c["molecule"], {})[c["sampler"]] = c
    out = []
    for molecule, samplers in by_molecule.items():
        net, prior = samplers.get("heun1"), samplers.get("prior-only")
        if net is None:
            continue

        def pair(key: str) -> str:
            mine = net.get(f"h_r_jsd_{key}")
            theirs = None if prior is None else prior.get(f"h_r_jsd_{key}")
            fmt = lambda v: "-" if v is None else f"{v:.4f}"
            return f"{fmt(mine)} ({fmt(theirs)})"

        out.append(f"| {path.name} | {molecule} | " + " | ".join(pair(k) for k in SEPARATIONS) + " |")
    return out


def main(argv: list[str]) -> None:
    if not argv:
        raise SystemExit(__doc__)
    print("| file | molecule | JSD 1-2 (prior alone) | 1-3 | 1-4 | 1-5+ |")
    print("|---|---|---:|---:|---:|---:|")
    for name in argv:
        for line in rows(Path(name)):
            print(line)


if __name__ == "__main__":
    main(sys.argv[1:])
