"""`HookedLVLM`: a family-agnostic hooked vision-language model on TransformerLens's bridge."""

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor, nn
from tqdm.auto import tqdm
from transformer_lens.factories.architecture_adapter_factory import ArchitectureAdapterFactory
from transformer_lens.model_bridge import TransformerBridge
from transformer_lens.model_bridge.generalized_components import AttentionBridge
from transformer_lens.model_bridge.sources import build_bridge_from_module

from mmlens.adapters.base import Adapter
from mmlens.cache import LVLMActivationCache
from mmlens.errors import ConfigError, LayerIndexError
from mmlens.generation import greedy_decode_batch
from mmlens.inputs import ModelInputs
from mmlens.lens import LENSES, Lens
from mmlens.preparing import Images, InputPreparation, Prompts
from mmlens.recording import LayerRecorder, resid_hook_names
from mmlens.sampling import Sampler, greedy
from mmlens.skipping import skipped_blocks
from mmlens.tl_surface import TransformerLensSurface, named_hook, next_token_loss
from mmlens.trace import Trace
from mmlens.tracing import build_trace

Hook = tuple[str | Callable[[str], bool], Callable[..., Any]]


@dataclass(frozen=True)
class Generation:
    """Output of `HookedLVLM.generate`: the new token ids and their text."""

    token_ids: list[int]
    text: str
    skip_layers: tuple[int, ...] = ()


def _forward_cache_kwarg(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """Hand transformers >= 5.24's `cache` kwarg to the bridge under its older name.

    TransformerLens 4.3's attention bridge reads only `past_key_values`; without this, decoding
    with the KV cache silently attends to the new token alone.
    """
    if kwargs.get("past_key_values") is None and kwargs.get("cache") is not None:
        kwargs["past_key_values"] = kwargs["cache"]
    return args, kwargs


def build_bridge(adapter: Adapter) -> TransformerBridge:
    """Wrap the adapter's HF model in a TransformerBridge with mmlens's multimodal hook aliases."""
    if adapter.bridge_adapter is not None:
        ArchitectureAdapterFactory.register_adapter(
            adapter.bridge_architecture, adapter.bridge_adapter
        )
    bridge = build_bridge_from_module(
        adapter.hf_model,
        adapter.bridge_architecture,
        hf_config=adapter.hf_model.config,
        tokenizer=adapter.tokenizer,
    )
    bridge.hook_aliases = {**bridge.hook_aliases, **adapter.hook_aliases}
    # TransformerLens has no public way to add aliases after construction; these are the two
    # calls its own constructor makes to register them.
    bridge._register_aliases()
    bridge._scan_existing_hooks(bridge, "")
    for block in bridge.blocks:
        # The plain AttentionBridge hands its keywords to HF's attention, which reads `cache`.
        if type(block.attn) is not AttentionBridge:
            block.attn.register_forward_pre_hook(_forward_cache_kwarg, with_kwargs=True)
    return bridge


class HookedLVLM(InputPreparation, TransformerLensSurface):
    """A vision-language model with TransformerLens hook names, caches and layer-wise tracing.

    Hook names are TransformerLens's (`blocks.{b}.hook_resid_post`, ...) plus `hook_pixel_values`,
    `hook_vision_out` and `hook_image_embeds`. Layer numbers elsewhere follow HF `hidden_states`.
    Running methods take an image and a prompt, prepared `inputs`, or token ids as their first
    argument (from `to_tokens`, which carry their image; plain ids run as text), as
    TransformerLens's do.
    """

    def __init__(self, adapter: Adapter, name: str = "") -> None:
        self.adapter = adapter
        self.name = name
        self.bridge = build_bridge(adapter)

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
        return next(self.adapter.hf_model.parameters()).device

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
        image: Images | Tensor = None,
        prompt: Prompts | None = None,
        *,
        inputs: ModelInputs | None = None,
        return_type: str | None = "logits",
    ) -> Any:
        """One forward pass: logits, or with `return_type` "loss" the mean next-token loss over
        text targets (image and padding positions are not predicted), "both" or None."""
        if return_type not in ("logits", "loss", "both", None):
            raise ConfigError(f"return_type={return_type!r}; use 'logits', 'loss', 'both' or None.")
        prepared = self._inputs(image, prompt, inputs)
        logits = self.bridge(prepared.input_ids, **_extra_kwargs(prepared))
        if return_type == "logits":
            return logits
        if return_type is None:
            return None
        loss = next_token_loss(logits, prepared)
        return loss if return_type == "loss" else (logits, loss)

    def run_with_cache(
        self,
        image: Images | Tensor = None,
        prompt: Prompts | None = None,
        *,
        inputs: ModelInputs | None = None,
        **kwargs: Any,
    ) -> tuple[Float[Tensor, "batch pos d_vocab"], LVLMActivationCache]:
        """Forward pass caching activations (TransformerLens's `run_with_cache` keywords apply)."""
        prepared = self._inputs(image, prompt, inputs)
        if kwargs.get("remove_batch_dim") and prepared.batch_size != 1:
            raise ConfigError(
                f"remove_batch_dim=True needs one row; these inputs have {prepared.batch_size}."
            )
        logits, cache = self.bridge.run_with_cache(
            prepared.input_ids, **_extra_kwargs(prepared), **kwargs
        )
        return logits, LVLMActivationCache(
            dict(cache.cache_dict), self.bridge, prepared, cache.has_batch_dim
        )

    def run_with_hooks(
        self,
        image: Images | Tensor = None,
        prompt: Prompts | None = None,
        *,
        inputs: ModelInputs | None = None,
        fwd_hooks: Sequence[Hook] = (),
        **kwargs: Any,
    ) -> Float[Tensor, "batch pos d_vocab"]:
        """Forward pass with temporary hooks, as TransformerLens's `run_with_hooks`."""
        prepared = self._inputs(image, prompt, inputs)
        return self.bridge.run_with_hooks(
            prepared.input_ids,
            fwd_hooks=_named(fwd_hooks, self.hook_dict),
            **_extra_kwargs(prepared),
            **kwargs,
        )

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

    # -- generation ----------------------------------------------------------------------------
    def generate(
        self,
        image: Images | Tensor = None,
        prompt: Prompts | None = None,
        *,
        max_new_tokens: int = 64,
        skip_layers: Iterable[int] | None = None,
        inputs: ModelInputs | None = None,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        stop_at_eos: bool = True,
        return_type: str = "generation",
        verbose: bool = False,
    ) -> Any:
        """Generation with the KV cache; `skip_layers` (block indices) are not computed.

        Greedy by default; `do_sample=True` samples as `transformers` does (temperature, top-k,
        top-p), from a generator of its own seeded with `seed`, else from torch's global one (so
        `torch.manual_seed(n)` repeats a run, as in TransformerLens). Lists of images and prompts
        (or batched `inputs`, or tokens from `to_tokens`) give one result per row. `return_type`:
        "generation" (`Generation`: new ids and text), or as TransformerLens: "str" (prompt and
        continuation as text), "tokens" (prompt and new ids, [batch, pos + new], rows that
        stopped early padded) or "input" (tokens for token input, else text).
        """
        _check_max_new_tokens(max_new_tokens)
        if return_type == "input":  # TransformerLens: the type of what was passed in
            return_type = "tokens" if isinstance(image, Tensor) else "str"
        if return_type not in ("generation", "str", "tokens"):
            raise ConfigError(
                f"return_type={return_type!r}; use 'generation', 'str', 'tokens' or 'input'."
            )
        if not do_sample and (temperature != 1.0 or top_k is not None or top_p is not None):
            raise ConfigError("temperature, top_k and top_p need do_sample=True.")
        choose = Sampler(temperature, top_k, top_p, seed) if do_sample else greedy
        prepared = self._inputs(image, prompt, inputs, max_new_tokens)
        bar = tqdm(total=max_new_tokens, desc="generate", disable=not verbose)
        with skipped_blocks(self.adapter, skip_layers):
            ids = greedy_decode_batch(
                self.adapter.hf_model,
                prepared,
                max_new_tokens,
                self.adapter.eos_token_ids if stop_at_eos else (),
                self._pad_token_id(),
                progress=bar,
                choose=choose,
            )
        bar.close()
        batched = isinstance(prompt, list) or prepared.batch_size > 1
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

    def trace(
        self,
        image: Images,
        prompt: Prompts,
        *,
        max_new_tokens: int = 64,
        rivals: Sequence[str | int] | None = None,
        top_k: int = 5,
        skip_layers: Iterable[int] | None = None,
        lens: str = "normed",
        keep_features: bool = False,
        image_mode: str | None = None,
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
        """
        _check_max_new_tokens(max_new_tokens)
        if lens not in LENSES:
            raise ConfigError(f"lens={lens!r}; choose one of {LENSES}.")
        if not _is_int(top_k) or not 1 <= top_k <= self.d_vocab:
            raise ConfigError(
                f"top_k={top_k!r} must be an integer between 1 and the vocabulary size "
                f"{self.d_vocab}."
            )
        rival_ids = self.rival_token_ids(rivals)
        batched = isinstance(prompt, list)
        inputs = self.prepare(image, prompt, image_mode=image_mode)
        self._check_context(inputs, max_new_tokens)
        with skipped_blocks(self.adapter, skip_layers) as kept:
            recorder = LayerRecorder(
                hook_names=resid_hook_names(kept),
                final_norm=self.adapter.final_norm(),
                unembed=self.adapter.unembed(),
                lens=cast(Lens, lens),
                top_k=top_k,
                rival_ids=rival_ids,
                keep_features=keep_features,
            )
            bar = tqdm(total=max_new_tokens, desc="trace", unit="tok", disable=not progress)
            with bar, self.hooks(recorder.hooks()):
                ids = greedy_decode_batch(
                    self.adapter.hf_model,
                    inputs,
                    max_new_tokens,
                    self.adapter.eos_token_ids,
                    self._pad_token_id(),
                    on_step=recorder.record,
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
        prompts = prompt if batched else [prompt]
        images = image if batched and isinstance(image, list) else [image] * len(prompts)
        traces = [
            build_trace(
                self.tokenizer,
                recorder.arrays(row),
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


def _is_int(value: object) -> bool:
    """A plain int (not a bool): these settings are saved in a Trace's JSON."""
    return isinstance(value, int) and not isinstance(value, bool)


def _check_max_new_tokens(max_new_tokens: int) -> None:
    if not _is_int(max_new_tokens) or max_new_tokens < 1:
        raise ConfigError(f"max_new_tokens={max_new_tokens!r}; it must be an integer >= 1.")
