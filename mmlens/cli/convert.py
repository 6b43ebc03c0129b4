"""`mmlens convert`: write a checkpoint stored in another layout (original LLaVA) in Hugging Face
format, once, so that every command and `transformers` alone load it."""

import argparse
from pathlib import Path

from mmlens.errors import ConfigError


def add_commands(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "convert",
        help="convert an original-format checkpoint (LLaVA's LlavaLlamaForCausalLM) to HF format",
        description=__doc__,
    )
    parser.add_argument("checkpoint", help="the checkpoint folder (config.json + safetensors)")
    parser.add_argument("out", help="a new or empty folder for the converted checkpoint")
    parser.add_argument(
        "--vision-tower",
        help="local folder of the CLIP tower the config names (default: mm_vision_tower as a "
        "folder or a cached hub id)",
    )
    parser.set_defaults(run=_convert)


def _convert(args: argparse.Namespace) -> int:
    from mmlens.loading import resolve_checkpoint
    from mmlens.registry import adapter_for

    checkpoint = resolve_checkpoint(args.checkpoint)
    adapter = adapter_for(checkpoint)
    options = {"vision_tower": args.vision_tower} if args.vision_tower else {}
    unknown = sorted(set(options) - set(adapter.load_options))
    if unknown:
        raise ConfigError(f"--vision-tower does not apply to {adapter.__name__} checkpoints.")
    written = adapter.convert(checkpoint, Path(args.out), **options)
    print(f"Converted {checkpoint} to {written}; load it with --model {written}")
    return 0
