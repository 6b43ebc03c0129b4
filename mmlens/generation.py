"""Decoding with the KV cache (greedy, or sampled), one forward per new token for a whole batch,
with a per-step callback."""

import inspect
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor, nn

from mmlens.batching import position_ids
from mmlens.inputs import ModelInputs
from mmlens.sampling import greedy

StepCallback = Callable[[int, Float[Tensor, " d_vocab"], int], None]
BatchStepCallback = Callable[[int, Float[Tensor, "batch d_vocab"], list[int], list[bool]], None]


@dataclass(frozen=True)
class Generation:
    """Output of `HookedLVLM.generate(image, prompt)`: the new token ids and their text."""

    token_ids: list[int]
    text: str
    skip_layers: tuple[int, ...] = ()


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


def greedy_decode_batch(
    model: nn.Module,
    inputs: ModelInputs,
    max_new_tokens: int,
    eos_token_ids: Collection[int],
    pad_token_id: int = 0,
    on_step: BatchStepCallback | None = None,
    progress: Any = None,
    choose: Callable[[Tensor], list[int]] = greedy,
) -> list[list[int]]:
    """Generation for every row of a (left-padded) batch; returns each row's new ids.

    `choose` picks each step's tokens from the last logits (greedy by default, or a
    `sampling.Sampler`). Like `transformers`' `generate`: each row stops after its own
    end-of-sequence token (it is then fed padding, which nothing reads) and positions continue from
    each row's own length. `on_step(step, logits, tokens, active)` runs after each forward, while
    hooks that captured it still hold its activations; `active[r]` says whether row r produced
    `tokens[r]`.
    """
    cache_name, prefill_kwargs = _forward_kwargs(model)
    attention_mask = inputs.attention_mask
    positions = (
        inputs.position_ids if inputs.position_ids is not None else position_ids(attention_mask)
    )
    next_position = positions[..., -1:] + 1
    rows = inputs.batch_size
    tokens: list[list[int]] = [[] for _ in range(rows)]
    active = [True] * rows
    with torch.inference_mode():
        output = model(**inputs.model_kwargs(), use_cache=True, **prefill_kwargs)
        for step in range(max_new_tokens):
            chosen = choose(output.logits[:, -1])
            if on_step is not None:
                on_step(step, output.logits[:, -1], chosen, list(active))
            for row in range(rows):
                if active[row]:
                    tokens[row].append(chosen[row])
                    active[row] = chosen[row] not in eos_token_ids
            if progress is not None:
                progress.update(1)
            if not any(active) or step == max_new_tokens - 1:
                break
            feed = [token if on else pad_token_id for token, on in zip(chosen, active, strict=True)]
            attention_mask = torch.cat([attention_mask, attention_mask.new_ones((rows, 1))], dim=-1)
            output = model(
                input_ids=torch.tensor(feed, device=inputs.input_ids.device)[:, None],
                attention_mask=attention_mask,
                position_ids=next_position,
                use_cache=True,
                **{cache_name: output.past_key_values},
            )
            next_position = next_position + 1
    return tokens


def greedy_decode(
    model: nn.Module,
    inputs: ModelInputs,
    max_new_tokens: int,
    eos_token_ids: Collection[int],
    on_step: StepCallback | None = None,
    progress: Any = None,
) -> list[int]:
    """`greedy_decode_batch` for one row: `on_step(step, logits, token_id)`."""

    def one_row(step: int, logits: Tensor, tokens: list[int], active: list[bool]) -> None:
        if on_step is not None:
            on_step(step, logits[0], tokens[0])

    return greedy_decode_batch(
        model, inputs, max_new_tokens, eos_token_ids, on_step=one_row, progress=progress
    )[0]
