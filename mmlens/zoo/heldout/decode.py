"""How `mmlens/heldout`'s evaluation reads the model's answers: greedy continuations, and a forced
choice among the six colour words at the first answer position (what the model says when it must
name a colour, as closed-set benchmarks ask)."""

from collections import defaultdict
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from mmlens.generation import _forward_kwargs
from mmlens.zoo.priors import train as base
from mmlens.zoo.priors.scenes import COLOURS


def colour_token_ids(tokenizer: Any) -> list[list[int]]:
    """Per colour of `COLOURS`, those of its spellings ' red', ' Red', 'red', 'Red' that are one
    token each (the first answer token decides the forced choice)."""
    ids = []
    for colour in COLOURS:
        variants = (f" {colour}", f" {colour.capitalize()}", colour, colour.capitalize())
        tokens = [tokenizer(v, add_special_tokens=False).input_ids for v in variants]
        ids.append([t[0] for t in tokens if len(t) == 1])
    return ids


def forced_colours(logits: Float[Tensor, "job vocab"], ids: list[list[int]]) -> list[str]:
    """The colour whose tokens (`colour_token_ids`) hold the most probability (log-sum-exp of
    their logits) at each job's first answer position."""
    scores = torch.stack([logits[:, group].logsumexp(-1) for group in ids], -1)
    names = list(COLOURS)
    return [names[i] for i in scores.argmax(-1).tolist()]


@torch.no_grad()
def greedy(
    model: Any, processor: Any, jobs: list[tuple[list[int], Any]], tokens: int = 6, batch: int = 32
) -> tuple[list[str], list[str]]:
    """Greedy continuation of each (ids, image) job, and its forced colour (`forced_colours`) at
    the first step. Jobs are batched by length, so no padding is needed, and decoded with the
    key-value cache."""
    ids_per_colour = colour_token_ids(processor.tokenizer)
    cache_name, prefill = _forward_kwargs(model)
    by_length = defaultdict(list)
    for index, (ids, _) in enumerate(jobs):
        by_length[len(ids)].append(index)
    texts, forced = [""] * len(jobs), [""] * len(jobs)
    for indices in by_length.values():
        for start in range(0, len(indices), batch):
            part = indices[start : start + batch]
            ids = torch.tensor([jobs[i][0] for i in part])
            pixels = base.pixel_values(processor, [jobs[i][1] for i in part])
            out = model(input_ids=ids, pixel_values=pixels, use_cache=True, **prefill)
            first = out.logits[:, -1].float()
            new = [first.argmax(-1)]
            for _ in range(tokens - 1):
                cache = {cache_name: out.past_key_values}
                out = model(input_ids=new[-1][:, None], use_cache=True, **cache)
                new.append(out.logits[:, -1].argmax(-1))
            decoded = processor.tokenizer.batch_decode(torch.stack(new, 1))
            chosen = forced_colours(first, ids_per_colour)
            for i, text, colour in zip(part, decoded, chosen, strict=True):
                texts[i], forced[i] = text, colour
    return texts, forced
