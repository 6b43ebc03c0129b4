"""What a TransformerLens user reaches for on a model, on `HookedLVLM`: thin delegation to the
bridge (cfg, weights, hooks) and tokens that carry their image (`mmlens.tokens`)."""

from collections.abc import Callable
from typing import Any, Literal, cast

import torch
from jaxtyping import Float
from torch import Tensor

from mmlens.adapters.base import original_module
from mmlens.errors import ConfigError, PromptError
from mmlens.inputs import ImageLike, ModelInputs
from mmlens.preparing import check_left_padding
from mmlens.tl_arguments import check_padding_side, refuse
from mmlens.token_text import token_texts
from mmlens.tokens import ImageTokens


def _loaded(module: torch.nn.Module, read: Callable[[], Tensor]) -> Tensor:
    """`read()` of `module`'s weights; offloaded by a device map, they sit on the meta device
    until Accelerate loads them, so they are loaded for the read and copied."""
    if not any(weight.device.type == "meta" for weight in module.parameters()):
        return read()
    from accelerate.utils import align_module_device

    with align_module_device(module):
        return read().clone()


class TransformerLensSurface:
    """TransformerLens's model attributes and token helpers; mixed into `HookedLVLM`."""

    adapter: Any
    bridge: Any
    tokenizer: Any
    prepare: Callable[..., ModelInputs]  # from `preparing.InputPreparation`
    _inputs: Callable[..., ModelInputs]

    # -- configuration and weights (TransformerLens names, the bridge's values) -----------------
    @property
    def cfg(self) -> Any:
        """TransformerLens's config of the language model (`n_layers`, `d_model`, `n_heads`...)."""
        return self.bridge.cfg

    @property
    def W_U(self) -> Float[Tensor, "d_model d_vocab"]:
        return _loaded(self.adapter.unembed(), lambda: self.bridge.W_U)

    @property
    def b_U(self) -> Float[Tensor, " d_vocab"]:
        return _loaded(self.adapter.unembed(), lambda: self.bridge.b_U)

    @property
    def W_E(self) -> Float[Tensor, "d_vocab d_model"]:
        embedding = original_module(self.adapter.hf_model.get_input_embeddings())
        return _loaded(embedding, lambda: self.bridge.W_E)

    @property
    def blocks(self) -> Any:
        return self.bridge.blocks

    def add_hook(
        self,
        name: str | Callable[[str], bool],
        hook: Callable[..., Any],
        dir: Literal["fwd", "bwd"] = "fwd",
        is_permanent: bool = False,
    ) -> None:
        """Attach a hook that stays until `reset_hooks` (TransformerLens's `add_hook`)."""
        named = named_hook(name, hook, self.bridge.hook_dict)
        self.bridge.add_hook(name, named, dir=dir, is_permanent=is_permanent)

    def reset_hooks(
        self,
        clear_contexts: bool = True,
        direction: Literal["fwd", "bwd", "both"] = "both",
        including_permanent: bool = False,
    ) -> None:
        """Remove hooks added with `add_hook` (TransformerLens's `reset_hooks`)."""
        self.bridge.reset_hooks(
            clear_contexts=clear_contexts,
            direction=direction,
            including_permanent=including_permanent,
        )

    # -- tokens ---------------------------------------------------------------------------------
    def to_tokens(
        self,
        input: str | list[str],
        image: ImageLike | None | list[ImageLike | None] = None,
        *,
        prepend_bos: bool | None = None,
        padding_side: str | None = None,
        chat_template: bool | None = None,
        image_mode: str | None = None,
        **unsupported: Any,
    ) -> ImageTokens:
        """Token ids [batch, pos] of a prompt (with the chat template and its image, as
        `prepare` builds them) that carry their image: pass them to `run_with_cache`,
        `run_with_hooks`, calling the model, or TransformerLens functions that do.

        As in TransformerLens, `prepend_bos=False` tokenizes the text as given, for a piece to
        append (such as an answer): no BOS and no chat template (see `prepare`). A batch of
        prompts is left-padded (`padding_side="right"` is refused)."""
        refuse("to_tokens", unsupported)
        _check_not_a_flag(image)
        check_padding_side(padding_side)
        inputs = self.prepare(
            image,
            input,
            chat_template=chat_template,
            image_mode=image_mode,
            prepend_bos=prepend_bos,
        )
        check_left_padding(padding_side, inputs)
        return ImageTokens.wrap(inputs)

    def to_str_tokens(
        self,
        input: str | list[str] | Tensor | ModelInputs,
        image: ImageLike | None = None,
        *,
        prepend_bos: bool | None = None,
        padding_side: str | None = None,
        name_patches: bool = True,
        **unsupported: Any,
    ) -> list[str] | list[list[str]]:
        """The text of each token of one sequence (" There", leading space kept, as
        TransformerLens shows tokens), or of each prompt of a list; image positions are named
        by their patch ("<image r,c>": row and column in the image grid) unless `name_patches`
        is False. `prepend_bos` applies to prompts, as in `to_tokens`."""
        refuse("to_str_tokens", unsupported)
        _check_not_a_flag(image)
        check_padding_side(padding_side)
        if isinstance(input, list):
            return [
                cast(
                    list[str],
                    self.to_str_tokens(
                        item, image, prepend_bos=prepend_bos, name_patches=name_patches
                    ),
                )
                for item in input
            ]
        if isinstance(input, Tensor) and image is not None:
            raise PromptError("Token ids already hold their prompt and image; pass them alone.")
        if isinstance(input, ModelInputs):
            inputs = input
        elif isinstance(input, Tensor):
            ids = input.reshape(1) if input.dim() == 0 else input  # one token id, as TL takes
            inputs = self._inputs(ids, None, None)  # the check every token input gets
        else:
            inputs = self._inputs(image, input, None, prepend_bos=prepend_bos)
        if inputs.batch_size != 1:
            raise ConfigError(
                f"to_str_tokens takes one sequence; these tokens have {inputs.batch_size} rows "
                "(index a row first)."
            )
        pieces = token_texts(self.tokenizer, inputs.input_ids[0].tolist())
        if name_patches:
            positions = torch.nonzero(inputs.image_mask[0]).flatten().tolist()
            names = patch_names(len(positions), inputs.patch_grid(0))
            for position, name in zip(positions, names, strict=True):
                pieces[position] = name
        return pieces

    def to_string(self, tokens: Tensor | list[int]) -> str | list[str]:
        """Decode token ids: one string for a 1-D input, one per row for [batch, pos]."""
        if isinstance(tokens, Tensor) and tokens.dim() == 2:
            return [self.tokenizer.decode(row.tolist()) for row in tokens]
        ids = tokens.tolist() if isinstance(tokens, Tensor) else list(tokens)
        return self.tokenizer.decode(ids)


RETURN_TYPES = ("logits", "loss", "both", None)


def check_return_type(return_type: str | None) -> None:
    if return_type not in RETURN_TYPES:
        raise ConfigError(f"return_type={return_type!r}; use 'logits', 'loss', 'both' or None.")


def forward_output(
    logits: Float[Tensor, "batch pos d_vocab"],
    inputs: ModelInputs,
    return_type: str | None,
    loss_per_token: bool = False,
) -> Any:
    """What a forward returns for TransformerLens's `return_type` and `loss_per_token`."""
    if return_type == "logits":
        return logits
    if return_type is None:
        return None
    loss = next_token_loss(logits, inputs, per_token=loss_per_token)
    return loss if return_type == "loss" else (logits, loss)


def next_token_loss(
    logits: Float[Tensor, "batch pos d_vocab"], inputs: ModelInputs, per_token: bool = False
) -> Float[Tensor, ""] | Float[Tensor, "batch pos-1"]:
    """Mean cross-entropy of predicting each next token, over text targets (not image tokens)
    predicted from a real position (neither is padding), as TransformerLens's
    `return_type="loss"` does for text; with `per_token`, each position's loss [batch, pos - 1],
    0 where it is not counted (as TransformerLens zeroes masked targets)."""
    targets = inputs.input_ids[:, 1:]
    real = inputs.attention_mask.bool()
    keep = real[:, :-1] & real[:, 1:] & ~inputs.image_mask[:, 1:]
    if not keep.any():
        raise ConfigError("No text token follows another: there is nothing to predict a loss on.")
    logprobs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    picked = logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    if per_token:
        return -picked.masked_fill(~keep, 0.0)
    return -(picked[keep]).mean()


def _check_not_a_flag(image: object) -> None:
    """TransformerLens's second positional argument is `prepend_bos`; mmlens's is the image."""
    if isinstance(image, bool):
        raise ConfigError(
            f"The image is {image}: the second argument is the image here (TransformerLens's is "
            f"prepend_bos); pass prepend_bos={image} by keyword."
        )


class NamedHook:
    """The hook point a hook function receives, under the name the hook was registered with.

    The bridge resolves an alias such as `blocks.1.hook_resid_post` to its own hook point
    (`blocks.1.hook_out`), whose `name` is then the internal one; users (and TransformerLens
    code that reads `hook.name` or `hook.layer()`) expect the name they asked for."""

    def __init__(self, hook: Any, name: str) -> None:
        self._hook = hook
        self.name = name

    def layer(self) -> int:
        """The block index in the name, as TransformerLens's `HookPoint.layer`."""
        parts = self.name.split(".")
        if len(parts) < 2 or parts[0] != "blocks" or not parts[1].isdigit():
            raise ValueError(f"Hook {self.name} is not inside a block.")
        return int(parts[1])

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._hook, attribute)


def named_hook(
    name: Any, function: Callable[..., Any], hook_dict: dict[str, Any] | None = None
) -> Callable[..., Any]:
    """`function` called with a `NamedHook`: under `name`, or for a name filter under the first
    name in `hook_dict` that the filter accepts for that hook point."""
    names: dict[int, list[str]] = {}
    if not isinstance(name, str):
        for key, point in (hook_dict or {}).items():
            if name(key):
                names.setdefault(id(point), []).append(key)

    def call(activation: Any, hook: Any, *args: Any, **kwargs: Any) -> Any:
        shown = name if isinstance(name, str) else names.get(id(hook), [hook.name])[0]
        return function(activation, NamedHook(hook, shown), *args, **kwargs)

    return call


def patch_names(n_image: int, grid: tuple[int, int] | None) -> list[str]:
    """Names of `n_image` image positions: "<image r,c>" over their patch `grid`, with
    "<image cls>" first when there is one more position (a kept CLS token); numbered without a
    grid (several images, tiles with newline tokens)."""
    if grid is None or grid[0] * grid[1] not in (n_image, n_image - 1):
        return [f"<image {i}>" for i in range(n_image)]
    names = [f"<image {r},{c}>" for r in range(grid[0]) for c in range(grid[1])]
    return names if len(names) == n_image else ["<image cls>", *names]
