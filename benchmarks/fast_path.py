"""The fast path against the bridge and plain Hugging Face, on a model where overhead shows.

    python benchmarks/fast_path.py [--model mmlens/shapes] [--tokens 20] [--rounds 9]
                                   [--threads 1] [--out fast_path.json]

A tiny model on CPU is what a 7B model's decode step looks like on a GPU at small batch: the
framework's own Python shows. In one process, on one image and prompt, interleaved rounds (the
order rotates each round) of: HF greedy `generate` on a plain `transformers` model loaded from
the same checkpoint (exactly `--tokens` new tokens); `model.generate` (the same count, end of
sequence ignored) and `model.trace` (up to `--tokens`; the demo caption is longer) on the fast
path (SDPA attention, its default) and on the bridge (`model.use_fast_path = False`; eager,
as the bridge computes attention itself). HF `generate` runs with eager attention (the bridge's
reference) and with SDPA. One forward pass too: HF's with `output_hidden_states` (SDPA) against
`model.run_with_cache` of every block's `hook_resid_post`, on the fast path and on the bridge.
Reported per contender: wall and process-CPU seconds, median and best over the rounds, and
ratios to HF `generate` (the forward passes: to HF's forward).
"""

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable

import torch


def _timed(call: Callable[[], object]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    call()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mmlens/shapes", help="a model mmlens.load takes")
    parser.add_argument("--tokens", type=int, default=20, help="new tokens per call")
    parser.add_argument("--rounds", type=int, default=9, help="interleaved rounds")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from transformers import AutoModelForImageTextToText

    import mmlens
    from mmlens.cli.single import DEMO_SCENE
    from mmlens.zoo import shipped_models
    from mmlens.zoo.shapes.scenes import draw_scene

    model = mmlens.load(args.model)
    folder = shipped_models().get(args.model, args.model)
    hf = AutoModelForImageTextToText.from_pretrained(folder, attn_implementation="eager").eval()
    inputs = model.prepare(draw_scene(DEMO_SCENE), "please describe this image in detail .")
    n = args.tokens

    def hf_generate(kernel: str) -> Callable[[], object]:
        def call() -> object:
            hf.set_attn_implementation(kernel)
            with torch.no_grad():
                return hf.generate(
                    **inputs.model_kwargs(), do_sample=False, max_new_tokens=n, min_new_tokens=n
                )

        return call

    def generate(fast: bool) -> Callable[[], object]:
        def call() -> object:
            model.use_fast_path = fast
            return model.generate(inputs=inputs, max_new_tokens=n, stop_at_eos=False, verbose=False)

        return call

    def trace(fast: bool) -> Callable[[], object]:
        def call() -> object:
            model.use_fast_path = fast
            return model.trace(DEMO_IMAGE, PROMPT, max_new_tokens=n, progress=False)

        return call

    def hf_forward() -> object:
        hf.set_attn_implementation("sdpa")
        with torch.no_grad():
            return hf(**inputs.model_kwargs(), output_hidden_states=True, use_cache=False)

    def residual_cache(fast: bool) -> Callable[[], object]:
        def call() -> object:
            model.use_fast_path = fast
            with torch.no_grad():
                return model.run_with_cache(inputs=inputs, names_filter=RESIDUAL)

        return call

    RESIDUAL = [f"blocks.{block}.hook_resid_post" for block in range(model.n_blocks)]
    DEMO_IMAGE, PROMPT = draw_scene(DEMO_SCENE), "please describe this image in detail ."
    contenders = {
        "HF generate": hf_generate("eager"),
        "HF generate (sdpa)": hf_generate("sdpa"),
        "generate (fast path)": generate(True),
        "generate (bridge)": generate(False),
        "trace (fast path)": trace(True),
        "trace (bridge)": trace(False),
        "HF forward (hidden states)": hf_forward,
        "run_with_cache residual (fast path)": residual_cache(True),
        "run_with_cache residual (bridge)": residual_cache(False),
    }
    same = [len(model.trace(DEMO_IMAGE, PROMPT, max_new_tokens=n, progress=False).token_ids)]
    for call in contenders.values():  # warm-up
        call()
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in contenders}
    names = list(contenders)
    for round_ in range(args.rounds):
        order = names[round_ % len(names) :] + names[: round_ % len(names)]
        for name in order:
            times[name].append(_timed(contenders[name]))
    model.use_fast_path = True
    rows = {}
    for name, pairs in times.items():
        walls, cpus = [w for w, _ in pairs], [c for _, c in pairs]
        rows[name] = {
            "wall_median": statistics.median(walls),
            "wall_best": min(walls),
            "cpu_median": statistics.median(cpus),
            "cpu_best": min(cpus),
        }
    forward = ("HF forward (hidden states)", "run_with_cache residual (fast path)",
               "run_with_cache residual (bridge)")  # fmt: skip
    print(f"{args.model}, {n} new tokens (trace: {same[0]}), {args.rounds} rounds, "
          f"{args.threads} thread(s), {platform.processor() or platform.machine()}")  # fmt: skip
    print("| contender | wall median | wall best | CPU median | x HF (median) | x HF (best) |")
    print("|---|---|---|---|---|---|")
    for name, row in rows.items():
        base = rows["HF forward (hidden states)" if name in forward else "HF generate"]
        row["ratio_median"] = row["wall_median"] / base["wall_median"]
        row["ratio_best"] = row["wall_best"] / base["wall_best"]
        print(
            f"| {name} | {row['wall_median']:.4f} | {row['wall_best']:.4f} | "
            f"{row['cpu_median']:.4f} | {row['ratio_median']:.2f} | {row['ratio_best']:.2f} |"
        )
    if args.out:
        info = {
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "machine": platform.machine(),
            "threads": args.threads,
            "tokens": n,
            "trace_tokens": same[0],
            "rounds": args.rounds,
        }
        with open(args.out, "w", encoding="utf-8") as handle:
            json.dump({"info": info, "contenders": rows}, handle, indent=1)


if __name__ == "__main__":
    main()
