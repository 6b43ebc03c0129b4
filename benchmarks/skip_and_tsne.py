"""Two more issue-6 measurements, each side by side in one run.

    python benchmarks/skip_and_tsne.py [--steps 64] [--rounds 2]

1. Generation time with k of L blocks skipped vs the full model, against the ideal (L-k)/L
   (the vision tower, embeddings and unembedding are not skipped, so the ideal is a floor).
2. t-SNE of a [256 tokens x 33 layers x d] feature set: mmlens's default (PCA to 50 + t-SNE)
   vs the paper's settings (MaxAbsScaler + t-SNE perplexity 40, lr 200, 2000 iterations):
   time and trustworthiness. Features are synthetic trajectories (tokens diverging from a shared
   start, layer by layer), since no real 7B features can be made here.
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


def skip_timings(steps: int, rounds: int) -> dict:
    from trace_cost import build_checkpoint  # same random LLaVA as the main benchmark

    torch.set_grad_enabled(False)
    with tempfile.TemporaryDirectory() as folder:
        model = mmlens.load(build_checkpoint("small", Path(folder)))
        image = np.random.default_rng(0).integers(0, 255, (336, 336, 3), dtype=np.uint8)
        inputs = model.prepare(image, "Please describe this image in detail.")
        n = model.n_blocks
        sets = {0: [], 2: [n - 3, n - 2], 4: list(range(2, 6))}
        best: dict[int, float] = {}
        for _ in range(rounds):
            for k, blocks in sets.items():
                start = time.perf_counter()
                with skipped_blocks(model.adapter, blocks):  # what generate(skip_layers=) does,
                    greedy_decode(model.adapter.hf_model, inputs, steps, eos_token_ids=())
                seconds = time.perf_counter() - start  # ... minus stopping at end-of-sequence
                best[k] = min(best.get(k, seconds), seconds)
    return {
        f"skip {k} of {n}": {
            "seconds": best[k],
            "time vs full": best[k] / best[0],
            "ideal (L-k)/L": (n - k) / n,
        }
        for k in sets
    }


def tsne_timings(tokens: int = 256, layers: int = 33, dim: int = 1024) -> dict:
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
    args = parser.parse_args()
    print(
        json.dumps(
            {"skipping": skip_timings(args.steps, args.rounds), "t-SNE": tsne_timings()}, indent=1
        )
    )


if __name__ == "__main__":
    main()
