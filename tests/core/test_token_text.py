"""Tokens are shown as the text they decode to, for byte-level BPE (SmolLM2, as Qwen and Gemma
use), SentencePiece (LLaMA) and word-level tokenizers alike: never "ĠThere" or "▁There"."""

import re

import numpy as np
import pytest

from mmlens.errors import TokenError
from mmlens.report.build import ReportSettings, write_report
from mmlens.token_text import shown, token_text_array, token_texts
from mmlens.zoo.priors.scenes import Scene, SceneObject, draw_scene
from mmlens.zoo.priors.text import CAPTION_PROMPT
from mmlens.zoo.tiny_original import build_tiny_original_llava

TEXT = "There is a red banana.\nA snowman, naïve and white."
MARKERS = re.compile("[ĠĊ▁]")


@pytest.fixture(scope="module")
def byte_level(smollm2):
    return smollm2[1]


@pytest.fixture(scope="module")
def sentencepiece(tmp_path_factory):
    from transformers import AutoTokenizer

    folders = build_tiny_original_llava(tmp_path_factory.mktemp("original"))
    return AutoTokenizer.from_pretrained(folders.original)


@pytest.mark.slow
def test_byte_level_tokens_read_as_text(byte_level):
    ids = byte_level.encode(TEXT, add_special_tokens=False)
    assert any(MARKERS.search(piece) for piece in byte_level.convert_ids_to_tokens(ids))
    texts = token_texts(byte_level, ids)
    assert "".join(texts) == byte_level.decode(ids) == TEXT
    assert " red" in texts and "\n" in texts and not any(MARKERS.search(t) for t in texts)
    special = byte_level.convert_tokens_to_ids("<|im_end|>")
    assert token_texts(byte_level, [special]) == ["<|im_end|>"]
    emoji = byte_level.encode(" 😀", add_special_tokens=False)  # one character, several tokens
    assert len(emoji) > 1 and "\ufffd" in "".join(token_texts(byte_level, emoji))


def test_sentencepiece_tokens_keep_their_leading_space(sentencepiece):
    ids = sentencepiece.encode("describe this image in detail .", add_special_tokens=False)
    assert sentencepiece.convert_ids_to_tokens(ids)[0].startswith("▁")
    texts = token_texts(sentencepiece, ids)
    assert texts[0].startswith(" ") and not any("▁" in t for t in texts)
    assert "".join(texts).strip() == sentencepiece.decode(ids)


def test_arrays_and_labels(sentencepiece):
    ids = np.array(sentencepiece.encode("a red circle", add_special_tokens=False))
    grid = np.stack([ids, ids[::-1]])
    texts = token_text_array(sentencepiece, grid)
    assert texts.shape == grid.shape and texts[1, 0] == token_texts(sentencepiece, ids)[-1]
    assert shown(" a\nb\t") == " a\\nb\\t"
    assert token_texts(sentencepiece, []) == []


@pytest.mark.slow
def test_priors_model_traces_and_reports_text_not_symbols(priors_model, tmp_path):
    """The model built on SmolLM2: its trace, tables, top-k, `to_str_tokens` and report."""
    scene = Scene((SceneObject("banana", "yellow", "middle", 11.0),))
    image = draw_scene(scene)
    trace = priors_model.trace(image, CAPTION_PROMPT, max_new_tokens=12, progress=False)
    assert "".join(trace.tokens) == trace.text + "<|im_end|>"  # the end token is recorded too
    assert not any(MARKERS.search(t) for t in trace.tokens)
    assert not any(MARKERS.search(t) for t in trace.topk_tokens.ravel())
    assert not trace.to_frame().token.str.contains(MARKERS).any()
    assert any(t.startswith(" ") for t in trace.tokens)
    with pytest.raises(TokenError, match="splits into") as refused:
        priors_model.to_single_token("There is a banana")
    assert not MARKERS.search(str(refused.value)) and "' banana'" in str(refused.value)
    pieces = priors_model.to_str_tokens(CAPTION_PROMPT, image=image)
    assert "<image 0,0>" in pieces and not any(MARKERS.search(p) for p in pieces)
    page = write_report(
        priors_model,
        image,
        tmp_path / "report",
        ReportSettings(prompt=CAPTION_PROMPT, max_new_tokens=8),
        progress=False,
    )
    assert not MARKERS.search(page.read_text(encoding="utf-8"))
