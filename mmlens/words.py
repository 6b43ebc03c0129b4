"""Words and the tokens that start them: what a run records about each item's true answer."""

from collections.abc import Iterable, Sequence
from typing import Any

WORD_MARKERS = ("▁", "Ġ", " ")  # SentencePiece, byte-level BPE, plain


def first_token_id(tokenizer: Any, word: str) -> int | None:
    """Id of the token that starts `word` in the middle of a sentence (after a space), or None
    when the tokenizer has no token for it but its unknown token."""
    prefix = tokenizer.encode("a", add_special_tokens=False)
    ids = tokenizer.encode("a " + word, add_special_tokens=False)
    if ids[: len(prefix)] == prefix:
        ids = ids[len(prefix) :]
    while ids and tokenizer.convert_ids_to_tokens(ids[0]) in WORD_MARKERS:
        ids = ids[1:]  # a lone space piece before the word (SentencePiece does this for some)
    if not ids or ids[0] == getattr(tokenizer, "unk_token_id", None):
        return None
    return int(ids[0])


def truth_words(task: str, truth: str | Sequence[str]) -> list[str]:
    """The words whose probability stands for the ground truth: the objects in the image for a
    caption, the correct answer (as written and capitalised) for a yes-no question."""
    if task == "discriminative":
        answer = str(truth).strip().lower()
        return [answer, answer.capitalize()]
    return [str(word) for word in truth]


def truth_token_ids(tokenizer: Any, words: Iterable[str]) -> dict[int, str]:
    """First-token id -> word, for the words the tokenizer knows (first word wins a shared id)."""
    found: dict[int, str] = {}
    for word in words:
        token = first_token_id(tokenizer, word)
        if token is not None:
            found.setdefault(token, word)
    return found


def starts_word(token: str) -> bool:
    """Whether a generated token string begins a new word (it carries a word marker)."""
    return token.startswith(WORD_MARKERS)


def word_spans(tokens: Sequence[str]) -> list[tuple[int, int, str]]:
    """(first step, end step, word) of generated token strings. Tokens with a word marker start a
    word, and so does punctuation; if no token has a marker (a word-level tokenizer), every token
    is a word."""
    marked = any(starts_word(token) for token in tokens)
    spans: list[tuple[int, int, str]] = []
    for step, token in enumerate(tokens):
        text = token.lstrip("".join(WORD_MARKERS))
        alone = not any(char.isalnum() for char in text)
        if not spans or not marked or starts_word(token) or alone:
            spans.append((step, step + 1, text))
        else:
            first, _, word = spans[-1]
            spans[-1] = (first, step + 1, word + text)
    return spans
