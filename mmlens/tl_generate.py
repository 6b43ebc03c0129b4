"""`HookedLVLM.generate`: decoding with the KV cache, called as mmlens calls it (an image and a
prompt, giving a `Generation`) or as TransformerLens does (a prompt or token ids first, giving
what was passed in: text or tokens)."""

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from mmlens.adapters.base import Adapter
from mmlens.call_forms import read_call
from mmlens.errors import ConfigError
from mmlens.fast_path import runner, use_fast_path
from mmlens.generation import Generation, greedy_decode_batch
from mmlens.inputs import ModelInputs
from mmlens.preparing import Images, Prompts
from mmlens.progress import progress_bar
from mmlens.sampling import Sampler, greedy
from mmlens.skipping import skipped_blocks
from mmlens.tl_arguments import check_padding_side, refuse

RETURN_TYPES = ("generation", "str", "tokens", "input")


class GenerationMixin:
    """`generate`; mixed into `HookedLVLM`."""

    adapter: Adapter
    tokenizer: Any
    _inputs: Callable[..., ModelInputs]
    _pad_token_id: Callable[[], int]

    def generate(
        self,
        input: Images | Tensor = None,
        prompt: Prompts | None = None,
        *,
        image: Images = None,
        max_new_tokens: int = 64,
        skip_layers: Iterable[int] | None = None,
        inputs: ModelInputs | None = None,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        stop_at_eos: bool = True,
        eos_token_id: int | list[int] | None = None,
        return_type: str | None = None,
        verbose: bool = False,
        prepend_bos: bool | None = None,
        padding_side: str | None = None,
        attention_mask: Tensor | None = None,
        use_past_kv_cache: bool = True,
        **unsupported: Any,
    ) -> Any:
        """Generation with the KV cache; `skip_layers` (block indices) are not computed.

        Called as `generate(image, prompt)` (or with `inputs=`) it returns a `Generation`: the
        new ids, their text and the skipped blocks. Called as TransformerLens calls it, with a
        prompt first (`generate("prompt", image=img)`, or `generate("prompt")` to run without
        an image) or token ids (`generate(model.to_tokens(prompt, image=img))`), it returns what
        TransformerLens's does (`return_type="input"`): the prompt and continuation as text for
        a prompt, the prompt and new ids as tokens [batch, pos + new] for tokens. `return_type`
        picks one: "generation", "str", "tokens" (rows that stopped early padded) or "input".
        Lists of images and prompts (or batched `inputs`, or tokens) give one result per row.

        Greedy by default (TransformerLens samples by default: pass `do_sample=True`), sampling
        as `transformers` does (temperature, top-k, top-p), from a generator of its own seeded
        with `seed`, else from torch's global one (so `torch.manual_seed(n)` repeats a run, as
        in TransformerLens). `eos_token_id` replaces the model's end-of-sequence ids.
        TransformerLens's `prepend_bos` applies to prompts; `attention_mask` to plain padded
        token ids; `padding_side` is read for prompts only (a batch of prompts is left-padded
        for generation, as TransformerLens does); `use_past_kv_cache` changes nothing (mmlens
        always decodes with the cache: the same tokens, faster). Other TransformerLens
        keywords (`freq_penalty`, `return_cache`...) are refused by name.
        """
        refuse("generate", unsupported)
        check_max_new_tokens(max_new_tokens)
        check_padding_side(padding_side)
        call = read_call("generate", input, prompt, image)
        if return_type is None:
            return_type = "generation" if call.style == "image" else "input"
        if return_type not in RETURN_TYPES:
            raise ConfigError(
                f"return_type={return_type!r}; use 'generation', 'str', 'tokens' or 'input'."
            )
        if return_type == "input":  # TransformerLens: the type of what was passed in
            return_type = "tokens" if call.style == "tokens" else "str"
        if not do_sample and (temperature != 1.0 or top_k is not None or top_p is not None):
            raise ConfigError("temperature, top_k and top_p need do_sample=True.")
        if padding_side is not None and call.style == "tokens" and attention_mask is None:
            raise ConfigError(
                "generate(padding_side=...) with token ids: mmlens reads no padding off pad "
                "tokens; pass attention_mask=... (or tokens from to_tokens, which carry theirs)."
            )
        choose = Sampler(temperature, top_k, top_p, seed) if do_sample else greedy
        prepared = self._inputs(
            call.image,
            call.prompt,
            inputs,
            max_new_tokens,
            prepend_bos=prepend_bos,
            padding_side=None if call.style == "tokens" else "left",
            attention_mask=attention_mask,
        )
        stop_ids = _stop_ids(eos_token_id, self.adapter) if stop_at_eos else ()
        bar = progress_bar(total=max_new_tokens, desc="generate", disable=not verbose)
        with runner(self, use_fast_path(self)), skipped_blocks(self.adapter, skip_layers):
            ids = greedy_decode_batch(
                self.adapter.hf_model,
                prepared,
                max_new_tokens,
                stop_ids,
                self._pad_token_id(),
                progress=bar,
                choose=choose,
            )
        bar.close()
        batched = isinstance(call.prompt, list) or prepared.batch_size > 1
        if return_type != "generation":
            width = max(len(r) for r in ids)
            new = [r + [self._pad_token_id()] * (width - len(r)) for r in ids]
            full = torch.cat([prepared.input_ids.cpu(), torch.tensor(new, dtype=torch.long)], 1)
            if return_type == "tokens":
                return full
            texts = [self.tokenizer.decode(row, skip_special_tokens=True) for row in full.tolist()]
            return texts if batched else texts[0]
        skipped = tuple(sorted(set(skip_layers or ())))
        found = [
            Generation(r, self.tokenizer.decode(r, skip_special_tokens=True), skipped) for r in ids
        ]
        return found if batched else found[0]


def _stop_ids(eos_token_id: int | list[int] | None, adapter: Adapter) -> frozenset[int]:
    """The ids that end a row: `eos_token_id` (TransformerLens's), else the model's own."""
    if eos_token_id is None:
        return adapter.eos_token_ids
    ids = [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)
    vocabulary = int(adapter.unembed().weight.shape[0])
    if not ids or any(isinstance(i, bool) or not 0 <= i < vocabulary for i in ids):
        raise ConfigError(
            f"eos_token_id={eos_token_id!r}; give token ids in 0..{vocabulary - 1}, or None for "
            "the model's own."
        )
    return frozenset(ids)


def is_int(value: object) -> bool:
    """A plain int (not a bool): these settings are saved in a Trace's JSON."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_max_new_tokens(max_new_tokens: int) -> None:
    if not is_int(max_new_tokens) or max_new_tokens < 1:
        raise ConfigError(f"max_new_tokens={max_new_tokens!r}; it must be an integer >= 1.")
