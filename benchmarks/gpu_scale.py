"""Items per minute and peak memory of batched `trace` against HF batched `generate` plus the
bare lens work, at LLaVA-1.5-7B's shapes on one GPU, with a projection for POPE and AMBER
(issue 25, item 4).

    python benchmarks/gpu_scale.py --out gpu_scale.json          # CUDA, 7B shapes, bf16
    python benchmarks/gpu_scale.py --tiny --out tiny.json        # CPU, tiny model, seconds

The model is LLaVA-1.5-7B's exact configuration (`trace_cost.SCALES["llava7b"]`: 7.06 B
parameters, 576 image tokens, LLaVA's 32,064-row vocabulary) with random weights, built directly
on the device in the benchmark's dtype (bf16: no 28 GB float32 copy on the CPU and no checkpoint
on disk). mmlens wraps it exactly as `mmlens.load` would (the llava-hf adapter around the HF
model, eager attention, then `HookedLVLM`); the HF baseline is a plain copy of the same weights
made before TransformerLens's bridge wraps the first one's modules in place, so both sit on the
device at once (2 x 14 GB for 7B).

Workloads (the two real ones): POPE, one-word answers to "Is there a <object> in the image?
Answer the question using a single word or phrase." (`--pope-tokens`, default 4 new tokens), and
AMBER's generative captions, "Describe this image." (`--amber-tokens`, default 128). A prompt is
~600 positions, 576 of them image tokens. Images are random 640 x 480 photos' worth of pixels
(COCO's usual size), so both contenders pay the same CPU preprocessing (LLaVA's pad-to-square
and the CLIP processor) inside the timed region.

Every generation has exactly the requested length in both contenders, so they do equal work:
HF `generate` gets `min_new_tokens = max_new_tokens`, `trace` `stop_at_eos=False`.

Per (workload, batch size) cell, each round runs, on the same items (interleaved, the order
alternating between rounds):
- `trace`: `model.trace(images, prompts)` on batches of b (what `mmlens run --batch-size b`
  calls), every layer's lens statistics at every step;
- `generate`: HF batched greedy `generate` on the same left-padded batches (prepared by the same
  `model.prepare`), on the plain copy;
- `lens`: the bare lens work of the same token-steps, batched over the rows of a step (final
  norm + unembedding + log-softmax and every statistic trace records, for all 33 layers,
  on stored residuals), timed on `--lens-steps` steps and scaled to all steps (every step has the
  same shapes); `generate + lens` is the baseline the target compares `trace` with;
- `recorder` (for reading the result): trace's own per-step recording code
  (`mmlens.recording.LayerRecorder.record`, rows in chunks, copying to host) on stored residuals,
  timed and scaled the same way;
- `bridge` (at `--bridge-batches` only): mmlens's greedy loop through TransformerLens's bridge
  without hooks, i.e. `trace` without recording.

Timing: `torch.cuda.synchronize()` around every timed region, one short warm-up of each contender
per batch size first. Memory: the CUDA allocator's peak above what was allocated before the
contender started (both models' weights), per contender (`reset_peak_memory_stats`).

Budget: the whole script, building included, keeps within `--budget-s` (default 420 s, so that
it ends within 8 minutes on an H100-class GPU): every cell gets one round first, in order, then
further rounds (the `--target-batch` cells first) while the budget allows; a cell whose estimated
round (scaled from the previous cell of its workload) would overrun is skipped with a note.

Projection: at each contender's best batch size (highest median items/min), the wall time for
POPE (9,000 questions: 3 subsets x 3,000) and AMBER (15,220 queries: 1,004 generative captions at
the caption rate and 14,216 yes-no questions at POPE's one-word rate; the figure if every query
were a caption is given too). Not counted: loading the model and reading images from disk.
"""

# ruff: noqa: E402 (the clock starts before the imports)
import time

STARTED = time.perf_counter()  # the budget counts the imports below too

import argparse
import copy
import gc
import json
import math
import platform
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoProcessor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from trace_cost import SCALES

from mmlens.adapters.llava import LlavaAdapter
from mmlens.generation import greedy_decode_batch
from mmlens.lens import (
    adjacent_divergences,
    candidate_probs,
    entropy,
    final_jsd,
    lens_logits,
    log_probs,
)
from mmlens.model import HookedLVLM
from mmlens.recording import LayerRecorder, resid_hook_names
from mmlens.zoo.tiny import build_llava, build_tokenizer

POPE_QUESTIONS = 9_000
AMBER_CAPTIONS = 1_004
AMBER_QUESTIONS = 14_216  # existence, attribute and relation yes-no questions; 15,220 in all
TARGET_RATIO = 0.9
TARGET_MINUTES = 30.0
OBJECTS = ("dog", "cat", "car", "tree", "cup", "ball", "sheep", "table")
POPE_PROMPT = "Is there a {} in the image? Answer the question using a single word or phrase."
AMBER_PROMPT = "Describe this image."

# Defaults for a GPU run and for `--tiny`; explicit options override either.
PROFILES: dict[str, dict[str, Any]] = {
    "full": {
        "scale": "llava7b",
        "device": "cuda",
        "dtype": "bfloat16",
        "batches": "1,8,32,64",
        "pope_tokens": 4,
        "amber_tokens": 128,
        "rounds": 3,
        "budget_s": 420.0,
        "bridge_batches": "32",
        "target_batch": 32,
        "lens_steps": 8,
        "image_hw": (480, 640),
        "pope_min_items": 8,
    },
    "tiny": {
        "scale": "smoke",
        "device": "cpu",
        "dtype": "float32",
        "batches": "1,2",
        "pope_tokens": 2,
        "amber_tokens": 6,
        "rounds": 2,
        "budget_s": 120.0,
        "bridge_batches": "2",
        "target_batch": 2,
        "lens_steps": 8,
        "image_hw": (28, 28),
        "pope_min_items": 2,
    },
}


class Clock:
    """Seconds since the script started, against the budget."""

    def __init__(self, budget_s: float, start: float) -> None:
        self.start, self.budget_s = start, budget_s

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def fits(self, seconds: float) -> bool:
        return self.elapsed() + seconds <= self.budget_s


def build_models(
    scale: str, device: str, dtype: torch.dtype, attn: str
) -> tuple[HookedLVLM, torch.nn.Module]:
    """Random-weight LLaVA of `scale` built on `device` in `dtype`, wrapped as `mmlens.load` wraps
    a checkpoint; and a plain HF copy of the same weights (made before the bridge wraps the
    first)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # parameters are created in dtype, on the device
    try:
        with torch.device(device):
            hf, processor = build_llava(SCALES[scale], build_tokenizer())
    finally:
        torch.set_default_dtype(previous)
    hf.set_attn_implementation("eager")  # as mmlens.load loads (the bridge needs eager masks)
    hf.eval()
    plain = copy.deepcopy(hf)
    plain.set_attn_implementation(attn)
    # The processor goes through a folder (kilobytes), as `from_directory` loads it: the bridge
    # reloads the tokenizer from its `name_or_path`, which an in-memory tokenizer lacks.
    with tempfile.TemporaryDirectory() as folder:
        processor.save_pretrained(folder)
        processor = AutoProcessor.from_pretrained(folder, local_files_only=True)
        model = HookedLVLM(LlavaAdapter(hf, processor), name=f"random {scale}")
    model.fast_attention = attn  # trace's fast path runs the same kernel as the plain copy
    return model, plain


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(device: str, run: Callable[[], Any]) -> tuple[float, float | None, Any]:
    """(seconds, peak GiB allocated above the level at the start or None off CUDA, result)."""
    cuda = device.startswith("cuda")
    sync(device)
    if cuda:
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    result = run()
    sync(device)
    seconds = time.perf_counter() - start
    peak = (torch.cuda.max_memory_allocated() - base) / 2**30 if cuda else None
    return seconds, peak, result


def make_items(workload: str, n: int, image_hw: tuple[int, int]) -> tuple[list, list[str]]:
    """n distinct random images (uint8 RGB) and the workload's prompts for them."""
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (*image_hw, 3), dtype=np.uint8) for _ in range(n)]
    if workload == "pope":
        prompts = [POPE_PROMPT.format(OBJECTS[i % len(OBJECTS)]) for i in range(n)]
    else:
        prompts = [AMBER_PROMPT] * n
    return images, prompts


def split(images: list, prompts: list[str], batch: int) -> list[tuple[list, list[str]]]:
    return [(images[i : i + batch], prompts[i : i + batch]) for i in range(0, len(images), batch)]


def run_trace(model: HookedLVLM, batches: list, steps: int) -> list[list[int]]:
    tokens = []
    for images, prompts in batches:
        traces = model.trace(
            images, prompts, max_new_tokens=steps, stop_at_eos=False, progress=False
        )
        tokens += [[int(t) for t in trace.token_ids] for trace in traces]
    return tokens


def run_generate(model: HookedLVLM, plain: torch.nn.Module, batches: list, steps: int) -> list:
    tokens = []
    for images, prompts in batches:
        inputs = model.prepare(images, prompts)  # the same processing and left padding as trace
        # HF generate builds a left-padded batch's positions from the attention mask.
        kwargs = {k: v for k, v in inputs.model_kwargs().items() if k != "position_ids"}
        out = plain.generate(
            **kwargs,
            max_new_tokens=steps,
            min_new_tokens=steps,
            do_sample=False,
            pad_token_id=model._pad_token_id(),
        )
        tokens += out[:, inputs.input_ids.shape[1] :].tolist()
    return tokens


def run_bridge(model: HookedLVLM, batches: list, steps: int) -> list[list[int]]:
    """trace's decoding loop through the bridge, without hooks or recording."""
    tokens = []
    for images, prompts in batches:
        inputs = model.prepare(images, prompts)
        tokens += greedy_decode_batch(
            model.adapter.hf_model, inputs, steps, frozenset(), model._pad_token_id()
        )
    return tokens


def run_lens(plain: torch.nn.Module, resid: torch.Tensor, steps: int) -> None:
    """The bare lens work of `steps` steps of one batch: resid is [rows, layers, d]."""
    norm, unembed = plain.model.language_model.norm, plain.lm_head
    rows, layers, d_model = resid.shape
    with torch.inference_mode():
        for _ in range(steps):
            logits = lens_logits(resid.reshape(rows * layers, d_model), norm, unembed, "normed")
            lp = log_probs(logits).view(rows, layers, -1)
            entropy(lp), adjacent_divergences(lp), lp.topk(5, dim=-1)
            final_jsd(lp), candidate_probs(lp)  # every statistic trace records


def run_recorder(model: HookedLVLM, resid: torch.Tensor, steps: int) -> None:
    """trace's own recording of `steps` steps (all rows), on stored residuals."""
    names = resid_hook_names(list(range(model.n_blocks)))
    recorder = LayerRecorder(
        hook_names=names,
        final_norm=model.adapter.final_norm(),
        unembed=model.adapter.unembed(),
        lens="normed",
        top_k=5,
        rival_ids=[],
        keep_features=False,
    )
    rows = resid.shape[0]
    logits = resid.new_zeros(rows, 1)  # record does not read the logits
    with torch.inference_mode():
        for step in range(steps):
            recorder.captured = {name: resid[:, layer] for layer, name in enumerate(names)}
            recorder.record(step, logits, [step % 7] * rows, [True] * rows)


def summarize_times(seconds: list[float], items: int, peaks: list[float | None]) -> dict:
    known = [p for p in peaks if p is not None]
    return {
        "seconds": seconds,
        "items_per_min_median": 60 * items / statistics.median(seconds),
        "items_per_min_best": 60 * items / min(seconds),
        "peak_gib_above_weights": max(known) if known else None,
    }


class Cell:
    """One (workload, batch size): its items and every round's measurements."""

    def __init__(self, workload: str, batch: int, steps: int, min_items: int, args: Any) -> None:
        self.workload, self.batch, self.steps = workload, batch, steps
        self.n_batches = max(1, math.ceil(min_items / batch))
        self.items = self.n_batches * batch
        images, prompts = make_items(workload, self.items, args.image_hw)
        self.batches = split(images, prompts, batch)
        self.bridge = batch in args.bridge_batch_list
        self.lens_steps = min(steps, args.lens_steps)
        self.runs: dict[str, list[tuple[float, float | None]]] = {}
        self.round_seconds: list[float] = []
        self.tokens: dict[str, list] = {}
        self.notes: list[str] = []

    def add(self, name: str, seconds: float, peak: float | None) -> None:
        self.runs.setdefault(name, []).append((seconds, peak))

    def run_round(self, model: HookedLVLM, plain: torch.nn.Module, args: Any) -> None:
        device, start = args.device, time.perf_counter()
        contenders: list[tuple[str, Callable[[], Any]]] = [
            ("trace", lambda: run_trace(model, self.batches, self.steps)),
            ("generate", lambda: run_generate(model, plain, self.batches, self.steps)),
        ]
        if len(self.round_seconds) % 2:
            contenders.reverse()
        if self.bridge:
            contenders.append(("bridge", lambda: run_bridge(model, self.batches, self.steps)))
        for name, run in contenders:
            gc.collect()
            seconds, peak, tokens = timed(device, run)
            self.add(name, seconds, peak)
            self.tokens.setdefault(name, tokens)
        # Lens work: timed on lens_steps steps of one batch, scaled to every step of every batch.
        scale = self.steps / self.lens_steps * self.n_batches
        resid = torch.randn(
            self.batch, model.n_blocks + 1, model.d_model, device=device, dtype=model.dtype
        )
        for name, run in (
            ("lens", lambda: run_lens(plain, resid, self.lens_steps)),
            ("recorder", lambda: run_recorder(model, resid, self.lens_steps)),
        ):
            seconds, peak, _ = timed(device, run)
            self.add(name, seconds * scale, peak)
        self.round_seconds.append(time.perf_counter() - start)
        print(
            f"  {self.workload} batch {self.batch} round {len(self.round_seconds)}: "
            + ", ".join(f"{name} {runs[-1][0]:.2f} s" for name, runs in self.runs.items())
            + f" (round {self.round_seconds[-1]:.1f} s)",
            flush=True,
        )

    def drop_partial(self, error: BaseException) -> None:
        """Forget the measurements of a round that failed (out of memory) part way."""
        for name in self.runs:
            del self.runs[name][len(self.round_seconds) :]
        self.notes.append(f"round {len(self.round_seconds) + 1} failed: {type(error).__name__}")
        print(f"  {self.workload} batch {self.batch}: {self.notes[-1]}", flush=True)
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def summary(self) -> dict:
        out: dict[str, Any] = {
            "items_per_round": self.items,
            "batches_per_round": self.n_batches,
            "new_tokens": self.steps,
            "rounds": len(self.round_seconds),
            "round_seconds": self.round_seconds,
            "lens_steps_timed": self.lens_steps,
            "notes": self.notes,
        }
        for name, runs in self.runs.items():
            out[name] = summarize_times([s for s, _ in runs], self.items, [p for _, p in runs])
        baseline = [
            g + lens
            for (g, _), (lens, _) in zip(self.runs["generate"], self.runs["lens"], strict=True)
        ]
        peaks = [p for _, p in self.runs["generate"] + self.runs["lens"]]
        out["generate_plus_lens"] = summarize_times(baseline, self.items, peaks)
        ratios = [b / t for b, (t, _) in zip(baseline, self.runs["trace"], strict=True)]
        out["ratio_trace_over_generate_plus_lens"] = {
            "what": "items/min of trace / items/min of (generate + lens), paired per round",
            "per_round": ratios,
            "median": statistics.median(ratios),
            "best": max(ratios),
        }
        trace_tokens, hf_tokens = self.tokens["trace"], self.tokens["generate"]
        out["generated_tokens_per_row"] = {
            name: sorted({len(row) for row in rows}) for name, rows in self.tokens.items()
        }
        out["rows_with_identical_tokens_trace_vs_generate"] = float(
            np.mean([a == b for a, b in zip(trace_tokens, hf_tokens, strict=True)])
        )
        return out


def projection(workloads: dict[str, dict]) -> dict:
    """Wall minutes for POPE and AMBER at each contender's best measured batch size."""
    out: dict[str, Any] = {}
    for contender in ("trace", "generate_plus_lens"):
        best: dict[str, tuple[float, int]] = {}
        for workload, result in workloads.items():
            rates = [
                (cell[contender]["items_per_min_median"], int(batch))
                for batch, cell in result["batches"].items()
            ]
            if rates:
                best[workload] = max(rates)
        if set(best) != {"pope", "amber"}:
            out[contender] = {"note": "not every workload was measured"}
            continue
        (pope_rate, pope_batch), (amber_rate, amber_batch) = best["pope"], best["amber"]
        pope = POPE_QUESTIONS / pope_rate
        amber = AMBER_CAPTIONS / amber_rate + AMBER_QUESTIONS / pope_rate
        out[contender] = {
            "pope_batch": pope_batch,
            "pope_items_per_min": pope_rate,
            "amber_caption_batch": amber_batch,
            "amber_caption_items_per_min": amber_rate,
            "pope_minutes": pope,
            "amber_minutes": amber,
            "pope_plus_amber_minutes": pope + amber,
            "amber_minutes_if_all_15220_were_captions": (AMBER_CAPTIONS + AMBER_QUESTIONS)
            / amber_rate,
        }
    return out


def markdown(summary: dict) -> str:
    lines = []
    for workload, result in summary["workloads"].items():
        lines += [
            f"\n{workload}: {result['new_tokens']} new tokens, "
            f"{result['prompt_positions']} prompt positions\n",
            "| batch | contender | items/min median | items/min best | peak GiB above weights |",
            "|---|---|---|---|---|",
        ]
        for batch, cell in result["batches"].items():
            for name, label in (
                ("trace", "`trace`"),
                ("generate_plus_lens", "HF `generate` + lens"),
                ("generate", "(HF `generate` alone)"),
                ("lens", "(bare lens work, batched)"),
                ("recorder", "(trace's recorder alone)"),
                ("bridge", "(bridge greedy loop, no hooks)"),
            ):
                if name in cell:
                    row = cell[name]
                    peak = row["peak_gib_above_weights"]
                    lines.append(
                        f"| {batch} | {label} | {row['items_per_min_median']:,.1f} | "
                        f"{row['items_per_min_best']:,.1f} | "
                        f"{'-' if peak is None else f'{peak:.2f}'} |"
                    )
        lines += [
            "",
            "| batch | trace / (generate + lens), items/min: median | best | per round |",
            "|---|---|---|---|",
        ]
        for batch, cell in result["batches"].items():
            ratio = cell["ratio_trace_over_generate_plus_lens"]
            rounds = ", ".join(f"{r:.2f}" for r in ratio["per_round"])
            lines.append(f"| {batch} | {ratio['median']:.2f} | {ratio['best']:.2f} | {rounds} |")
    lines.append("\nProjection (median items/min at each contender's best batch):\n")
    lines += ["| contender | POPE min | AMBER min | POPE + AMBER min |", "|---|---|---|---|"]
    for contender, row in summary["projection"].items():
        if "pope_minutes" in row:
            lines.append(
                f"| {contender} (POPE batch {row['pope_batch']}, captions batch "
                f"{row['amber_caption_batch']}) | {row['pope_minutes']:.1f} | "
                f"{row['amber_minutes']:.1f} | {row['pope_plus_amber_minutes']:.1f} |"
            )
    return "\n".join(lines)


def environment(args: Any) -> dict:
    from importlib.metadata import version

    cuda = args.device.startswith("cuda")
    return {
        "device": torch.cuda.get_device_name() if cuda else f"{platform.machine()} CPU",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": version("transformers"),
        "transformer_lens": version("transformer-lens"),
        "mmlens": version("mmlens"),
        "python": platform.python_version(),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiny", action="store_true", help="tiny model on the CPU (tests)")
    parser.add_argument("--scale", choices=list(SCALES))
    parser.add_argument("--device")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"])
    parser.add_argument(
        "--attn", default="sdpa", help="attention kernel of HF generate and of trace's fast path"
    )
    parser.add_argument("--batches", help="batch sizes, comma-separated")
    parser.add_argument("--pope-tokens", type=int)
    parser.add_argument("--amber-tokens", type=int)
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--budget-s", type=float, help="whole-script time budget in seconds")
    parser.add_argument("--bridge-batches", help="batch sizes that also time the bare bridge loop")
    parser.add_argument("--target-batch", type=int, help="batch size whose rounds come first")
    parser.add_argument("--lens-steps", type=int, help="steps on which lens work is timed")
    parser.add_argument("--out", type=Path, help="also write the summary to this JSON file")
    args = parser.parse_args(argv)
    for key, value in PROFILES["tiny" if args.tiny else "full"].items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    args.batch_list = [int(b) for b in args.batches.split(",") if b]
    args.bridge_batch_list = [int(b) for b in args.bridge_batches.split(",") if b]
    return args


@torch.no_grad()
def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    clock = Clock(args.budget_s, STARTED if __name__ == "__main__" else time.perf_counter())
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("No CUDA device here: run on a GPU machine, or pass --tiny (or --device cpu).")
    env = environment(args)
    print(json.dumps(env), flush=True)

    dtype = getattr(torch, args.dtype)
    seconds, _, (model, plain) = timed(
        args.device, lambda: build_models(args.scale, args.device, dtype, args.attn)
    )
    n_params = sum(p.numel() for p in plain.parameters())
    weights_gib = sum(p.numel() * p.element_size() for p in plain.parameters()) / 2**30
    print(
        f"built 2 x {n_params:,} parameters ({args.scale}, {args.dtype}, {args.attn} attention) "
        f"on {args.device} in {seconds:.1f} s; {weights_gib:.2f} GiB each",
        flush=True,
    )
    build_seconds = seconds

    steps = {"pope": args.pope_tokens, "amber": args.amber_tokens}
    min_items = {"pope": args.pope_min_items, "amber": 1}
    cells = [
        Cell(workload, batch, steps[workload], min_items[workload], args)
        for workload in ("pope", "amber")
        for batch in args.batch_list
    ]
    skipped: list[str] = []
    warmed: set[int] = set()

    def estimate(cell: Cell) -> float | None:
        """A round's seconds, scaled from the last measured cell of the same workload."""
        done = [c for c in cells if c.workload == cell.workload and c.round_seconds]
        if not done:
            return None
        last = done[-1]
        guess = statistics.median(last.round_seconds) * cell.items / last.items
        return guess * (1.0 if cell.batch in warmed else 1.25)

    # Pass 1: one round of every cell, in order.
    for cell in cells:
        guess = estimate(cell)
        if not clock.fits(guess or 0.0):
            note = f"{cell.workload} batch {cell.batch}: skipped, "
            note += f"~{guess:.0f} s would pass the budget " if guess is not None else ""
            note += f"({clock.elapsed():.0f} of {args.budget_s:.0f} s used)"
            skipped.append(note)
            print(note, flush=True)
            continue
        try:
            if cell.batch not in warmed:  # kernels, allocator blocks, lazy state for this shape
                warm = cell.batches[:1]
                run_trace(model, warm, 2), run_generate(model, plain, warm, 2)
                if cell.bridge:
                    run_bridge(model, warm, 2)
                warmed.add(cell.batch)
            cell.run_round(model, plain, args)
        except torch.OutOfMemoryError as error:
            cell.drop_partial(error)
            skipped.append(f"{cell.workload} batch {cell.batch}: out of memory")

    # Further rounds, the target batch size first, while the budget allows.
    measured = [c for c in cells if c.round_seconds]
    order = sorted(measured, key=lambda c: c.batch != args.target_batch)
    for round_index in range(1, args.rounds):
        for cell in order:
            if len(cell.round_seconds) != round_index:
                continue
            guess = statistics.median(cell.round_seconds)
            if not clock.fits(guess):
                cell.notes.append(f"round {round_index + 1} skipped: ~{guess:.0f} s over budget")
                continue
            try:
                cell.run_round(model, plain, args)
            except torch.OutOfMemoryError as error:
                cell.drop_partial(error)

    workloads: dict[str, dict] = {}
    for workload in ("pope", "amber"):
        images, prompts = make_items(workload, 1, args.image_hw)
        positions = int(model.prepare(images, prompts).input_ids.shape[1])
        workloads[workload] = {
            "new_tokens": steps[workload],
            "prompt_positions": positions,
            "batches": {
                str(c.batch): c.summary()
                for c in cells
                if c.workload == workload and c.round_seconds
            },
        }
    summary: dict[str, Any] = {
        "environment": env,
        "scale": args.scale,
        "parameters": n_params,
        "dtype": args.dtype,
        "attention": args.attn,
        "weights_gib_each": weights_gib,
        "models_on_device": 2,
        "build_seconds": build_seconds,
        "budget_s": args.budget_s,
        "rounds_asked": args.rounds,
        "skipped": skipped,
        "workloads": workloads,
        "projection": projection(workloads),
        "targets": {
            "ratio_at_batch": args.target_batch,
            "ratio_at_least": TARGET_RATIO,
            "pope_plus_amber_minutes_at_most": TARGET_MINUTES,
        },
    }
    summary["elapsed_s"] = clock.elapsed()
    target = workloads["pope"]["batches"].get(str(args.target_batch))
    if target is not None:
        summary["targets"]["pope_ratio_median"] = target["ratio_trace_over_generate_plus_lens"][
            "median"
        ]
    target = workloads["amber"]["batches"].get(str(args.target_batch))
    if target is not None:
        summary["targets"]["amber_ratio_median"] = target["ratio_trace_over_generate_plus_lens"][
            "median"
        ]
    trace_projection = summary["projection"].get("trace", {})
    if "pope_plus_amber_minutes" in trace_projection:
        summary["targets"]["trace_pope_plus_amber_minutes"] = trace_projection[
            "pope_plus_amber_minutes"
        ]
    print(markdown(summary))
    print(json.dumps(summary["targets"], indent=1))
    print(f"elapsed {summary['elapsed_s']:.1f} s (budget {args.budget_s:.0f} s)")
    if args.out:
        args.out.write_text(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    main()
