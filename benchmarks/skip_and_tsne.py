"""Two more issue-6 measurements, each side by side in one run.

    python benchmarks/skip_and_tsne.py [--scale small|llava7b] [--steps 64] [--rounds 2]
        [--tsne-dim 4096] [--device cuda --dtype bfloat16]

1. Generation time with k of L blocks skipped vs the full model, against the ideal (L-k)/L
   (the vision tower, embeddings and unembedding are not skipped, so the ideal is a floor),
   and a least-squares fit time(k) = fixed + (L-k) x per-block that says how much is fixed.
2. t-SNE of a [256 tokens x 33 layers x d] feature set (d = `--tsne-dim`, LLaVA-7B's 4096):
   mmlens's default (PCA to 50 + t-SNE) vs the paper's settings (MaxAbsScaler + t-SNE
   perplexity 40, lr 200, 2000 iterations): time and trustworthiness. Features are synthetic
   trajectories (tokens diverging from a shared start, layer by layer), since no real 7B
   features can be made here.
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import mmlens
from mmlens.analyses.trajectories import embed_features
from mmlens.generation import greedy_decode
from mmlens.skipping import skipped_blocks


def skip_timings(
    steps: int, rounds: int, scale: str, device: str = "cpu", dtype: str = "float32"
) -> dict:
    """Generation time with 0, L/4, L/2 and 3L/4 blocks skipped, and a fixed + per-block fit."""
    from trace_cost import build_checkpoint  # same random LLaVA as the main benchmark

    torch.set_grad_enabled(False)
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = build_checkpoint(scale, Path(folder), dtype)
        model = mmlens.load(checkpoint, device=device, dtype=getattr(torch, dtype))
        image = np.random.default_rng(0).integers(0, 255, (336, 336, 3), dtype=np.uint8)
        inputs = model.prepare(image, "Please describe this image in detail.")
        n = model.n_blocks

        def sync() -> None:
            if device.startswith("cuda"):
                torch.cuda.synchronize()

        sets = {k: list(range(n // 8, n // 8 + k)) for k in (0, n // 4, n // 2, 3 * n // 4)}
        greedy_decode(model.adapter.hf_model, inputs, 2, eos_token_ids=())  # warm-up
        best: dict[int, float] = {}
        for _ in range(rounds):
            for k, blocks in sets.items():
                sync()
                start = time.perf_counter()
                with skipped_blocks(model.adapter, blocks):  # what generate(skip_layers=) does,
                    greedy_decode(model.adapter.hf_model, inputs, steps, eos_token_ids=())
                sync()
                seconds = time.perf_counter() - start  # ... minus stopping at end-of-sequence
                best[k] = min(best.get(k, seconds), seconds)
    # time(k) = fixed + (n - k) * per_block, least squares: what skipping cannot remove
    per_block, fixed = np.polyfit([n - k for k in sets], [best[k] for k in sets], 1)
    return {
        "blocks": n,
        "fixed seconds (never skipped: vision tower, embedding, unembedding, loop)": fixed,
        "fixed share of the full time": fixed / best[0],
        "seconds per block": per_block,
        **{
            f"skip {k} of {n}": {
                "blocks skipped": sets[k],
                "seconds": best[k],
                "time vs full": best[k] / best[0],
                "ideal (L-k)/L": (n - k) / n,
                "fit": (fixed + (n - k) * per_block) / best[0],
            }
            for k in sets
        },
    }


def tsne_timings(tokens: int = 256, layers: int = 33, dim: int = 4096) -> dict:
    """t-SNE default vs paper settings on [tokens x layers x dim] synthetic trajectories."""
    rng = np.random.default_rng(0)
    directions = rng.normal(size=(tokens, dim))
    features = (
        np.arange(layers)[None, :, None] * directions[:, None, :] / layers
        + rng.normal(0, 0.05, (tokens, layers, dim))
    ).astype(np.float32)
    results = {}
    for method in ("tsne", "paper"):
        start = time.perf_counter()
        result = embed_features(features, method=method, layers=list(range(layers)))
        results[method] = {
            "seconds": time.perf_counter() - start,
            "trustworthiness": result.trustworthiness,
        }
    results["paper / default time"] = results["paper"]["seconds"] / results["tsne"]["seconds"]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--scale", default="small", help="a scale of trace_cost.py")
    parser.add_argument("--tsne-dim", type=int, default=4096, help="feature width (7B: 4096)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()
    skipping = skip_timings(args.steps, args.rounds, args.scale, args.device, args.dtype)
    tsne = tsne_timings(dim=args.tsne_dim)
    print(json.dumps({"skipping": skipping, "t-SNE": tsne}, indent=1))


if __name__ == "__main__":
    main()
