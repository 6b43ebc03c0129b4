"""TransformerLens's keyword arguments on mmlens's methods.

The ones with a meaning here are parameters of the methods themselves (`prepend_bos`,
`padding_side`, `return_type`, `loss_per_token`, `attention_mask`, `stop_at_layer`,
`eos_token_id`, `use_past_kv_cache`...); `refuse` turns every other keyword into a `ConfigError`
that names it and says what to do instead, rather than a TypeError or a silent pass-through.
"""

from collections.abc import Collection, Mapping
from typing import Any

from mmlens.errors import ConfigError

_RESIDUAL = "patch the residual with a hook instead (run_with_hooks, fwd_hooks=[...])"

#: TransformerLens keywords mmlens does not take: name -> (the value that asks for nothing,
#: why it is refused and what to do instead). Passing that value is accepted.
NOT_TAKEN: Mapping[str, tuple[object, str]] = {
    "start_at_layer": (None, f"the run starts from the image and tokens; {_RESIDUAL}"),
    "labels": (None, "the loss targets are the input's own text tokens (return_type='loss')"),
    "past_key_values": (None, "generate() decodes with a KV cache of its own"),
    "past_kv_cache": (None, "generate() decodes with a KV cache of its own"),
    "pixel_values": (None, "pass the image: model(prompt, image=...) or to_tokens(..., image=...)"),
    "input_values": (None, "mmlens models take images, not audio"),
    "shortformer_pos_embed": (None, "mmlens models have no shortformer positions"),
    "tokens": (None, "pass token ids as the first argument"),
    "freq_penalty": (0.0, "no frequency penalty is implemented"),
    "repetition_penalty": (1.0, "no repetition penalty is implemented"),
    "output_logits": (False, "trace() records every step's lens at every layer"),
    "return_cache": (False, "run run_with_cache on the output of return_type='tokens'"),
    "return_input_tokens": (False, "the input tokens are model.to_tokens(prompt, image=...)"),
    "stop_strings": (None, "stop at an end-of-sequence token (eos_token_id=...)"),
    "stopping_criteria": (None, "stop at an end-of-sequence token (eos_token_id=...)"),
    "forced_bos_token_id": (None, "it is for encoder-decoder models"),
    "move_to_device": (True, "tokens are made on the model's device, with their image"),
    "truncate": (False, "mmlens never truncates a prompt (it could cut the image or question)"),
    "names_filter": (None, "it is for run_with_cache"),
}

#: Keywords `run_with_cache` hands to TransformerLens's `run_with_cache` unchanged.
CACHE_KEYWORDS = frozenset(
    {
        "names_filter",
        "device",
        "remove_batch_dim",
        "return_cache_object",
        "pos_slice",
        "incl_bwd",
        "reset_hooks_end",
        "clear_contexts",
    }
)
#: Keywords `run_with_hooks` hands to TransformerLens's `run_with_hooks` unchanged.
HOOKS_KEYWORDS = frozenset({"bwd_hooks", "reset_hooks_end", "clear_contexts", "remove_batch_dim"})

PADDING_SIDES = (None, "left", "right")


def refuse(method: str, kwargs: Mapping[str, Any], passed: Collection[str] = ()) -> dict[str, Any]:
    """The keywords in `passed` (to hand on); a `ConfigError` naming any other keyword that asks
    for something (a TransformerLens one mmlens does not take, or one nobody knows)."""
    kept = {}
    for name, value in kwargs.items():
        if name in passed:
            kept[name] = value
        elif name in NOT_TAKEN:
            neutral, why = NOT_TAKEN[name]
            if not _same(value, neutral):
                raise ConfigError(
                    f"{method}({name}={_short(value)}): TransformerLens's {name} is not taken "
                    f"by mmlens: {why}."
                )
        else:
            attribute = "__call__" if method == "model" else method
            raise ConfigError(
                f"{method}() takes no argument {name}={_short(value)}; "
                f"see help(model.{attribute}) for the ones it takes."
            )
    return kept


def check_padding_side(padding_side: object) -> None:
    if padding_side not in PADDING_SIDES:
        raise ConfigError(f"padding_side={padding_side!r}; use 'left', 'right' or None.")


def _same(value: object, neutral: object) -> bool:
    if neutral is None or isinstance(neutral, bool):
        return value is neutral
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == neutral


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
