"""Options and helpers shared by the commands."""

import argparse
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmlens.errors import ConfigError

if TYPE_CHECKING:
    from mmlens.model import HookedLVLM

DEFAULT_PROMPT = "Please describe this image in detail."
LENS_HELP = (
    "normed: final norm then unembedding at every layer (the correct logit lens); paper: "
    "unembedding alone, as the paper's code"
)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default="mmlens/shapes",
        help="shipped model name, local checkpoint dir or cached hub id",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument(
        "--device-map",
        help="spread a model larger than one device instead of --device: auto, balanced, "
        "balanced_low_0, sequential, or a JSON file {module name: device}",
    )
    parser.add_argument(
        "--max-memory", help="memory per device for --device-map, e.g. 0=70GiB,1=70GiB,cpu=200GiB"
    )
    parser.add_argument("--offload-folder", help="folder for weights --device-map sends to disk")
    parser.add_argument(
        "--dtype",
        choices=["float32", "bfloat16", "float16"],
        default="float32",
        help="weights dtype (lens statistics are computed in float32 or better)",
    )


def add_generation_options(
    parser: argparse.ArgumentParser, max_new_tokens: int = 64, lens_and_rivals: bool = False
) -> None:
    parser.add_argument("--prompt", default=DEFAULT_PROMPT, help="the question or instruction")
    parser.add_argument(
        "--max-new-tokens", type=int, default=max_new_tokens, help="tokens to generate at most"
    )
    if lens_and_rivals:
        parser.add_argument("--rivals", help="comma-separated single-token words to follow")
        parser.add_argument("--lens", choices=["normed", "paper"], default="normed", help=LENS_HELP)


def rivals(args: argparse.Namespace) -> list[str]:
    """The words of `--rivals dog,sheep`."""
    return [word for word in (args.rivals or "").split(",") if word]


def load_model(args: argparse.Namespace) -> "HookedLVLM":
    import torch

    from mmlens.loading import load

    dtype = getattr(torch, args.dtype)
    if getattr(args, "device_map", None) is None:
        if getattr(args, "max_memory", None) or getattr(args, "offload_folder", None):
            raise ConfigError("--max-memory and --offload-folder go with --device-map.")
        return load(args.model, device=args.device, dtype=dtype)
    if args.device != "cpu":
        raise ConfigError(
            f"--device {args.device} and --device-map {args.device_map}: pass one (a device map "
            "places every module itself)."
        )
    return load(
        args.model,
        dtype=dtype,
        device_map=device_map_option(args.device_map),
        max_memory=max_memory_option(args.max_memory),
        offload_folder=args.offload_folder,
    )


def device_map_option(text: str) -> str | dict[str, Any]:
    """`--device-map`: a strategy name, or the path of a JSON file {module name: device}."""
    if not text.endswith(".json"):
        return text
    path = Path(text)
    try:
        mapped = json.loads(path.read_text())
    except OSError as error:
        raise ConfigError(f"--device-map {text}: cannot read it ({error.strerror}).") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"--device-map {text} is not valid JSON ({error}).") from None
    if not isinstance(mapped, dict):
        raise ConfigError(f"--device-map {text} must hold a JSON object {{module name: device}}.")
    return mapped


def max_memory_option(text: str | None) -> dict[str | int, str] | None:
    """`--max-memory 0=70GiB,cpu=200GiB` as Accelerate's {device: size} (GPU indices as ints)."""
    if not text:
        return None
    budget: dict[str | int, str] = {}
    for entry in text.split(","):
        device, _, size = entry.strip().partition("=")
        if not device or not re.fullmatch(r"\d+(\.\d+)?\s*[KMGT]i?B", size.strip()):
            raise ConfigError(
                f"--max-memory {text!r}: write DEVICE=SIZE pairs, e.g. 0=70GiB,1=70GiB,cpu=200GiB."
            )
        budget[int(device) if device.isdigit() else device] = size.strip()
    return budget


def check_out_folder(out: str | Path, option: str = "--out") -> Path:
    """An output folder path, refused at once (before any slow work) if it is an existing file."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{option} {path} is a file; give a folder path for the output.")
    return path


def check_out_file(
    out: str | Path, option: str = "--out", suffixes: Sequence[str] | None = None
) -> Path:
    """An output file path, refused at once if it is an existing folder or (with `suffixes`,
    e.g. a figure's formats) ends otherwise; its parent folder is made."""
    path = Path(out)
    if path.is_dir():
        raise ConfigError(f"{option} {path} is a folder; give a file path.")
    if suffixes is not None and path.suffix.lower().lstrip(".") not in suffixes:
        raise ConfigError(
            f"{option} {path}: end it with one of .{', .'.join(sorted(suffixes))} (the format)."
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"{option} {path}: cannot make its folder ({error}).") from error
    return path


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
