"""Options and helpers shared by the commands."""

import argparse
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from mmlens.errors import ConfigError

if TYPE_CHECKING:
    from mmlens.model import HookedLVLM

DEFAULT_PROMPT = "Please describe this image in detail."
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default="mmlens/shapes",
        help="shipped model name, local checkpoint dir or cached hub id",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument(
        "--dtype",
        choices=["float32", "bfloat16", "float16"],
        default="float32",
        help="weights dtype (lens statistics are computed in float32 or better)",
    )


def add_generation_options(
    parser: argparse.ArgumentParser, max_new_tokens: int = 64, lens_and_rivals: bool = False
) -> None:
    parser.add_argument("--prompt", default=DEFAULT_PROMPT)
    parser.add_argument("--max-new-tokens", type=int, default=max_new_tokens)
    if lens_and_rivals:
        parser.add_argument("--rivals", help="comma-separated single-token words to follow")
        parser.add_argument("--lens", choices=["normed", "paper"], default="normed")


def rivals(args: argparse.Namespace) -> list[str]:
    """The words of `--rivals dog,sheep`."""
    return [word for word in (args.rivals or "").split(",") if word]


def load_model(args: argparse.Namespace) -> "HookedLVLM":
    import torch

    from mmlens.loading import load

    return load(args.model, device=args.device, dtype=getattr(torch, args.dtype))


def parse_blocks(text: str, what: str) -> list[int]:
    """'1,2,5-7' -> [1, 2, 5, 6, 7] (block indices); `what` names the value in the error."""
    parts = text.split(",")
    if not all(re.fullmatch(r"\d+(-\d+)?", part.strip()) for part in parts):
        raise ConfigError(f"{what}: give block indices like 1,2,5-7")
    chosen: list[int] = []
    for part in parts:
        first, _, last = part.strip().partition("-")
        chosen.extend(range(int(first), int(last or first) + 1))
    return chosen


def parse_block_sets(specs: Sequence[str], option: str) -> dict[str, list[int]]:
    """'name=1,2,5-7' -> {'name': [1, 2, 5, 6, 7]} (block indices)."""
    sets = {}
    for spec in specs:
        name, _, blocks = spec.rpartition("=")
        if name and not re.fullmatch(r"[A-Za-z0-9._-]+", name):
            raise ConfigError(f"{option} {spec!r}: name the set with letters, digits, . _ -")
        sets[name or spec] = parse_blocks(blocks, f"{option} {spec!r}")
    return sets
