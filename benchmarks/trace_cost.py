"""Tracing a generation vs generating it, and vs the paper's pipeline (issue 6).

    python benchmarks/trace_cost.py [--scale small|llava7b|smoke] [--steps 64] [--rounds 2]

Every contender runs in its own fresh subprocess (so peak memory is its own), in interleaved
rounds, on the same random-weight LLaVA and the same image and prompt; ratios come from one run.
Each subprocess first generates two tokens (loading kernels and lazy state), then measures.

Contenders: (1) HF greedy `generate` (a plain `transformers` model, without the bridge), and
(1b) `model.generate` (mmlens's greedy loop; on its fast path since 2026-12, the plain modules);
(2) the bare lens work alone (final norm + unembedding + softmax, and the statistics trace
records: entropy, top-k, adjacent JSD and the paper's divergence, JSD to the last layer, DeCo's
candidate probability; every layer of every step, on stored last-position residuals);
(3) `model.trace` and (3f) with `keep_features=True`; (4) the
paper's pipeline as the authors' `heatmap.py` runs it (plain HF generate keeping every hidden
state, then `lm_head` on all of them: for step 0 on every prompt position of all 33 layers, of
which the last position is used); (5) a naive TransformerLens user (`run_with_cache` on the
whole sequence at every step, no KV cache; run for `--naive-steps` steps and reported per step).

Memory is measured in separate runs after the timed rounds. On CUDA it is the allocator's peak
above the loaded model. On CPU it is the peak anonymous resident memory (`RssAnon`: tensors, not
the shared-library pages that first calls page in) above the loaded model, sampled every 1 ms,
with glibc's mmap threshold fixed at 64 KiB (`MALLOC_MMAP_THRESHOLD_`) so that freed tensors go
back to the system instead of staying in malloc's heap; that setting slows allocation, which is
why memory runs are not timed.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from mmlens.zoo.tiny import TinyLlavaSpec, build_llava, build_tokenizer

# LLaVA-1.5's vocabulary and image input: 336 px in 14 px patches = 576 image tokens
LLAVA_INPUTS = {"vocab_size": 32064, "image_size": 336, "patch_size": 14, "init_std": 0.02}

SCALES = {
    # LLaVA-7B's depth (32 blocks, 33 recorded layers) at width 1024: ~470 M parameters,
    # minutes on 2 CPU cores
    "small": TinyLlavaSpec(
        n_blocks=32,
        d_model=1024,
        n_heads=16,
        n_kv_heads=16,
        d_mlp=2816,
        d_vision=256,
        vision_blocks=2,
        vision_heads=8,
        **LLAVA_INPUTS,
    ),
    # LLaVA-1.5-7B shapes, 7.06 B parameters (random weights; use bf16) for a GPU machine
    "llava7b": TinyLlavaSpec(
        n_blocks=32,
        d_model=4096,
        n_heads=32,
        n_kv_heads=32,
        d_mlp=11008,
        d_vision=1024,
        d_vision_mlp=4096,
        vision_blocks=24,
        vision_heads=16,
        **LLAVA_INPUTS,
    ),
    # seconds: checks that every contender still runs (tests/benchmarks)
    "smoke": TinyLlavaSpec(),
}
CONTENDERS = (
    "hf_generate",
    "lens_only",
    "mmlens_generate",
    "trace",
    "trace_features",
    "paper_pipeline",
    "naive_tl",
)


def build_checkpoint(scale: str, folder: Path, dtype: str = "float32") -> Path:
    """A random LLaVA with LLaVA-1.5's vocabulary size and 576 image tokens, saved in `dtype`."""
    import torch

    model, processor = build_llava(SCALES[scale], build_tokenizer())
    model.to(getattr(torch, dtype)).save_pretrained(folder, safe_serialization=True)
    processor.save_pretrained(folder)
    return folder


class MemorySampler:
    """Peak anonymous resident memory (CPU) while running, above the level when it started."""

    def __init__(self, interval: float = 0.001) -> None:
        self.interval, self._stop = interval, threading.Event()
        self.baseline = self.peak = self._anonymous()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _anonymous() -> int:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("/proc/self/status has no RssAnon line (Linux only)")

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._anonymous())
            time.sleep(self.interval)

    def __enter__(self) -> "MemorySampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._anonymous())

    @property
    def extra_mib(self) -> float:
        return (self.peak - self.baseline) / 2**20


def run_contender(
    name: str,
    checkpoint: str,
    steps: int,
    naive_steps: int,
    device: str,
    dtype: str,
    attn: str = "eager",
) -> dict:
    """Run one contender in this process; returns seconds and the measured steps."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from transformers import LlavaForConditionalGeneration

    import mmlens
    from mmlens.lens import (
        adjacent_divergences,
        candidate_probs,
        entropy,
        final_jsd,
        lens_logits,
        log_probs,
    )

    torch.set_grad_enabled(False)
    model = mmlens.load(checkpoint, device=device, dtype=getattr(torch, dtype))
    model.fast_attention = attn  # trace's and generate's fast path (the bridge is always eager)
    hf = model.adapter.hf_model
    image = np.random.default_rng(0).integers(0, 255, (336, 336, 3), dtype=np.uint8)
    inputs = model.prepare(image, "Please describe this image in detail.")
    kwargs = inputs.model_kwargs()
    norm, unembed = model.adapter.final_norm(), model.adapter.unembed()
    if name in ("hf_generate", "paper_pipeline"):
        # Plain transformers: mmlens's model runs through TransformerLens's bridge wrappers.
        hf = LlavaForConditionalGeneration.from_pretrained(
            checkpoint, attn_implementation=attn, dtype=getattr(torch, dtype)
        )
        hf = hf.to(device).eval()
        unembed = hf.lm_head

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    residuals = torch.randn(
        steps, model.n_blocks + 1, model.d_model, dtype=model.dtype, device=model.device
    )
    hf.generate(**kwargs, max_new_tokens=2, do_sample=False)  # warm-up, not measured
    sync()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        base_cuda = torch.cuda.memory_allocated()
    sampler = MemorySampler().__enter__()
    start = time.perf_counter()
    measured = steps
    if name == "hf_generate":
        hf.generate(**kwargs, max_new_tokens=steps, min_new_tokens=steps, do_sample=False)
    elif name == "mmlens_generate":  # the same greedy loop as trace, through the bridge
        measured = len(model.generate(inputs=inputs, max_new_tokens=steps).token_ids)
    elif name == "lens_only":  # the statistics trace records, on stored residuals
        for step in range(steps):
            lp = log_probs(lens_logits(residuals[step], norm, unembed, "normed"))
            entropy(lp), adjacent_divergences(lp), lp.topk(5, dim=-1)
            final_jsd(lp), candidate_probs(lp)
    elif name in ("trace", "trace_features"):
        measured = model.trace(
            image,
            "Please describe this image in detail.",
            max_new_tokens=steps,
            keep_features=name == "trace_features",
            progress=False,
        ).n_steps  # an end-of-sequence token would stop it early: report what ran
    elif name == "paper_pipeline":
        out = hf.generate(
            **kwargs,
            max_new_tokens=steps,
            min_new_tokens=steps,
            do_sample=False,
            output_hidden_states=True,
            return_dict_in_generate=True,
        )
        # As the authors' heatmap script does: `lm_head` (no final norm) on every kept hidden
        # state, at step 0 on all prompt positions of all layers before the last one is taken,
        # then their float64 divergence of adjacent layers (`kl_div` of each layer against the
        # mixture, averaged over the vocabulary).
        for per_step in out.hidden_states:
            logits = torch.cat([unembed(h) for h in per_step], dim=0)[:, -1].double()
            for layer in range(len(logits) - 1):
                pair = logits[layer : layer + 2]
                mixture = pair.softmax(-1).mean(0)
                kl = F.kl_div(pair.log_softmax(-1), mixture.expand_as(pair), reduction="none")
                float(0.5 * kl.mean(-1).sum())
    elif name == "naive_tl":
        measured = naive_steps
        ids = inputs.input_ids
        for _ in range(naive_steps):
            logits, cache = model.run_with_cache(
                inputs=mmlens.ModelInputs(
                    ids,
                    torch.ones_like(ids),
                    inputs.pixel_values,
                    ids == model.adapter.image_token_id,
                    inputs.text,
                )
            )
            ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], dim=-1)
    sync()
    seconds = time.perf_counter() - start
    sampler.__exit__()
    if device.startswith("cuda"):
        extra = (torch.cuda.max_memory_allocated() - base_cuda) / 2**20
    else:
        extra = sampler.extra_mib
    return {"name": name, "seconds": seconds, "steps": measured, "peak_extra_mib": extra}


def run_in_subprocess(name: str, checkpoint: str, args: argparse.Namespace, memory: bool) -> dict:
    """One contender in a fresh interpreter; memory runs fix glibc's mmap threshold (CPU)."""
    command = [sys.executable, __file__, "--only", name, "--checkpoint", checkpoint]
    for option in ("steps", "naive_steps", "device", "dtype", "attn"):
        command += [f"--{option.replace('_', '-')}", str(getattr(args, option))]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"} if memory else None
    line = subprocess.run(command, capture_output=True, text=True, check=True, env=env).stdout
    return json.loads(line.strip().splitlines()[-1])


def benchmark_parser(doc: str | None, steps: int, rounds: int) -> argparse.ArgumentParser:
    """The options every benchmark script shares (and the hidden ones of its subprocesses)."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", choices=list(SCALES), default="small")
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument(
        "--attn", default="eager", help="attention kernel of HF and of mmlens's fast path"
    )
    parser.add_argument("--out", type=Path, help="also write the summary to this JSON file")
    parser.add_argument("--only", help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", help=argparse.SUPPRESS)
    return parser


def main() -> None:
    parser = benchmark_parser(__doc__, steps=64, rounds=2)
    parser.add_argument("--naive-steps", type=int, default=4)
    args = parser.parse_args()
    if args.only:
        print(
            json.dumps(
                run_contender(
                    args.only,
                    args.checkpoint,
                    args.steps,
                    args.naive_steps,
                    args.device,
                    args.dtype,
                    args.attn,
                )
            )
        )
        return
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = str(build_checkpoint(args.scale, Path(folder), args.dtype))
        times: dict[str, list[float]] = {name: [] for name in CONTENDERS}
        for _ in range(args.rounds):
            for name in CONTENDERS:
                result = run_in_subprocess(name, checkpoint, args, memory=False)
                times[name].append(result["seconds"])
                print("time", result, flush=True)
        peak = {}
        for name in CONTENDERS:
            result = run_in_subprocess(name, checkpoint, args, memory=True)
            peak[name] = result["peak_extra_mib"]
            print("memory", result, flush=True)
    best = {name: min(seconds) for name, seconds in times.items()}
    ideal = best["hf_generate"] + best["lens_only"]
    per_step_naive = best["naive_tl"] / args.naive_steps
    summary = {
        "machine": f"{platform.machine()} {platform.processor() or ''} {args.device}".strip(),
        "scale": args.scale,
        "steps": args.steps,
        "seconds (best of rounds)": best,
        "peak MiB above the loaded model": peak,
        "trace / (generate + lens)": best["trace"] / ideal,
        "trace_features / (generate + lens)": best["trace_features"] / ideal,
        "paper peak / trace peak": peak["paper_pipeline"] / peak["trace"],
        "trace peak / generate peak": peak["trace"] / peak["hf_generate"],
        "mmlens generate / HF generate": best["mmlens_generate"] / best["hf_generate"],
        "trace / (mmlens generate + lens)": best["trace"]
        / (best["mmlens_generate"] + best["lens_only"]),
        "naive TL per step / trace per step": per_step_naive / (best["trace"] / args.steps),
    }
    print(json.dumps(summary, indent=1))
    if args.out:
        args.out.write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
