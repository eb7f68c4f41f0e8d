"""Long-rollout stability: stride x sampler x (stability, h(r) JSD, temperature, speed). See
diffmd_fast/benchmarks/stability.py; `python benches/bench_stability.py --help` for options."""
import sys

from diffmd_fast.cli import main

if __name__ == "__main__":
    # through the command line's entry point: a bad input ends in one line, not a traceback
    sys.exit(main(["bench", "stability", *sys.argv[1:]]))
