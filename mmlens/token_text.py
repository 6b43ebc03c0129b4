"""How tokens read: the text each token id decodes to, for every tokenizer family.

`convert_ids_to_tokens` gives a tokenizer's internal symbols ("ĠThere" in byte-level BPE, as
SmolLM2, Qwen and Gemma use; "▁There" in SentencePiece), which mean nothing to a reader.
Everything mmlens shows a person (traces, tables, reports, `to_str_tokens`) holds the decoded
text instead, with the leading space as a plain space (" There").
"""

from collections.abc import Iterable
from typing import Any

import numpy as np

#: Characters shown escaped where a token is a label (figure titles, table rows, the terminal).
_ESCAPES = str.maketrans({"\n": "\\n", "\r": "\\r", "\t": "\\t"})


def token_texts(tokenizer: Any, ids: Iterable[int] | np.ndarray) -> list[str]:
    """The text of each token id, leading space included (" There", not "ĠThere").

    Each token is decoded after a fixed anchor token and the anchor's own text removed, because
    SentencePiece tokenizers drop a leading space at the start of a text. Special tokens read as
    written ("</s>"); a token holding part of a multi-byte character reads as "\\ufffd", as in
    the decoded text.
    """
    ids = [int(i) for i in ids]
    unique = sorted(set(ids))
    if not unique:
        return []
    anchor = _anchor_id(tokenizer)
    options = {"skip_special_tokens": False, "clean_up_tokenization_spaces": False}
    base = tokenizer.decode([anchor], **options)
    decoded = tokenizer.batch_decode([[anchor, i] for i in unique], **options)
    texts = {}
    for token, text in zip(unique, decoded, strict=True):
        texts[token] = text[len(base) :] if text.startswith(base) else _alone(tokenizer, token)
    return [texts[i] for i in ids]


def token_text_array(tokenizer: Any, ids: np.ndarray) -> np.ndarray:
    """`token_texts` over an integer array of any shape, as a string array of that shape."""
    flat = token_texts(tokenizer, np.asarray(ids).ravel().tolist())
    return np.asarray(flat, dtype=str).reshape(np.shape(ids))


def shown(token: str) -> str:
    """A token as a one-line label: newlines and tabs written as escapes."""
    return token.translate(_ESCAPES)


def _anchor_id(tokenizer: Any) -> int:
    """A token that decodes to plain letters and joins nothing after it."""
    ids = tokenizer.encode("a", add_special_tokens=False)
    return int(ids[-1]) if ids else int(tokenizer.unk_token_id or 0)


def _alone(tokenizer: Any, token: int) -> str:
    return str(
        tokenizer.decode([token], skip_special_tokens=False, clean_up_tokenization_spaces=False)
    )
