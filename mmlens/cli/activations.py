"""`mmlens activations BENCHMARK --hooks ... --positions ... --out DIR`: store chosen activations
over a benchmark (as `mmlens run`: batched, resumable, sharded with torchrun, one run per folder).

    mmlens activations shapes --hooks 'blocks.*.hook_resid_post' --positions image_mean,last \\
        --out acts/shapes
    torchrun --nproc-per-node 8 -m mmlens activations pope --data coco_pope_random.json \\
        --images val2014/ --model DIR --device cuda --hooks 'blocks.*.hook_resid_post' \\
        --positions image_mean,last --out acts/pope

Read it back with `mmlens.runs.activation_store.ActivationStore(DIR)`.
"""

import argparse
import fnmatch
from dataclasses import replace
from typing import Any

from mmlens.cli.options import add_model_options, load_model
from mmlens.cli.run import BUILT_IN, _items, _open_store, benchmark_source
from mmlens.errors import ConfigError


def expand_hooks(patterns: tuple[str, ...], hook_dict: dict[str, Any]) -> tuple[str, ...]:
    """Hook names from names and shell patterns (`blocks.*.hook_resid_post`), in the model's
    order; a pattern matching nothing is refused."""
    names: list[str] = []
    for pattern in patterns:
        found = [name for name in hook_dict if fnmatch.fnmatchcase(name, pattern)]
        if not found and pattern not in hook_dict:
            raise ConfigError(f"--hooks {pattern!r} matches no hook of this model.")
        names += [name for name in found or [pattern] if name not in names]
    return tuple(names)


def _activations(args: argparse.Namespace) -> int:
    from mmlens.runs import Shard
    from mmlens.runs.activation_store import merge_index
    from mmlens.runs.activations import ActivationSettings, check_hooks, collect_batch
    from mmlens.runs.locking import hold_run_folder
    from mmlens.runs.runner import run_items
    from mmlens.runs.store import RunStore
    from mmlens.runs.threads import run_threads, torch_threads

    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit {args.limit}: give a positive number of items.")
    run_threads(args.threads, args.device)
    patterns = tuple(part.strip() for part in args.hooks.split(",") if part.strip())
    kinds = tuple(part.strip() for part in args.positions.split(",") if part.strip())
    settings = ActivationSettings(
        hooks=patterns,
        positions=kinds,
        max_new_tokens=args.max_new_tokens,
        suffix=args.suffix,
        flush_every=args.flush_every,
        batch_size=args.batch_size,
    )
    shard = Shard.from_env()
    items, identity, prepare = benchmark_source(args, shard, "activations")
    identity = {"kind": "activations", **identity, **settings.identity()}
    RunStore.check(args.out, identity)

    command = f"mmlens activations {args.benchmark} --out {args.out}"
    with hold_run_folder(args.out, shard, command, prepare=prepare):
        args.device = shard.device(args.device)
        with torch_threads(run_threads(args.threads, args.device)):
            model = load_model(args)
            settings = replace(settings, hooks=expand_hooks(patterns, model.hook_dict))
            check_hooks(model, settings)
            store = _open_store(args.out, identity, shard)
            summary = run_items(
                model, items or _items(args), store, settings, shard, not args.quiet, collect_batch
            )
            shard.barrier()
            if shard.rank == 0:
                merge_index(store.out)
                print(
                    f"rank 0: {summary.line()}\nActivation folder {store.out}: items.parquet, "
                    f"index.parquet and parts/*/activations.safetensors ({len(settings.hooks)} "
                    f"hooks x {len(settings.positions)} position kinds)"
                )
            shard.barrier()
    shard.close()
    return 0


def add_commands(commands: Any) -> None:
    """Register `mmlens activations`."""
    command = commands.add_parser(
        "activations",
        help="store chosen activations over a benchmark, for probes (resumable, sharded)",
    )
    command.add_argument("benchmark", choices=["amber", "pope", "coco", *BUILT_IN])
    command.add_argument("--data", help="as for mmlens run")
    command.add_argument("--images", help="the benchmark's images (shapes, priors: inside --data)")
    command.add_argument("--limit", type=int, help="only the first N items")
    command.add_argument("--out", required=True, help="activation folder (rerun to resume)")
    add_model_options(command)
    command.add_argument(
        "--hooks",
        required=True,
        help="comma-separated TransformerLens hook names or patterns, e.g. "
        "'blocks.*.hook_resid_post,hook_image_embeds'",
    )
    command.add_argument(
        "--positions",
        default="image_mean,last",
        help="comma-separated position kinds: image, image_mean, regions:N, last, generated",
    )
    command.add_argument(
        "--max-new-tokens",
        type=int,
        default=0,
        help="tokens generated per item (the 'generated' positions need at least 2)",
    )
    command.add_argument("--suffix", default="", help="text appended to every prompt")
    command.add_argument("--batch-size", type=int, default=1, help="items in one forward")
    command.add_argument("--flush-every", type=int, default=16, help="items per written part")
    command.add_argument("--threads", type=int, help="torch CPU threads per process")
    command.add_argument("--quiet", action="store_true", help="no progress bar")
    command.set_defaults(run=_activations)
