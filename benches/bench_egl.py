"""EGL attention: fused vs eager reference vs torch.compile(reference). See
diffmd_fast/benchmarks/egl.py; `python benches/bench_egl.py --help` for options."""
from diffmd_fast.benchmarks.egl import main

if __name__ == "__main__":
    main()
