"""mmlens from the shell: the HTML report, traces, skip experiments, trajectories, models,
benchmark scoring, the built-in benchmark, data-set runs, activation stores, the hallucination
link and checkpoint conversion. One module per group of commands."""

import argparse
import sys
from collections.abc import Sequence

from mmlens.cli import activations, benchmark, convert, help, link, run, score, single
from mmlens.errors import MMLensError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmlens", description=help.OVERVIEW)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    single.add_commands(commands)
    score.add_commands(commands)
    run.add_commands(commands)
    activations.add_commands(commands)
    benchmark.add_commands(commands)
    link.add_commands(commands)
    convert.add_commands(commands)
    help.apply(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except MMLensError as error:
        # one line, even where the message quotes a library's multi-line one
        print(f"mmlens: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mmlens: interrupted; nothing was written.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
