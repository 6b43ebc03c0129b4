"""Words from generated tokens, and the token that starts a word, for real tokenizers."""

from tokenizers import SentencePieceBPETokenizer
from transformers import PreTrainedTokenizerFast

import mmlens
from mmlens.words import first_token_id, truth_token_ids, truth_words, word_spans


def test_word_spans_join_pieces_and_split_punctuation():
    tokens = ["▁a", "▁tooth", "brush", "▁on", "▁the", "▁sink", "."]
    assert word_spans(tokens) == [
        (0, 1, "a"), (1, 3, "toothbrush"), (3, 4, "on"), (4, 5, "the"), (5, 6, "sink"), (6, 7, "."),
    ]  # fmt: skip
    assert word_spans(["Ġa", "Ġdog", "gy", ","]) == [(0, 1, "a"), (1, 3, "doggy"), (3, 4, ",")]
    # a word-level tokenizer has no markers: every token is a word
    assert word_spans(["a", "red", "circle", "."]) == [
        (0, 1, "a"), (1, 2, "red"), (2, 3, "circle"), (3, 4, "."),
    ]  # fmt: skip
    assert word_spans([]) == []


def test_first_token_of_a_word_in_a_sentence():
    """On a SentencePiece tokenizer as LLaMA's ("▁" starts a word; an unknown letter is <unk>)."""
    pieces = SentencePieceBPETokenizer()
    pieces.train_from_iterator(
        ["a dog on the grass", "a toothbrush in a cup"] * 20,
        vocab_size=60,
        special_tokens=["<unk>"],
    )
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=pieces, unk_token="<unk>")
    assert first_token_id(tokenizer, "zebra") is None
    for word in ("dog", "toothbrush", "grass"):
        token = first_token_id(tokenizer, word)
        assert token is not None
        sentence = tokenizer.encode(f"a {word} here", add_special_tokens=False)
        assert token in sentence
        piece = tokenizer.convert_ids_to_tokens(token)
        assert word.startswith(piece.lstrip("▁Ġ ")) and piece.lstrip("▁Ġ ")


def test_truth_words_of_each_task_and_unknown_words():
    assert truth_words("discriminative", "Yes ") == ["yes", "Yes"]
    assert truth_words("generative", ("dog", "grass")) == ["dog", "grass"]
    shapes = mmlens.load("mmlens/shapes")  # a word-level vocabulary without "yes"
    found = truth_token_ids(shapes.tokenizer, ["circle", "yes", "circles", "square"])
    assert list(found.values()) == ["circle", "square"]
