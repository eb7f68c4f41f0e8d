"""Run a benchmark shipped with the package; the rest of the command line goes to it.

    diffmd bench egl --cases paper-train          # fused EGL op vs eager vs compiled reference
    diffmd bench egl --help
    diffmd bench stability --molecules ethanol --strides 1,4,8 --ps 10   # long rollouts
    diffmd bench rollout                          # DiffMD (batch 1, 100) vs GFN2-xTB MD: simulated ps per wall second
    diffmd bench rollout --checkpoint runs/eth --frames 1000
    diffmd bench modes --molecules ethanol,aspirin   # the fitted prior's normal modes vs GFN2-xTB's
"""
from __future__ import annotations

import argparse

NAME = "bench"
HELP = "benchmarks (prints a markdown table, writes JSON)"
SUITES = ("egl", "modes", "rollout", "stability")


def add_arguments(p):
    p.add_argument("suite", choices=SUITES, help="egl: the fused op; rollout: DiffMD vs GFN2-xTB MD speed and quality; "
                                                 "stability: long rollouts, stride x sampler; modes: the fitted "
                                                 "valence prior's normal modes vs GFN2-xTB's")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="options of the suite (see `diffmd bench SUITE --help`)")


def run(args) -> int:
    from ..benchmarks import egl, modes, rollout, stability

    {"egl": egl.main, "modes": modes.main, "rollout": rollout.main, "stability": stability.main}[args.suite](args.rest)
    return 0
