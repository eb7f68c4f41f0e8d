"""Does DiffMD accelerate MD? DiffMD rollouts at batch 1 and 100 vs GFN2-xTB MD, simulated ps per
wall second with stability, h(r) JSD and temperature. See diffmd_fast/benchmarks/rollout.py;
`python benches/bench_rollout.py --help` for options."""
from diffmd_fast.benchmarks.rollout import main

if __name__ == "__main__":
    main()
