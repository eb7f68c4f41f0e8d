"""The fitted valence prior's normal modes against GFN2-xTB's at its minimum. See
diffmd_fast/benchmarks/modes.py; `python benches/bench_modes.py --help` for options."""
import sys

from diffmd_fast.cli import main

if __name__ == "__main__":
    # through the command line's entry point: a bad input ends in one line, not a traceback
    sys.exit(main(["bench", "modes", *sys.argv[1:]]))
