"""Long-rollout stability: stride x sampler x (stability, h(r) JSD, temperature, speed). See
diffmd_fast/benchmarks/stability.py; `python benches/bench_stability.py --help` for options."""
from diffmd_fast.benchmarks.stability import main

if __name__ == "__main__":
    main()
