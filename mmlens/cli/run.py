"""`mmlens run amber|pope|coco|shapes|priors`: trace a model over a benchmark, resumable and
shardable.

    mmlens run shapes --out runs/shapes   # writes the built-in benchmark to runs/shapes/benchmark
    mmlens run shapes --data BENCH --out runs/shapes   # BENCH: from `mmlens benchmark shapes`
    mmlens run pope --data coco_pope_random.json --images val2014/ --model DIR --out runs/pope
    torchrun --nproc-per-node 8 -m mmlens run amber --data AMBER/data --images AMBER/image \\
        --model DIR --device cuda --out runs/amber              # one process per GPU
    mmlens run shapes --data BENCH --out runs/shapes --skips paper --skip late=6,7
        # then the same items with skip.1-3 and blocks 6,7 skipped: runs/shapes/skips/NAME

One run owns --out at a time (a second one is refused, naming the first); the owner first tidies
what stopped runs left there (see `mmlens.runs.locking` and `mmlens.runs.repair`).
"""

import argparse
import json
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mmlens.cli.options import LENS_HELP, add_model_options, parse_block_sets, parse_blocks
from mmlens.errors import ConfigError

BUILT_IN = ("shapes", "priors")  # written by `mmlens benchmark`, images inside the folder
DATA_HELP = {
    "amber": "AMBER's data folder",
    "pope": "a question file",
    "coco": "COCO's annotations folder",
    "shapes": "a folder from `mmlens benchmark shapes`",
    "priors": "a folder from `mmlens benchmark priors`",
}


def _items(args: argparse.Namespace) -> Any:
    from mmlens.benchmarks import ItemSet

    data = Path(args.data)
    images = args.images
    if args.benchmark not in BUILT_IN and images is None:
        raise ConfigError(f"mmlens run {args.benchmark} needs --images (the benchmark's images).")
    if args.benchmark == "shapes":
        from mmlens.benchmarks import read_shapes

        found = read_shapes(data)
    elif args.benchmark == "priors":
        from mmlens.benchmarks.priors import read_priors

        found = read_priors(data)
    elif args.benchmark == "amber":
        from mmlens.benchmarks import read_amber

        found = read_amber(data, images=images)
    elif args.benchmark == "pope":
        from mmlens.benchmarks import read_pope

        found = read_pope(data, images=images)
    else:
        from mmlens.benchmarks import CocoTruth, read_coco

        return read_coco(CocoTruth(data), images=images, limit=args.limit)
    if args.limit is None:
        return found
    kept = found.items[: args.limit]
    last = kept[-1].id if kept else None
    return ItemSet(kept, tuple(s for s in found.skipped if last is None or s.id < last))


def _finish(store: Any, benchmark: str, line: str) -> None:
    """Rank 0: merge the parts, write the benchmark's output file and summary.json, report."""
    from mmlens.runs import write_benchmark_output
    from mmlens.runs.repair import repair_duplicates
    from mmlens.runs.store import write_text_atomic

    repaired = repair_duplicates(store.out)  # (only if a straggler of a stopped launch wrote)
    if repaired:
        print(repaired)
    merged, tokens = store.merge()
    output = write_benchmark_output(benchmark, merged, store.out)
    failed = merged[merged.status == "failed"] if len(merged) else merged
    kinds = failed.error.str.split(":").str[0] if len(failed) else failed.error
    report = {
        "items": len(merged),
        "ok": int((merged.status == "ok").sum()) if len(merged) else 0,
        "failed": len(failed),
        "errors": {
            kind: {"count": int(count), "example": failed.error[kinds == kind].iloc[0]}
            for kind, count in kinds.value_counts().head(10).items()
        },
        "token_rows": len(tokens),
        "seconds_per_item": float(merged.seconds.mean()) if len(merged) else None,
    }
    write_text_atomic(store.out / "summary.json", json.dumps(report, indent=1) + "\n")
    print(
        f"rank 0: {line}\nRun folder {store.out}: {report['items']} items "
        f"({report['ok']} ok, {report['failed']} failed); items.parquet, tokens.parquet, "
        f"{output.name}, summary.json"
    )
    for kind, found in report["errors"].items():
        print(f"  failed x{found['count']}: {kind} (e.g. {found['example']})")


def _run_one(
    args: argparse.Namespace, model: Any, items: Any, store: Any, settings: Any, shard: Any
) -> None:
    """Trace this rank's share into `store`; rank 0 merges once every rank is done."""
    from mmlens.runs import run_items

    summary = run_items(model, items, store, settings, shard, progress=not args.quiet)
    shard.barrier()
    if shard.rank == 0:
        _finish(store, args.benchmark, summary.line())
    shard.barrier()  # the merged tables exist for every rank (the skip sets read them)


def _open_store(folder: str | Path, identity: dict[str, Any], shard: Any) -> Any:
    """Open a run folder for every rank: rank 0 creates it (parts/, run.json) and the others open
    it after a barrier, so no rank sees another's half-made folder."""
    from mmlens.runs import RunStore

    if shard.rank == 0:
        store = RunStore.open(folder, identity, shard.rank)
    shard.barrier()
    if shard.rank != 0:
        store = RunStore.open(folder, identity, shard.rank)
    return store


def _skip_sets(
    args: argparse.Namespace, out: Path, n_blocks: int, extra: dict[str, list[int]]
) -> dict[str, list[int]]:
    """The skip settings to run after the original: the paper's three, from the original run's
    data-set stages (`--skips paper`), and the user's (`--skip NAME=BLOCKS`)."""
    from mmlens.analyses.skip import skip_plan
    from mmlens.analyses.stages import frame_stages, summarize_stages
    from mmlens.runs import read_run

    sets: dict[str, list[int]] = {}
    if args.skips == "paper":
        _, tokens = read_run(out)
        stages = summarize_stages(frame_stages(tokens))
        sets = skip_plan(stages, n_blocks)
        print(
            f"data-set stages: critical layer {stages.critical_layer}, mutation layers "
            f"{stages.mutation_layers} -> {sets or 'no paper skip set applies'}"
        )
    sets.update(extra)
    return sets


def _write_built_in(benchmark: str, folder: Path) -> None:
    """The built-in benchmark at its default size and seed, written into the run folder."""
    if benchmark == "shapes":
        from mmlens.benchmarks import write_shapes_benchmark as write
    else:
        from mmlens.benchmarks.priors import write_priors_benchmark as write
    write(folder)
    print(f"wrote the built-in {benchmark} benchmark (default scenes and seed) to {folder}")


def _tidy(out: Path) -> None:
    """Run by the lock's new holder before anything is written: say what it cleaned or repaired."""
    from mmlens.runs.repair import tidy_run_folder

    for line in tidy_run_folder(out):
        print(line)


def _command(args: argparse.Namespace) -> str:
    """The command, short, as the lock file shows it to a run that is refused."""
    words = ["mmlens", "run", args.benchmark, "--data", str(args.data), "--out", args.out]
    for option in ("model", "limit", "max_new_tokens", "skip_layers", "skips", "batch_size"):
        value = getattr(args, option, None)
        if value is not None and value != []:
            words += [f"--{option.replace('_', '-')}", str(value)]
    return shlex.join(str(word) for word in words)


def benchmark_source(
    args: argparse.Namespace, shard: Any, command: str
) -> tuple[Any, dict[str, Any], Callable[[Path], None]]:
    """What `mmlens run` and `mmlens activations` read, checked before anything is written:
    the items (None for a built-in benchmark that is written into OUT/benchmark once the folder
    is held), the run's identity, and what the folder's holder does first (`prepare`)."""
    from mmlens.runs.repair import BENCHMARK_FOLDER

    if args.device_map and shard.world > 1:
        raise ConfigError(
            f"--device-map with {shard.world} processes: each would spread its own copy over "
            "every device. Use --device-map in one process, or torchrun with --device cuda."
        )
    built_in_default = args.data is None
    if built_in_default:
        if args.benchmark not in BUILT_IN:
            raise ConfigError(
                f"mmlens {command} {args.benchmark} needs --data ({DATA_HELP[args.benchmark]})."
            )
        args.data = str(Path(args.out) / BENCHMARK_FOLDER)
    items = None if built_in_default else _items(args)  # a bad --data fails before any writing
    identity = {
        "benchmark": args.benchmark,
        "data": str(Path(args.data).resolve()),
        "images": str(Path(args.images).resolve()) if args.images else None,
        "model": args.model,
        "dtype": args.dtype,
    }

    def prepare(out: Path) -> None:
        _tidy(out)
        if built_in_default and not Path(args.data).is_dir():
            _write_built_in(args.benchmark, Path(args.data))

    return items, identity, prepare


def _run(args: argparse.Namespace) -> int:
    from mmlens.runs import RunSettings, RunStore, Shard
    from mmlens.runs.locking import hold_run_folder
    from mmlens.runs.threads import run_threads

    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit {args.limit}: give a positive number of items.")
    run_threads(args.threads, args.device)  # a bad --threads is refused before anything is written
    if (args.skips or args.skip) and args.skip_layers:
        raise ConfigError(
            "--skip-layers makes one skipped run; --skips/--skip add skip runs to a "
            "full one. Use one or the other."
        )
    skip_layers = (
        parse_blocks(args.skip_layers, f"--skip-layers {args.skip_layers!r}")
        if args.skip_layers
        else []
    )
    extra_sets = parse_block_sets(args.skip or [], "--skip")
    settings = RunSettings(
        max_new_tokens=args.max_new_tokens,
        lens=args.lens,
        top_k=args.top_k,
        suffix=args.suffix,
        flush_every=args.flush_every,
        batch_size=args.batch_size,
        skip_layers=tuple(skip_layers),
        visual_attention=args.visual_attention,
    )
    shard = Shard.from_env()
    items, identity, prepare = benchmark_source(args, shard, "run")
    RunStore.check(args.out, {**identity, **settings.identity()})  # before making the folder
    with hold_run_folder(args.out, shard, _command(args), prepare=prepare):  # before the slow load
        RunStore.check(args.out, {**identity, **settings.identity()})  # (a run before may have)
        _run_locked(args, items or _items(args), identity, settings, extra_sets, shard)
    shard.close()
    return 0


def _run_locked(
    args: argparse.Namespace,
    items: Any,
    identity: dict[str, Any],
    settings: Any,
    extra_sets: dict[str, list[int]],
    shard: Any,
) -> None:
    """Load the model, run the items, then the skip runs; the caller holds the folder."""
    from dataclasses import replace

    from mmlens.cli.options import load_model
    from mmlens.runs.runner import check_settings
    from mmlens.runs.threads import run_threads, torch_threads

    args.device = shard.device(args.device)
    with torch_threads(run_threads(args.threads, args.device)):
        model = load_model(args)
        check_settings(model, settings)
        for blocks in extra_sets.values():
            check_settings(model, replace(settings, skip_layers=tuple(blocks)))
        store = _open_store(args.out, {**identity, **settings.identity()}, shard)
        _run_one(args, model, items, store, settings, shard)
        if args.skips or args.skip:
            for name, blocks in _skip_sets(args, store.out, model.n_blocks, extra_sets).items():
                variant = replace(settings, skip_layers=tuple(blocks))
                folder = store.out / "skips" / name
                opened = _open_store(folder, {**identity, **variant.identity()}, shard)
                _run_one(args, model, items, opened, variant, shard)


def add_commands(commands: Any) -> None:
    """Register `mmlens run`."""
    run = commands.add_parser("run", help="trace a model over a benchmark (resumable, sharded)")
    run.add_argument("benchmark", choices=["amber", "pope", "coco", *BUILT_IN])
    run.add_argument(
        "--data",
        help="; ".join(f"{name}: {text}" for name, text in DATA_HELP.items())
        + " (shapes, priors: without --data, the default benchmark is written to OUT/benchmark)",
    )
    run.add_argument("--images", help="the benchmark's images (shapes, priors: inside --data)")
    run.add_argument("--limit", type=int, help="only the first N items (raise it to extend a run)")
    run.add_argument("--out", required=True, help="run folder (rerun the command to resume)")
    add_model_options(run)
    run.add_argument("--max-new-tokens", type=int, default=64, help="tokens per item at most")
    run.add_argument("--lens", choices=["normed", "paper"], default="normed", help=LENS_HELP)
    run.add_argument("--top-k", type=int, default=5, help="top tokens recorded per layer")
    run.add_argument("--suffix", default="", help="text appended to every prompt")
    run.add_argument(
        "--visual-attention",
        action="store_true",
        help="also record each layer's share of attention on image tokens at the predicting "
        "position (mean over heads): tokens.parquet's image_attention column",
    )
    run.add_argument("--batch-size", type=int, default=1, help="items traced in one forward")
    run.add_argument("--flush-every", type=int, default=16, help="items per written part")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument(
        "--threads",
        type=int,
        help="torch CPU threads per process (default: 1 on CPU, as torchrun gives each rank, "
        "unless OMP_NUM_THREADS is set; torch's own on GPU); see benchmarks/RESULTS.md",
    )
    run.add_argument("--skip-layers", help="blocks not computed in this run, e.g. 6,7 or 1-5")
    run.add_argument(
        "--skips",
        choices=["paper"],
        help="after the run, rerun its items with the paper's skip.1-3 (from the run's data-set "
        "stages) into OUT/skips/NAME",
    )
    run.add_argument(
        "--skip",
        action="append",
        metavar="NAME=BLOCKS",
        help="also rerun the items with these blocks skipped into OUT/skips/NAME (repeatable)",
    )
    run.set_defaults(run=_run)
