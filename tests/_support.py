"""Helpers shared by test modules (tests/ is on pytest's pythonpath; the package is not)."""

import copy
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from transformers import LlavaForConditionalGeneration

from mmlens.trace import Trace
from mmlens.zoo.tiny import TinyLlavaSpec

# Real AMBER and POPE files, subsets committed with the tests (tests/data/*/SOURCE.md: origin,
# licence and how each subset was cut).
DATA = Path(__file__).resolve().parent / "data"

# Several shapes of the architecture, as transformers' own LLaVA tests vary them.
SPECS: dict[str, TinyLlavaSpec] = {
    "gqa": TinyLlavaSpec(),
    "mha_full_last": TinyLlavaSpec(
        n_kv_heads=4, vision_feature_layer=-1, vision_feature_select_strategy="full", seed=1
    ),
    "mha_deeper": TinyLlavaSpec(n_blocks=6, n_kv_heads=4, seed=2),
    "img576": TinyLlavaSpec(
        image_size=336, patch_size=14, d_vision=16, vision_blocks=2, d_model=32, d_mlp=64, seed=3
    ),
}


def load_hf(path: Path) -> LlavaForConditionalGeneration:
    """The Hugging Face reference model, with the same (eager) attention kernel as the bridge."""
    model = LlavaForConditionalGeneration.from_pretrained(path, attn_implementation="eager")
    return model.eval()


def assert_every_layer_equals_hf(model, cache, hidden_states, atol: float = 1e-5) -> None:
    """Each recorded residual equals HF's `hidden_states` (whose last entry is already
    final-normed, while ours is the raw residual: the final norm is applied to compare), and so
    does the final norm's output hook (`ln_final.hook_out`; `hook_normalized` is before the
    norm's weight)."""
    n_blocks = model.n_blocks
    assert len(hidden_states) == n_blocks + 1
    layers = [cache["blocks.0.hook_resid_pre"]]
    layers += [cache[f"blocks.{block}.hook_resid_post"] for block in range(n_blocks)]
    layers[-1] = model.adapter.final_norm()(layers[-1])
    for ours, reference in zip(layers, hidden_states, strict=True):
        torch.testing.assert_close(ours, reference, atol=atol, rtol=0)
    torch.testing.assert_close(cache["ln_final.hook_out"], hidden_states[-1], atol=atol, rtol=0)


def reference_logprobs(hf, hidden_states, lens: str) -> np.ndarray:
    """[step, layer, vocab] log-probs from HF hidden states, float64, computed independently."""
    norm, head = hf.model.language_model.norm, hf.lm_head
    steps = []
    for per_layer in hidden_states:
        last = torch.stack([h[0, -1] for h in per_layer]).double()
        if lens == "normed":  # HF's last entry is already normed
            last = torch.cat([norm.double()(last[:-1]), last[-1:]])
        logits = head.double()(last)
        norm.float(), head.float()
        steps.append(torch.log_softmax(logits, -1).numpy())
    return np.stack(steps)


def hf_without_blocks(hf, skip: list[int]):
    """An HF model whose skipped decoder layers were deleted (and the rest renumbered)."""
    reduced = copy.deepcopy(hf)
    language_model = reduced.model.language_model
    kept = [layer for i, layer in enumerate(language_model.layers) if i not in skip]
    for index, layer in enumerate(kept):
        layer.self_attn.layer_idx = index
    language_model.layers = torch.nn.ModuleList(kept)
    config = language_model.config
    config.num_hidden_layers = len(kept)
    if getattr(config, "layer_types", None) is not None:
        config.layer_types = [t for i, t in enumerate(config.layer_types) if i not in skip]
    return reduced


def paper_code_divergence(logp: np.ndarray, logq: np.ndarray) -> np.ndarray:
    """The divergence the paper's heatmap script computes, written the way it computes it:
    softmax mixture M, `kl_div(log_softmax(layer), M).mean(-1)` per layer, halved sum."""
    p, q = torch.from_numpy(np.asarray(logp)).double(), torch.from_numpy(np.asarray(logq)).double()
    mixture = 0.5 * (p.softmax(-1) + q.softmax(-1))
    kl_p = torch.nn.functional.kl_div(p.log_softmax(-1), mixture, reduction="none").mean(-1)
    kl_q = torch.nn.functional.kl_div(q.log_softmax(-1), mixture, reduction="none").mean(-1)
    return (0.5 * (kl_p + kl_q)).numpy()


def trace_from_logprobs(
    logprobs: np.ndarray,
    *,
    rivals: dict[str, int] | None = None,
    top_k: int = 3,
    features: np.ndarray | None = None,
    lens: str = "normed",
) -> Trace:
    """A Trace computed with plain numpy/scipy from planted [step, layer, vocab] log-probs.

    Independent of mmlens's recorder: the generated token of each step is the last layer's
    argmax, as in greedy decoding.
    """
    from scipy.spatial.distance import jensenshannon

    n_steps, n_layers, n_vocab = logprobs.shape
    probs = np.exp(logprobs)
    token_ids = logprobs[:, -1].argmax(-1)
    order = np.argsort(-logprobs, axis=-1, kind="stable")
    top1 = order[..., 0]
    jsd = np.full((n_steps, n_layers), np.nan)
    for step in range(n_steps):
        for layer in range(n_layers - 1):
            jsd[step, layer] = jensenshannon(probs[step, layer], probs[step, layer + 1]) ** 2
    paper_jsd = np.full((n_steps, n_layers), np.nan)
    paper_jsd[:, :-1] = paper_code_divergence(logprobs[:, :-1], logprobs[:, 1:])
    steps = np.arange(n_steps)
    chosen = logprobs[steps, :, token_ids]
    rivals = rivals or {}
    topk_ids = order[..., :top_k]
    return Trace(
        prompt="planted",
        prompt_text="USER: planted ASSISTANT:",
        prompt_ids=[1, 2, 3],
        text=" ".join(f"w{t}" for t in token_ids),
        tokens=[f"w{t}" for t in token_ids],
        token_ids=token_ids.astype(np.int64),
        layers=np.arange(n_layers, dtype=np.int64),
        logprob=chosen.astype(np.float32),
        entropy=-(probs * logprobs).sum(-1).astype(np.float32),
        jsd=jsd,
        paper_jsd=paper_jsd,
        topk_ids=topk_ids.astype(np.int64),
        topk_probs=np.take_along_axis(probs, topk_ids, -1).astype(np.float32),
        topk_tokens=np.vectorize(lambda i: f"w{i}")(topk_ids).astype(str),
        rival_words=list(rivals),
        rival_ids=list(rivals.values()),
        rival_logprobs=logprobs[..., list(rivals.values())].astype(np.float32),
        rank=(logprobs > chosen[..., None]).sum(-1).astype(np.int64),
        top1_logprobs=np.take_along_axis(logprobs, top1[:, None, :], -1)
        .transpose(0, 2, 1)
        .astype(np.float32),
        features=features,
        settings={"lens": lens, "d_vocab": n_vocab, "n_blocks": n_layers - 1, "has_image": True},
    )


def staged_logprobs(
    n_steps: int = 6,
    n_layers: int = 33,
    n_vocab: int = 500,
    critical: int = 18,
    mutation: tuple[int, ...] = (),
    seed: int = 0,
) -> np.ndarray:
    """Planted stages: random churn before `critical`, then one stable distribution per step
    (peaked on its token), and at each mutation layer a jump to a different peaked distribution.
    """
    rng = np.random.default_rng(seed)
    out = np.empty((n_steps, n_layers, n_vocab))
    for step in range(n_steps):
        stable = rng.normal(0, 0.3, n_vocab)
        stable[step % n_vocab] += 6.0
        current = stable
        for layer in range(n_layers):
            if layer < critical:
                logits = rng.normal(0, 2.5, n_vocab)  # rapid evolution: unrelated distributions
            else:
                if layer in mutation:
                    current = rng.normal(0, 0.3, n_vocab)
                    current[(step + 7 + layer) % n_vocab] += 6.0
                logits = current + rng.normal(0, 0.02, n_vocab)
            out[step, layer] = logits - np.logaddexp.reduce(logits)
    return out


PLANTED_LAYERS = np.arange(9)
QUIET = np.array([0.5, 0.3, 1e-5, 1e-5, 1e-5, 1e-5, 1e-5, 1e-5])  # critical layer 2


def planted_token_rows(order, step, token, spike=None, prob=0.8, truth=np.nan, after=None):
    """A run's tokens-table rows for one token of a 9-layer model: its JSD profile QUIET (with a
    spike at pair `spike`), its probability `prob` up to the spike and `after` beyond it, and the
    truth's probability."""
    jsd = QUIET.copy()
    probs = np.full(9, prob)
    if spike is not None:
        jsd[spike] = 0.3
        probs[spike + 1 :] = after
    truths = np.broadcast_to(np.asarray(truth, dtype=float), (9,)).copy()
    return pd.DataFrame(
        {
            "order": order,
            "step": step,
            "layer": PLANTED_LAYERS,
            "token": token,
            "jsd": np.append(jsd, np.nan),
            "prob": probs,
            "top1_id": 0,
            "truth_logprob": np.log(truths),
        }
    )


def n_parts(out: Path) -> int:
    """How many parts a run or activation store in `out` has written so far."""
    return len(list((out / "parts").glob("0*"))) if (out / "parts").is_dir() else 0


def wait_for_parts(out: Path, n: int, process: subprocess.Popen, timeout: float = 300) -> None:
    """Wait until `process` has written `n` parts to `out`; fail if it ends or times out first."""
    deadline = time.time() + timeout
    while n_parts(out) < n:
        assert process.poll() is None, "the run ended before it was caught part-way"
        assert time.time() < deadline, "the run wrote no part in time"
        time.sleep(0.05)
