"""Greedy decoding with the KV cache, one forward per new token, with a per-step callback."""

import inspect
from collections.abc import Callable, Collection
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor, nn

from mmlens.inputs import ModelInputs

StepCallback = Callable[[int, Float[Tensor, " d_vocab"], int], None]


def _forward_kwargs(model: nn.Module) -> tuple[str, dict[str, int]]:
    """The model's name for the KV cache argument, and the prefill's extra arguments.

    transformers >= 5.24 names the cache `cache`, earlier versions `past_key_values`. Where the
    model can, the prefill asks for the last position's logits only (as `generate` does):
    unembedding every prompt position costs a [positions x vocab] matrix (77 MB in float32 for
    LLaVA's ~600 positions and 32k vocabulary) and its compute; only the last row is used.
    """
    parameters = inspect.signature(model.forward).parameters
    cache_name = "cache" if "cache" in parameters else "past_key_values"
    return cache_name, {"logits_to_keep": 1} if "logits_to_keep" in parameters else {}


def greedy_decode(
    model: nn.Module,
    inputs: ModelInputs,
    max_new_tokens: int,
    eos_token_ids: Collection[int],
    on_step: StepCallback | None = None,
    progress: Any = None,
) -> list[int]:
    """Generate greedily like `transformers`' `generate(do_sample=False)`; returns the new ids.

    `on_step(step, logits, token_id)` runs after each forward, while hooks that captured that
    forward still hold its activations. Stops after an end-of-sequence token.
    """
    cache_name, prefill_kwargs = _forward_kwargs(model)
    attention_mask = inputs.attention_mask
    tokens: list[int] = []
    with torch.inference_mode():
        output = model(**inputs.model_kwargs(), use_cache=True, **prefill_kwargs)
        for step in range(max_new_tokens):
            logits = output.logits[0, -1]
            token = int(logits.argmax())
            if on_step is not None:
                on_step(step, logits, token)
            tokens.append(token)
            if progress is not None:
                progress.update(1)
            if token in eos_token_ids or step == max_new_tokens - 1:
                break
            attention_mask = torch.cat([attention_mask, attention_mask.new_ones((1, 1))], dim=-1)
            next_ids = torch.tensor([[token]], device=inputs.input_ids.device)
            cache = output.past_key_values
            output = model(
                input_ids=next_ids,
                attention_mask=attention_mask,
                use_cache=True,
                **{cache_name: cache},
            )
    return tokens
