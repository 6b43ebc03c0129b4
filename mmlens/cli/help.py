"""How `--help` reads: every option with its default, descriptions kept as written."""

import argparse

#: Shown by `mmlens --help`: what a user can do, and where to start.
OVERVIEW = """\
See how an image turns into words inside a vision-language model (LLaVA-1.5, LLaVA-NeXT,
Qwen2.5-VL, Gemma 3): the logit lens at every layer, critical and mutation layers, skipping
layers, and the link between mutations and hallucination over whole benchmarks.

Start here:
  mmlens report --out report/        a report on the bundled scene and the shipped model
  mmlens report photo.jpg --model DIR --out report/    the same for your image and checkpoint
  mmlens run shapes --out runs/shapes && mmlens link runs/shapes --out link/
                                     the hallucination link over the built-in benchmark
  mmlens score pope|chair|amber ...  score outputs other tools wrote, offline
  mmlens activations shapes --hooks 'blocks.*.hook_resid_post' --out acts/
                                     store activations over a benchmark, for probes

Every command has --help. Models are local folders or cached hub ids; nothing is downloaded.
"""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written, and each option's default after its help ("(default: 64)");
    flags and options without a default say nothing more."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        shown = (
            action.option_strings
            and default is not None
            and default is not argparse.SUPPRESS
            and not isinstance(default, bool)
            and default not in ([], "")
            and "%(default)" not in text
        )
        return f"{text} (default: %(default)s)".strip() if shown else text


def apply(parser: argparse.ArgumentParser) -> None:
    """Give `parser` and every subcommand under it the formatter."""
    parser.formatter_class = HelpFormatter
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                apply(child)
