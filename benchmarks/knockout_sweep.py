"""The shared knockout sweep against the naive loop, side by side in one run.

    python benchmarks/knockout_sweep.py [--scale small|llava7b|tiny] [--image-size 112]
        [--window 8] [--rounds 3] [--threads 1] [--device cuda --dtype bfloat16] [--out F.json]

`analyses.flow.knockout_sweep` with `shared=True` runs, for the window starting at block s, only
blocks s.. (from the unedited run's cached residual stream) with the three edges as one batch of
three rows; `shared=False` runs one whole forward per window and edge. Both contenders run the
whole call (the unedited run with its cache included) on the same loaded random-weight LLaVA
(`trace_cost.py`'s scales), image, prompt, window and edges, in one process, in interleaved
rounds whose order alternates (shared first in even rounds, naive first in odd ones), after a
one-window warm-up of each. Reported per contender: wall seconds (`time.perf_counter`) and the
process's CPU seconds (`time.process_time`, all threads), median and best over the rounds; the
ratios naive / shared of the medians and of the bests; and the largest difference between the
two tables' `value` columns (they must agree).

Image size: LLaVA-1.5's 336 px (576 image tokens) is the default of `--scale llava7b`; the
`small` scale (LLaVA-7B's 32 blocks at width 1024) defaults to 112 px (64 image tokens, 76
positions with the default prompt) so that 3 rounds fit in about 6 minutes on 2 CPU cores with
one thread: at 336 px one naive sweep alone (75 forwards of ~600 positions) takes ~8 minutes.
`--scale tiny` (the 4-block test model, seconds) checks that the script runs.

The block cost the shared path runs, over the naive one's, is the mean over window starts s of
(n - s) / n (0.625 for windows of 8 of 32 blocks: 1.6x fewer); the vision tower, projector,
embedding and unembedding still run in every forward of both, which pulls the ratio below 1.6,
and batching the edges makes each row cheaper, which lifts it (1.79 on 2 CPU cores, see
RESULTS.md).
"""

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from trace_cost import SCALES  # noqa: E402  (the same random LLaVAs as the other benchmarks)

import mmlens  # noqa: E402
from mmlens.analyses.flow import EDGES, knockout_sweep  # noqa: E402
from mmlens.zoo.tiny import build_llava, build_tokenizer  # noqa: E402

#: `tiny` is trace_cost's `smoke` (4 blocks, width 64, 16 image tokens).
KNOCKOUT_SCALES = {**SCALES, "tiny": SCALES["smoke"]}
#: Image sizes that make the default run fit (see the docstring); others keep their spec's.
DEFAULT_IMAGE_SIZE = {"small": 112, "llava7b": 336}
CONTENDERS = ("shared", "naive")


def build_checkpoint(scale: str, image_size: int | None, folder: Path, dtype: str) -> Path:
    """trace_cost's random LLaVA of `scale`, with `image_size` px images, saved in `dtype`."""
    spec = KNOCKOUT_SCALES[scale]
    if image_size is not None:
        spec = dataclasses.replace(spec, image_size=image_size)
    model, processor = build_llava(spec, build_tokenizer())
    model.to(getattr(torch, dtype)).save_pretrained(folder, safe_serialization=True)
    processor.save_pretrained(folder)
    return folder


def machine_info(device: str) -> dict:
    """Platform, CPU model and count, torch and its thread count (and the GPU, if any)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if "model name" in line)
    except (OSError, StopIteration):
        pass
    info = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "device": device,
    }
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(device)
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:
        pass
    return info


def summarise(runs: list[dict]) -> dict:
    walls = [run["wall_s"] for run in runs]
    cpus = [run["cpu_s"] for run in runs]
    return {
        "wall_median_s": statistics.median(walls),
        "wall_best_s": min(walls),
        "cpu_median_s": statistics.median(cpus),
        "cpu_best_s": min(cpus),
        "wall_s": walls,
        "cpu_s": cpus,
    }


def markdown(summary: dict) -> str:
    """The table of medians and bests, and the ratios naive / shared."""
    lines = [
        "| contender | wall median s | wall best s | CPU median s | CPU best s |",
        "|---|---|---|---|---|",
    ]
    for name in CONTENDERS:
        row = summary["contenders"][name]
        cells = [row[key] for key in ("wall_median_s", "wall_best_s", "cpu_median_s", "cpu_best_s")]
        lines.append(f"| {name} | " + " | ".join(f"{v:.3g}" for v in cells) + " |")
    ratio = summary["naive / shared"]
    lines.append(
        f"| naive / shared | {ratio['wall_median']:.2f} | {ratio['wall_best']:.2f} | "
        f"{ratio['cpu_median']:.2f} | {ratio['cpu_best']:.2f} |"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", choices=list(KNOCKOUT_SCALES), default="small")
    parser.add_argument(
        "--image-size",
        type=int,
        help="px (patches of 14: 112 -> 64 image tokens, 336 -> 576); default: small 112, "
        "llava7b 336, tiny its own",
    )
    parser.add_argument("--window", type=int, help="blocks per window; default a quarter")
    parser.add_argument("--prompt", default="Please describe this image in detail.")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch.set_num_threads (CPU); 0 = torch's default"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--out", type=Path, help="also write the summary to this JSON file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    image_size = args.image_size or DEFAULT_IMAGE_SIZE.get(args.scale)

    def sync() -> None:
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    with tempfile.TemporaryDirectory() as folder:
        checkpoint = build_checkpoint(args.scale, image_size, Path(folder), args.dtype)
        model = mmlens.load(checkpoint, device=args.device, dtype=getattr(torch, args.dtype))
    image = np.random.default_rng(0).integers(0, 255, (336, 336, 3), dtype=np.uint8)
    n_blocks = model.n_blocks
    window = args.window or max(1, n_blocks // 4)
    inputs = model.prepare(image, args.prompt)

    def sweep(shared: bool, size: int = window):
        return knockout_sweep(model, image, args.prompt, window=size, shared=shared, progress=False)

    for shared in (True, False):  # warm-up: one window (every block), not measured
        sweep(shared, n_blocks)
    sync()
    runs: dict[str, list[dict]] = {name: [] for name in CONTENDERS}
    tables: dict[str, object] = {}
    max_diff = 0.0
    for round_index in range(args.rounds):
        order = CONTENDERS if round_index % 2 == 0 else CONTENDERS[::-1]
        for name in order:
            cpu, wall = time.process_time(), time.perf_counter()
            tables[name] = sweep(name == "shared")
            sync()
            result = {
                "round": round_index,
                "wall_s": time.perf_counter() - wall,
                "cpu_s": time.process_time() - cpu,
            }
            runs[name].append(result)
            print(name, json.dumps({k: round(v, 2) for k, v in result.items()}), flush=True)
        shared_table, naive_table = tables["shared"], tables["naive"]
        assert list(shared_table.edge) == list(naive_table.edge)
        assert list(shared_table.start) == list(naive_table.start)
        max_diff = max(max_diff, float((shared_table.value - naive_table.value).abs().max()))
    starts = range(n_blocks - window + 1)
    contenders = {name: summarise(runs[name]) for name in CONTENDERS}
    shared_row, naive_row = contenders["shared"], contenders["naive"]
    summary = {
        "machine": machine_info(args.device),
        "scale": args.scale,
        "dtype": args.dtype,
        "n_blocks": n_blocks,
        "d_model": model.d_model,
        "image_size": image_size or KNOCKOUT_SCALES[args.scale].image_size,
        "n_image_tokens": int(inputs.image_mask[0].sum()),
        "n_positions": inputs.n_positions,
        "prompt": args.prompt,
        "window": window,
        "n_windows": len(starts),
        "edges": list(EDGES),
        "rounds": args.rounds,
        "forwards": {
            "naive": f"{len(starts) * len(EDGES)} of 1 row, all {n_blocks} blocks",
            "shared": f"{len(starts)} of {len(EDGES)} rows, blocks s.. only",
        },
        "mean fraction of blocks the shared path runs, mean of (n - s) / n": float(
            np.mean([(n_blocks - s) / n_blocks for s in starts])
        ),
        "contenders": contenders,
        "naive / shared": {
            "wall_median": naive_row["wall_median_s"] / shared_row["wall_median_s"],
            "wall_best": naive_row["wall_best_s"] / shared_row["wall_best_s"],
            "cpu_median": naive_row["cpu_median_s"] / shared_row["cpu_median_s"],
            "cpu_best": naive_row["cpu_best_s"] / shared_row["cpu_best_s"],
            "per round (wall)": [
                n["wall_s"] / s["wall_s"]
                for n, s in zip(runs["naive"], runs["shared"], strict=True)
            ],
        },
        "max |value shared - value naive|": max_diff,
        "base": float(tables["shared"].base.iloc[0]),
        "metric": tables["shared"].attrs.get("metric"),
    }
    print()
    print(json.dumps({k: v for k, v in summary.items() if k != "contenders"}, indent=1))
    print()
    print(markdown(summary))
    if args.out:
        args.out.write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
