"""Items per minute of `mmlens run`'s tracing at batch sizes 1, 4 and 8, against plain
`transformers` batched greedy `generate` plus the bare lens work (issue 12).

    python benchmarks/run_throughput.py [--scale small|llava7b|smoke] [--items 8] [--steps 8]
                                        [--rounds 3] [--batch-sizes 1,4,8] [--device cpu]

Every contender runs in its own fresh subprocess, in interleaved rounds, on the same random-weight
LLaVA (from `trace_cost.SCALES`) and the same items: distinct random images with prompts of
different lengths, so batches are padded. Contenders, for each batch size b:

- `trace_b`: `model.trace(images, prompts)` on batches of b (what `mmlens run --batch-size b`
  calls), recording every layer's lens statistics at every step;
- `hf_b`: a plain `transformers` `LlavaForConditionalGeneration` (no bridge) running
  `generate(do_sample=False, min_new_tokens=steps)` on the same left-padded batches, plus the
  bare lens work of the same number of token-steps (final norm, unembedding, softmax, top-k,
  entropy, JSD of every layer, on stored residuals).

Each subprocess warms up first (two tokens), then measures wall and process CPU time. A random
model rarely emits an end-of-sequence token; `trace` stops at one if it does, so the summary
gives tokens per second beside items per minute.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from trace_cost import benchmark_parser, build_checkpoint  # noqa: E402

PROMPTS = (
    "Describe this image.",
    "Please describe this image in detail.",
    "What is in the picture? Answer in one sentence, please.",
    "Is there a dog in the image?",
)


def run_contender(
    name: str, checkpoint: str, n_items: int, steps: int, device: str, dtype: str
) -> dict:
    """One contender in this process: seconds, CPU seconds and generated token-steps."""
    import numpy as np
    import torch
    from transformers import LlavaForConditionalGeneration

    import mmlens
    from mmlens.lens import adjacent_jsd, entropy, lens_logits, log_probs

    torch.set_grad_enabled(False)
    kind, size = name.rsplit("_", 1)
    batch = int(size)
    model = mmlens.load(checkpoint, device=device, dtype=getattr(torch, dtype))
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (336, 336, 3), dtype=np.uint8) for _ in range(n_items)]
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(n_items)]
    batches = [(images[i : i + batch], prompts[i : i + batch]) for i in range(0, n_items, batch)]
    norm, unembed = model.adapter.final_norm(), model.adapter.unembed()
    if kind == "hf":
        hf = LlavaForConditionalGeneration.from_pretrained(
            checkpoint, attn_implementation="eager", dtype=getattr(torch, dtype)
        )
        hf = hf.to(device).eval()
        unembed = hf.lm_head
        prepared = [model.prepare(b_images, b_prompts) for b_images, b_prompts in batches]
        residuals = torch.randn(
            model.n_blocks + 1, model.d_model, dtype=model.dtype, device=model.device
        )
        kwargs = {k: v for k, v in prepared[0].model_kwargs().items() if k != "position_ids"}
        hf.generate(**kwargs, max_new_tokens=2, do_sample=False)  # warm-up
    else:
        model.trace(batches[0][0], batches[0][1], max_new_tokens=2, progress=False)  # warm-up

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    sync()
    start, cpu = time.perf_counter(), time.process_time()
    tokens = 0
    if kind == "trace":
        for b_images, b_prompts in batches:
            traces = model.trace(b_images, b_prompts, max_new_tokens=steps, progress=False)
            tokens += sum(t.n_steps for t in traces)
    else:
        for inputs in prepared:
            # HF generate builds the positions of a left-padded batch from the attention mask.
            kwargs = {k: v for k, v in inputs.model_kwargs().items() if k != "position_ids"}
            out = hf.generate(**kwargs, max_new_tokens=steps, min_new_tokens=steps, do_sample=False)
            generated = out.shape[1] - inputs.input_ids.shape[1]
            tokens += generated * inputs.batch_size
            for _ in range(generated * inputs.batch_size):
                lp = log_probs(lens_logits(residuals, norm, unembed, "normed"))
                entropy(lp), adjacent_jsd(lp), lp.topk(5, dim=-1)
    sync()
    return {
        "name": name,
        "seconds": time.perf_counter() - start,
        "cpu_seconds": time.process_time() - cpu,
        "tokens": tokens,
        "items": n_items,
    }


def run_in_subprocess(name: str, checkpoint: str, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--only", name, "--checkpoint", checkpoint]
    for option in ("items", "steps", "device", "dtype"):
        command += [f"--{option}", str(getattr(args, option))]
    line = subprocess.run(command, capture_output=True, text=True, check=True, env=os.environ)
    return json.loads(line.stdout.strip().splitlines()[-1])


def summarize(results: dict[str, list[dict]], sizes: list[int], args: argparse.Namespace) -> dict:
    """Items per minute (median and best of rounds) and trace / (generate + lens) per size."""
    table = {}
    for size in sizes:
        row = {}
        for kind in ("trace", "hf"):
            runs = results[f"{kind}_{size}"]
            seconds = [r["seconds"] for r in runs]
            row[f"{kind} items/min (median)"] = 60 * args.items / statistics.median(seconds)
            row[f"{kind} items/min (best)"] = 60 * args.items / min(seconds)
            row[f"{kind} tokens/s (best)"] = max(r["tokens"] / r["seconds"] for r in runs)
            row[f"{kind} cpu/wall (median)"] = statistics.median(
                r["cpu_seconds"] / r["seconds"] for r in runs
            )
        ratios = [
            t["seconds"] / h["seconds"]
            for t, h in zip(results[f"trace_{size}"], results[f"hf_{size}"], strict=True)
        ]
        row["trace / (generate + lens), per round"] = ratios
        row["trace / (generate + lens), median"] = statistics.median(ratios)
        row["trace / (generate + lens), best"] = min(ratios)
        table[f"batch {size}"] = row
    return {
        "machine": f"{platform.machine()} {platform.processor() or ''} {args.device}".strip(),
        "cores": os.cpu_count(),
        "scale": args.scale,
        "items": args.items,
        "steps": args.steps,
        "rounds": args.rounds,
        "dtype": args.dtype,
        "by batch size": table,
    }


def main() -> None:
    parser = benchmark_parser(__doc__, steps=8, rounds=3)
    parser.add_argument("--items", type=int, default=8)
    parser.add_argument("--batch-sizes", default="1,4,8")
    args = parser.parse_args()
    if args.only:
        result = run_contender(
            args.only, args.checkpoint, args.items, args.steps, args.device, args.dtype
        )
        print(json.dumps(result))
        return
    sizes = [int(size) for size in args.batch_sizes.split(",")]
    names = [f"{kind}_{size}" for size in sizes for kind in ("hf", "trace")]
    results: dict[str, list[dict]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = str(build_checkpoint(args.scale, Path(folder), args.dtype))
        for _ in range(args.rounds):  # interleaved: every contender once per round
            for name in names:
                result = run_in_subprocess(name, checkpoint, args)
                results[name].append(result)
                print("run", result, flush=True)
    summary = summarize(results, sizes, args)
    print(json.dumps(summary, indent=1))
    if args.out:
        args.out.write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
