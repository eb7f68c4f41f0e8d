"""Run a benchmark shipped with the package; the rest of the command line goes to it.

    diffmd bench egl --cases paper-train          # fused EGL op vs eager vs compiled reference
    diffmd bench egl --help
"""
from __future__ import annotations

import argparse

NAME = "bench"
HELP = "benchmarks (prints a markdown table, writes JSON)"
SUITES = ("egl",)


def add_arguments(p):
    p.add_argument("suite", choices=SUITES, help="egl: the fused op")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="options of the suite (see `diffmd bench SUITE --help`)")


def run(args) -> int:
    from ..benchmarks import egl

    {"egl": egl.main}[args.suite](args.rest)
    return 0
