"""Command line: `mmlens demo` (tiny model, per-layer table) and `mmlens trace` (save a Trace)."""

import argparse
import sys
import tempfile
from collections.abc import Sequence

import numpy as np
import torch

from mmlens.errors import MMLensError
from mmlens.trace import Trace

DEFAULT_PROMPT = "Please describe this image in detail."


def demo_image(size: int = 64) -> np.ndarray:
    """A small synthetic scene: a red square and a blue disc on grey."""
    image = np.full((size, size, 3), 200, dtype=np.uint8)
    image[8:28, 8:28] = (220, 30, 30)
    yy, xx = np.mgrid[:size, :size]
    image[(yy - 44) ** 2 + (xx - 42) ** 2 < 12**2] = (30, 60, 220)
    return image


def per_layer_table(trace: Trace, step: int = 0) -> str:
    """The lens statistics of one generation step, one line per layer."""
    frame = trace.to_frame()
    rows = frame[frame.step == step][
        ["layer", "token", "prob", "entropy", "jsd", "top1_token", "top1_prob"]
    ]
    return rows.to_string(index=False, float_format=lambda value: f"{value:.4f}")


def _demo(args: argparse.Namespace) -> int:
    from mmlens.loading import load
    from mmlens.zoo.tiny import build_tiny_llava

    with tempfile.TemporaryDirectory() as folder:
        print("Building a tiny random LLaVA (stand-in until the shipped model lands)...")
        model = load(build_tiny_llava(folder))
        trace = model.trace(
            demo_image(), args.prompt, max_new_tokens=args.max_new_tokens, progress=True
        )
    print(
        f"\nGenerated: {trace.text!r}\nLayers 0..{model.n_blocks} (0 = embeddings, "
        f"l = output of block l-1); step 0 predicts {trace.tokens[0]!r}:\n"
    )
    print(per_layer_table(trace))
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmlens", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="trace a tiny built-in model and print the table")
    demo.add_argument("--prompt", default=DEFAULT_PROMPT)
    demo.add_argument("--max-new-tokens", type=int, default=8)
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except MMLensError as error:
        print(f"mmlens: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
