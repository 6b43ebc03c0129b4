"""`HookedLVLM`: a family-agnostic hooked vision-language model on TransformerLens's bridge."""

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any, cast

import numpy as np
import torch
from torch import Tensor

from mmlens.adapters.base import Adapter
from mmlens.bridging import build_bridge
from mmlens.cache import LVLMActivationCache
from mmlens.caching import cached_run
from mmlens.call_forms import read_call
from mmlens.devices import execution_device
from mmlens.errors import ConfigError, LayerIndexError, PromptError
from mmlens.fast_path import bridge_parts, recording, runner, use_fast_path
from mmlens.generation import Generation as Generation  # re-exported: mmlens.model.Generation
from mmlens.generation import greedy_decode_batch
from mmlens.inputs import ModelInputs
from mmlens.lens import LENSES, Lens
from mmlens.preparing import Images, InputPreparation, Prompts
from mmlens.progress import progress_bar
from mmlens.recording import LayerRecorder, resid_hook_names
from mmlens.skipping import skipped_blocks
from mmlens.tl_arguments import CACHE_KEYWORDS, HOOKS_KEYWORDS, refuse
from mmlens.tl_generate import GenerationMixin, check_max_new_tokens, is_int
from mmlens.tl_surface import (
    TransformerLensSurface,
    check_return_type,
    forward_output,
    named_hook,
)
from mmlens.trace import Trace
from mmlens.tracing import build_trace
from mmlens.visual_attention import attention_recorder, both, counting

Hook = tuple[str | Callable[[str], bool], Callable[..., Any]]


class HookedLVLM(InputPreparation, TransformerLensSurface, GenerationMixin):
    """A vision-language model with TransformerLens hook names, caches and layer-wise tracing.

    Hook names are TransformerLens's (`blocks.{b}.hook_resid_post`, ...) plus `hook_pixel_values`,
    `hook_vision_out` and `hook_image_embeds`. Layer numbers elsewhere follow HF `hidden_states`.
    Running methods take an image and a prompt (`model(image, prompt)`), a prompt first with
    the image by keyword (`model(prompt, image=image)`), a prompt alone (run without an image,
    as TransformerLens runs a string), prepared `inputs`, or token ids (from `to_tokens`, which
    carry their image; plain ids run as text), as TransformerLens's do.
    """

    def __init__(self, adapter: Adapter, name: str = "") -> None:
        self.adapter = adapter
        self.name = name
        self.bridge = build_bridge(adapter)
        self.use_fast_path = True  # trace and generate run plain modules when nothing needs hooks
        self.fast_attention = "auto"  # the fast path's kernel: see fast_path.attention_kernel
        self._all_layers = adapter.decoder_layers()  # the bridge's blocks, in block order
        self.bridge_parts = bridge_parts(self.bridge, adapter.hf_model)  # for the fast path

    # -- shape facts ---------------------------------------------------------------------------
    @property
    def n_blocks(self) -> int:
        """Number of decoder blocks; recorded layers are numbered 0..n_blocks."""
        return len(self.adapter.decoder_layers())

    @property
    def d_model(self) -> int:
        return int(self.bridge.cfg.d_model)

    @property
    def d_vocab(self) -> int:
        return int(self.adapter.unembed().weight.shape[0])

    @property
    def device(self) -> torch.device:
        """Where inputs go: the input embeddings' device (on a model spread by a device map,
        where Accelerate runs them)."""
        hf_model = self.adapter.hf_model
        return execution_device(hf_model, hf_model.get_input_embeddings())

    @property
    def dtype(self) -> torch.dtype:
        return next(self.adapter.hf_model.parameters()).dtype

    @property
    def tokenizer(self) -> Any:
        return self.adapter.tokenizer

    @property
    def hook_dict(self) -> dict[str, Any]:
        """Every hook point by name, as in TransformerLens."""
        return self.bridge.hook_dict

    def check_layer(self, layer: int) -> int:
        """Validate a layer number in HF `hidden_states` numbering (0..n_blocks)."""
        if not isinstance(layer, (int, np.integer)) or not 0 <= layer <= self.n_blocks:
            raise LayerIndexError(
                f"Layer {layer!r} is out of range: layers are 0..{self.n_blocks} "
                "(0 = embeddings, l = output of block l-1)."
            )
        return int(layer)

    # -- TransformerLens-style running ---------------------------------------------------------
    def __call__(
        self,
        input: Images | Tensor = None,
        prompt: Prompts | None = None,
        *,
        image: Images = None,
        inputs: ModelInputs | None = None,
        return_type: str | None = "logits",
        loss_per_token: bool = False,
        prepend_bos: bool | None = None,
        padding_side: str | None = None,
        attention_mask: Tensor | None = None,
        stop_at_layer: int | None = None,
        **unsupported: Any,
    ) -> Any:
        """One forward pass: logits, or with `return_type` "loss" the mean next-token loss over
        text targets (image and padding positions are not predicted), "both" or None;
        `loss_per_token` gives the loss at each of pos - 1 targets (0 where not predicted).

        Takes `(image, prompt)`, `(prompt, image=...)`, a prompt alone (run without an image),
        token ids, or `inputs=` (see `mmlens.call_forms`). TransformerLens's keywords with a
        meaning here are taken (`prepend_bos`, `padding_side`, `attention_mask` for plain token
        ids, `stop_at_layer`: the residual stream entering that block); others are refused by
        name."""
        refuse("model", unsupported)
        check_return_type(return_type)
        prepared = self._called_inputs(
            "model",
            input,
            prompt,
            image,
            inputs,
            prepend_bos=prepend_bos,
            padding_side=padding_side,
            attention_mask=attention_mask,
        )
        if stop_at_layer is not None:
            stop = self._check_stop_at_layer(stop_at_layer, return_type)
            return self.bridge(prepared.input_ids, **_extra_kwargs(prepared), stop_at_layer=stop)
        logits = self.bridge(prepared.input_ids, **_extra_kwargs(prepared))
        return forward_output(logits, prepared, return_type, loss_per_token)

    def run_with_cache(
        self,
        input: Images | Tensor = None,
        prompt: Prompts | None = None,
        *,
        image: Images = None,
        inputs: ModelInputs | None = None,
        return_type: str | None = "logits",
        loss_per_token: bool = False,
        prepend_bos: bool | None = None,
        padding_side: str | None = None,
        attention_mask: Tensor | None = None,
        stop_at_layer: int | None = None,
        **kwargs: Any,
    ) -> tuple[Any, LVLMActivationCache | dict[str, Tensor]]:
        """Forward pass caching activations: `(output, cache)`, the output as `__call__` gives
        it. Takes what `__call__` takes, and TransformerLens's `run_with_cache` keywords
        (`names_filter`, `remove_batch_dim`, `device`, `pos_slice`, `incl_bwd`...). A filter
        selecting only the language model's residual stream runs on the fast path
        (`mmlens.caching`) unless a hook needs the bridge."""
        passed = refuse("run_with_cache", kwargs, CACHE_KEYWORDS)
        check_return_type(return_type)
        prepared = self._called_inputs(
            "run_with_cache",
            input,
            prompt,
            image,
            inputs,
            prepend_bos=prepend_bos,
            padding_side=padding_side,
            attention_mask=attention_mask,
        )
        if passed.get("remove_batch_dim") and prepared.batch_size != 1:
            raise ConfigError(
                f"remove_batch_dim=True needs one row; these inputs have {prepared.batch_size}."
            )
        if stop_at_layer is not None:
            stop_at_layer = self._check_stop_at_layer(stop_at_layer, return_type)
        return cached_run(self, prepared, passed, stop_at_layer, return_type, loss_per_token)

    def run_with_hooks(
        self,
        input: Images | Tensor = None,
        prompt: Prompts | None = None,
        *,
        image: Images = None,
        inputs: ModelInputs | None = None,
        fwd_hooks: Sequence[Hook] = (),
        return_type: str | None = "logits",
        loss_per_token: bool = False,
        prepend_bos: bool | None = None,
        padding_side: str | None = None,
        attention_mask: Tensor | None = None,
        stop_at_layer: int | None = None,
        **kwargs: Any,
    ) -> Any:
        """Forward pass with temporary hooks, as TransformerLens's `run_with_hooks`: takes what
        `__call__` takes, and `bwd_hooks`, `reset_hooks_end`, `clear_contexts`,
        `remove_batch_dim`."""
        passed = refuse("run_with_hooks", kwargs, HOOKS_KEYWORDS)
        check_return_type(return_type)
        prepared = self._called_inputs(
            "run_with_hooks",
            input,
            prompt,
            image,
            inputs,
            prepend_bos=prepend_bos,
            padding_side=padding_side,
            attention_mask=attention_mask,
        )
        if "bwd_hooks" in passed:
            passed["bwd_hooks"] = _named(passed["bwd_hooks"], self.hook_dict)
        if stop_at_layer is not None:
            passed["stop_at_layer"] = self._check_stop_at_layer(stop_at_layer, return_type)
        out = self.bridge.run_with_hooks(
            prepared.input_ids,
            fwd_hooks=_named(fwd_hooks, self.hook_dict),
            **_extra_kwargs(prepared),
            return_type="logits",
            **passed,
        )
        if stop_at_layer is not None:
            return out
        return forward_output(out, prepared, return_type, loss_per_token)

    def _check_stop_at_layer(self, stop_at_layer: int, return_type: str | None) -> int:
        """TransformerLens's `stop_at_layer` (a block index, negative from the end), checked."""
        if not is_int(stop_at_layer) or not -self.n_blocks <= stop_at_layer < self.n_blocks:
            raise LayerIndexError(
                f"stop_at_layer={stop_at_layer!r}; give a block index in "
                f"{-self.n_blocks}..{self.n_blocks - 1} (the run returns the residual entering it)."
            )
        if return_type != "logits":
            raise ConfigError(
                f"stop_at_layer returns the residual stream, so return_type={return_type!r} "
                "cannot apply; leave return_type as 'logits'."
            )
        return int(stop_at_layer)

    def hooks(
        self,
        fwd_hooks: Sequence[Hook] = (),
        bwd_hooks: Sequence[Hook] = (),
        reset_hooks_end: bool = True,
        clear_contexts: bool = False,
    ) -> AbstractContextManager[Any]:
        """Context manager that keeps hooks on for every forward inside it (TransformerLens's)."""
        return self.bridge.hooks(
            fwd_hooks=_named(fwd_hooks, self.hook_dict),
            bwd_hooks=_named(bwd_hooks, self.hook_dict),
            reset_hooks_end=reset_hooks_end,
            clear_contexts=clear_contexts,
        )

    def trace(
        self,
        input: Images | Tensor = None,
        prompt: Prompts | None = None,
        *,
        image: Images = None,
        max_new_tokens: int = 64,
        rivals: Sequence[str | int] | None = None,
        top_k: int = 5,
        skip_layers: Iterable[int] | None = None,
        lens: str = "normed",
        keep_features: bool = False,
        visual_attention: bool = False,
        attention_regions: int | None = None,
        image_mode: str | None = None,
        stop_at_eos: bool = True,
        progress: bool = True,
    ) -> Trace | list[Trace]:
        """Generate greedily and record, at each step's predicting position, every layer's lens.

        Lists of images and prompts run as one left-padded batch (each row stopping at its own
        end of sequence) and give one Trace per row, equal to tracing each alone up to float
        rounding.

        Per step and layer: log-prob of the generated token, top-k ids and probs, entropy, JSD
        to the next recorded layer (nats; and the paper code's divergence, see
        `lens.paper_divergence`) and log-probs of `rivals` (single-token words or ids);
        with `keep_features`, the residual vectors too (with `lens="paper"` the last one
        final-normed, as in HF `hidden_states`). Nothing of size layers x vocab is kept.
        With `visual_attention`, each block's share of attention on image tokens per head
        (`Trace.image_attention`), and with `attention_regions=N` on each of N x N regions of
        the patch grid too (`mmlens.visual_attention`); no attention pattern is kept.
        `stop_at_eos=False` runs every row to `max_new_tokens` (for equal-length comparisons).

        Takes `(image, prompt)`, `(prompt, image=...)` or a prompt alone (traced without an
        image), not token ids: a Trace keeps its prompt's text.
        """
        check_max_new_tokens(max_new_tokens)
        image, prompt, style = read_call("trace", input, prompt, image)
        if style == "tokens":
            raise PromptError(
                "trace takes an image and a prompt (or a prompt alone), not token ids: a Trace "
                "keeps its prompt's text. Use generate(tokens) for tokens."
            )
        if lens not in LENSES:
            raise ConfigError(f"lens={lens!r}; choose one of {LENSES}.")
        if not is_int(top_k) or not 1 <= top_k <= self.d_vocab:
            raise ConfigError(
                f"top_k={top_k!r} must be an integer between 1 and the vocabulary size "
                f"{self.d_vocab}."
            )
        rival_ids = self.rival_token_ids(rivals)
        batched = isinstance(prompt, list)
        inputs = self.prepare(image, prompt, image_mode=image_mode)
        self._check_context(inputs, max_new_tokens)
        fast = use_fast_path(self, visual_attention or attention_regions is not None)
        with runner(self, fast), skipped_blocks(self.adapter, skip_layers) as kept:
            recorder = LayerRecorder(
                hook_names=resid_hook_names(kept),
                final_norm=self.adapter.final_norm(),
                unembed=self.adapter.unembed(),
                lens=cast(Lens, lens),
                top_k=top_k,
                rival_ids=rival_ids,
                keep_features=keep_features,
            )
            attention = attention_recorder(inputs, kept, visual_attention, attention_regions)
            hooks, on_step = recorder.hooks(), recorder.record
            if attention is not None:
                hooks, on_step = hooks + attention.hooks(), both(on_step, attention.record)
            bar = progress_bar(total=max_new_tokens, desc="trace", unit="tok", disable=not progress)
            recorded = recording(self, fast, self._all_layers, hooks)
            with bar, recorded, counting(attention, self.adapter.language_model()):
                ids = greedy_decode_batch(
                    self.adapter.hf_model,
                    inputs,
                    max_new_tokens,
                    self.adapter.eos_token_ids if stop_at_eos else (),
                    self._pad_token_id(),
                    on_step=on_step,
                    progress=bar,
                )
        settings = {
            "model": self.name,
            "lens": lens,
            "top_k": top_k,
            "skip_layers": sorted(set(skip_layers or ())),
            "max_new_tokens": max_new_tokens,
            "image_mode": image_mode or self.adapter.image_modes[0],
            "n_blocks": self.n_blocks,
            "d_vocab": self.d_vocab,
        }
        if attention is not None:
            settings["attention_regions"] = attention_regions
        prompts = prompt if batched else [prompt]
        images = image if batched and isinstance(image, list) else [image] * len(prompts)
        traces = [
            build_trace(
                self.tokenizer,
                {**recorder.arrays(row), **(attention.arrays(row) if attention else {})},
                ids[row],
                prompt=prompts_row,
                inputs=inputs,
                row=row,
                layers=[0] + [block + 1 for block in kept],
                rivals=[str(r) for r in rivals or ()],
                rival_ids=rival_ids,
                settings={**settings, "has_image": images[row] is not None},
            )
            for row, prompts_row in enumerate(prompts)
        ]
        return traces if batched else traces[0]


def _named(hooks: Sequence[Hook], hook_dict: dict[str, Any]) -> list[Hook]:
    """Hooks whose functions see `hook.name` as registered (see `tl_surface.NamedHook`)."""
    return [(name, named_hook(name, function, hook_dict)) for name, function in hooks]


def _extra_kwargs(inputs: ModelInputs) -> dict[str, Any]:
    kwargs = inputs.model_kwargs()
    kwargs.pop("input_ids")
    return kwargs
