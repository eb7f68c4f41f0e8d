"""Does DiffMD accelerate MD? DiffMD rollouts at batch 1 and 100 vs GFN2-xTB MD, simulated ps per
wall second with stability, h(r) JSD and temperature. See diffmd_fast/benchmarks/rollout.py;
`python benches/bench_rollout.py --help` for options."""
import sys

from diffmd_fast.cli import main

if __name__ == "__main__":
    # through the command line's entry point: a bad input ends in one line, not a traceback
    sys.exit(main(["bench", "rollout", *sys.argv[1:]]))
