"""Assemble one `Trace` per batch row from what the recorder kept and the generated ids."""

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from mmlens.inputs import ModelInputs
from mmlens.token_text import token_text_array, token_texts
from mmlens.trace import Trace


def build_trace(
    tokenizer: Any,
    arrays: dict[str, np.ndarray],
    ids: list[int],
    *,
    prompt: str,
    inputs: ModelInputs,
    row: int,
    layers: Sequence[int],
    rivals: list[str],
    rival_ids: list[int],
    settings: dict[str, Any],
) -> Trace:
    """The Trace of batch row `row`, with its prompt as if it had run alone (padding removed)."""
    real = inputs.attention_mask[row].bool()
    image = torch.nonzero(inputs.image_mask[row][real]).flatten()
    topk_ids = arrays["topk_ids"]
    return Trace(
        prompt=prompt,
        prompt_text=inputs.row_texts[row],
        prompt_ids=inputs.input_ids[row][real].tolist(),
        text=tokenizer.decode(ids, skip_special_tokens=True),
        tokens=token_texts(tokenizer, ids),
        token_ids=np.asarray(ids, dtype=np.int64),
        layers=np.asarray(layers, dtype=np.int64),
        logprob=arrays["logprob"],
        entropy=arrays["entropy"],
        jsd=arrays["jsd"],
        paper_jsd=arrays["paper_jsd"],
        topk_ids=topk_ids,
        topk_probs=arrays["topk_probs"],
        topk_tokens=token_text_array(tokenizer, topk_ids),
        rival_words=rivals,
        rival_ids=rival_ids,
        rival_logprobs=arrays["rival_logprobs"],
        rank=arrays["rank"],
        top1_logprobs=arrays["top1_logprobs"],
        image_span=(int(image[0]), int(image[-1]) + 1) if image.numel() else None,
        features=arrays.get("features"),
        image_attention=arrays.get("image_attention"),
        region_attention=arrays.get("region_attention"),
        final_jsd=arrays.get("final_jsd"),
        candidate_prob=arrays.get("candidate_prob"),
        settings=settings,
    )
