"""Command line: `mmlens demo`, `mmlens trace` (save a Trace) and `mmlens models`."""

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image

from mmlens.errors import ConfigError, MMLensError
from mmlens.inputs import load_image
from mmlens.trace import Trace
from mmlens.zoo.shapes.scenes import Scene, SceneObject, draw_scene

DEFAULT_PROMPT = "Please describe this image in detail."


def demo_scene() -> Image.Image:
    """A fixed held-out scene for the demo: a green triangle, a red circle and a blue cross."""
    scene = Scene(
        (
            SceneObject("triangle", "green", "large", "left", -4),
            SceneObject("circle", "red", "small", "middle", 6),
            SceneObject("cross", "blue", "large", "right", 0),
        )
    )
    return draw_scene(scene)


def per_layer_table(trace: Trace, step: int = 0) -> str:
    """The lens statistics of one generation step, one line per layer."""
    frame = trace.to_frame()
    rows = frame[frame.step == step][
        ["layer", "token", "prob", "entropy", "jsd", "top1_token", "top1_prob"]
    ]
    return rows.to_string(index=False, float_format=lambda value: f"{value:.4f}")


def _demo(args: argparse.Namespace) -> int:
    from mmlens.loading import load

    model = load(args.model)
    trace = model.trace(demo_scene(), args.prompt, max_new_tokens=args.max_new_tokens)
    if not 0 <= args.step < trace.n_steps:
        raise ConfigError(f"--step {args.step}: the generation has steps 0..{trace.n_steps - 1}.")
    print(
        f"\nModel {args.model}. Generated: {trace.text!r}\nLayers 0..{model.n_blocks} "
        f"(0 = embeddings, l = output of block l-1); step {args.step} predicts "
        f"{trace.tokens[args.step]!r}:\n"
    )
    print(per_layer_table(trace, args.step))
    return 0


def _models(args: argparse.Namespace) -> int:
    from mmlens.registry import supported_architectures
    from mmlens.zoo import shipped_models

    print("Supported architectures (load a local directory or a cached hub id):")
    for name in supported_architectures():
        print(f"  {name}")
    print("Shipped models (no download needed):")
    for name, path in shipped_models().items():
        print(f"  {name}  ({path})")
    return 0


def _trace(args: argparse.Namespace) -> int:
    from mmlens.inputs import load_image
    from mmlens.loading import load

    image = load_image(args.image)  # fail on a bad image before the slow model load
    model = load(args.model, device=args.device, dtype=getattr(torch, args.dtype))
    rivals = [word for word in (args.rivals or "").split(",") if word]
    trace = model.trace(
        image,
        args.prompt,
        max_new_tokens=args.max_new_tokens,
        rivals=rivals,
        lens=args.lens,
        keep_features=args.keep_features,
        progress=True,
    )
    print(f"Generated: {trace.text!r}\nSaved to {trace.save(args.out)}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from mmlens.loading import load
    from mmlens.report import ReportSettings, write_report

    image = load_image(args.image) if args.image else demo_scene()
    settings = ReportSettings(
        prompt=args.prompt,
        max_new_tokens=args.max_new_tokens,
        rivals=tuple(word for word in (args.rivals or "").split(",") if word),
        lens=args.lens,
    )
    out = Path(args.out)
    if out.exists() and not args.force:  # fail before the slow model load
        raise ConfigError(f"{out} already exists; pass --force to replace it.")
    model = load(args.model, device=args.device, dtype=getattr(torch, args.dtype))
    print(f"Report written to {write_report(model, image, out, settings, force=args.force)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmlens", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="trace the shipped model and print a per-layer table")
    demo.add_argument("--model", default="mmlens/shapes")
    demo.add_argument("--prompt", default=DEFAULT_PROMPT)
    demo.add_argument("--max-new-tokens", type=int, default=40)
    demo.add_argument("--step", type=int, default=7, help="which generated token to tabulate")
    demo.set_defaults(run=_demo)
    trace = commands.add_parser("trace", help="record a generation layer by layer and save it")
    trace.add_argument("image", help="image file (png, jpg, ...)")
    trace.add_argument("--model", required=True, help="local checkpoint dir or cached hub id")
    trace.add_argument("--prompt", default=DEFAULT_PROMPT)
    trace.add_argument("--max-new-tokens", type=int, default=64)
    trace.add_argument("--rivals", help="comma-separated single-token words to follow")
    trace.add_argument("--lens", choices=["normed", "paper"], default="normed")
    trace.add_argument("--keep-features", action="store_true")
    trace.add_argument("--device", default="cpu")
    trace.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    trace.add_argument("--out", default="trace", help="output folder")
    trace.set_defaults(run=_trace)
    report = commands.add_parser("report", help="write an HTML report of every analysis")
    report.add_argument("image", nargs="?", help="image file (default: a bundled scene)")
    report.add_argument("--model", default="mmlens/shapes", help="checkpoint dir, hub id or name")
    report.add_argument("--prompt", default=DEFAULT_PROMPT)
    report.add_argument("--max-new-tokens", type=int, default=64)
    report.add_argument("--rivals", help="comma-separated single-token words to follow")
    report.add_argument("--lens", choices=["normed", "paper"], default="normed")
    report.add_argument("--device", default="cpu")
    report.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    report.add_argument("--out", default="mmlens-report", help="output folder")
    report.add_argument("--force", action="store_true", help="replace an existing output folder")
    report.set_defaults(run=_report)
    models = commands.add_parser("models", help="supported families and shipped models")
    models.set_defaults(run=_models)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except MMLensError as error:
        print(f"mmlens: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mmlens: interrupted; nothing was written.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
