"""`mmlens benchmark shapes|priors --out DIR`: write a built-in benchmark with exact truth."""

import argparse
from typing import Any


def _shapes(args: argparse.Namespace) -> int:
    from mmlens.benchmarks.shapes import read_shapes, write_shapes_benchmark

    if args.scenes < 2:
        from mmlens.errors import ConfigError

        raise ConfigError(f"--scenes {args.scenes}: need at least 2.")
    out = write_shapes_benchmark(args.out, args.scenes, args.seed, force=args.force)
    items = read_shapes(out)
    captions = sum(item.task == "generative" for item in items)
    print(
        f"Wrote the mmlens-shapes benchmark to {out}: {args.scenes} scenes (seed {args.seed}), "
        f"{captions} caption queries and {len(items) - captions} yes-no questions in AMBER's "
        f"format. Score outputs with: mmlens score amber --amber {out} --responses FILE"
    )
    return 0


def _priors(args: argparse.Namespace) -> int:
    from mmlens.benchmarks.priors import read_priors, write_priors_benchmark
    from mmlens.errors import ConfigError

    if args.scenes < 2:
        raise ConfigError(f"--scenes {args.scenes}: need at least 2.")
    out = write_priors_benchmark(args.out, args.scenes, args.seed, force=args.force)
    print(
        f"Wrote the mmlens-priors benchmark to {out}: {len(read_priors(out))} caption queries "
        f"(seed {args.seed}), half of the objects drawn against their prior colour. Run it with: "
        f"mmlens run priors --data {out} --model mmlens/priors --out RUN"
    )
    return 0


def add_commands(commands: Any) -> None:
    """Register `mmlens benchmark`."""
    bench = commands.add_parser("benchmark", help="write the built-in benchmark to a folder")
    kinds = bench.add_subparsers(dest="benchmark", required=True)
    shapes = kinds.add_parser("shapes", help="scenes of coloured shapes, half breaking a prior")
    shapes.add_argument("--out", required=True, help="output folder")
    shapes.add_argument("--scenes", type=int, default=100, help="number of scenes")
    shapes.add_argument("--seed", type=int, default=20_000, help="scene generator seed")
    shapes.add_argument("--force", action="store_true", help="replace an existing folder")
    shapes.set_defaults(run=_shapes)
    priors = kinds.add_parser("priors", help="one drawn object per scene, for mmlens/priors")
    priors.add_argument("--out", required=True, help="output folder")
    priors.add_argument("--scenes", type=int, default=200, help="number of scenes")
    priors.add_argument("--seed", type=int, default=30_000, help="scene generator seed")
    priors.add_argument("--force", action="store_true", help="replace an existing folder")
    priors.set_defaults(run=_priors)
