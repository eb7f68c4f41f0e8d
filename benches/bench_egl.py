"""EGL attention: fused vs eager reference vs torch.compile(reference). See
diffmd_fast/benchmarks/egl.py; `python benches/bench_egl.py --help` for options."""
import sys

from diffmd_fast.cli import main

if __name__ == "__main__":
    # through the command line's entry point: a bad input ends in one line, not a traceback
    sys.exit(main(["bench", "egl", *sys.argv[1:]]))
