"""The ``diffmd`` command: one module per subcommand, each with ``add_arguments`` and ``run``.

Errors a user can cause (a missing file, a bad option, a corrupt checkpoint) end in one line on
stderr and exit status 2; ``--debug`` shows the traceback instead. A reader that goes away
(``diffmd info x | head -1``) ends the command quietly with status 0.
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from typing import Sequence

from . import bench, data, demo, evaluate, generate, info, results, simulate, train

COMMANDS = (demo, simulate, data, train, generate, evaluate, info, results, bench)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="diffmd", description="DiffMD: score-based diffusion for molecular dynamics (diffmd_fast).",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for mod in COMMANDS:
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(run=mod.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        status = _main(argv)
        sys.stdout.flush()  # inside the try: a closed pipe must not surface at interpreter exit
        return status
    except BrokenPipeError:
        # the reader is gone: point stdout at /dev/null so Python's final flush cannot fail again
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 0


def _one_line_warning(command: str):
    """A ``warnings.showwarning`` that prints a warning's first line after the command's name, as errors
    are printed (not the warning's source file and line, which are for --debug)."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        text = str(message).splitlines()[0] if str(message) else category.__name__
        print(f"diffmd {command}: warning: {text}", file=file or sys.stderr)

    return show


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from ..data.simulate import SimulationError
    from ..training.checkpoint import CheckpointError  # late: keep `diffmd --help` fast

    try:
        with warnings.catch_warnings():
            if not args.debug:
                warnings.filterwarnings("ignore", category=UserWarning, module="e3nn")
                warnings.showwarning = _one_line_warning(args.command)
            return int(args.run(args) or 0)
    except (ValueError, FileNotFoundError, NotADirectoryError, CheckpointError, FloatingPointError, SimulationError) as err:
        if args.debug:
            raise
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        print(f"diffmd {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"diffmd {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
