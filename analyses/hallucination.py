"""Which object words a text mentions, and which of them are hallucinated (not in the image).

Matching is on lower-cased words with a simple plural rule (`dogs` -> `dog`, `boxes` -> `box`)
and optional synonyms (AMBER's `relation.json` maps an object to words that count as it).
"""

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mmlens.trace import Trace
from mmlens.words import word_spans

_WORD = re.compile(r"[a-z]+(?:[-'][a-z]+)*")


def _singular(word: str) -> str:
    if len(word) > 3 and word.endswith(("ches", "shes", "xes", "sses")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


@dataclass(frozen=True)
class ObjectVocabulary:
    """Object words to look for, and synonyms that map onto them."""

    objects: frozenset[str]
    synonyms: Mapping[str, str]

    @classmethod
    def from_words(
        cls, objects: Iterable[str], synonyms: Mapping[str, Iterable[str]] | None = None
    ) -> "ObjectVocabulary":
        mapping = {alias: name for name, aliases in (synonyms or {}).items() for alias in aliases}
        return cls(frozenset(objects), mapping)

    @classmethod
    def from_amber(cls, relation_json: str | Path) -> "ObjectVocabulary":
        """AMBER's object list and its synonyms (`relation.json` from the benchmark's data/)."""
        relations = json.loads(Path(relation_json).read_text())
        return cls.from_words(relations, relations)

    def canonical(self, word: str) -> str | None:
        """The object a word names, or None."""
        for candidate in (word, _singular(word)):
            if candidate in self.objects:
                return candidate
            if candidate in self.synonyms:
                return self.synonyms[candidate]
        return None

    def mentioned(self, text: str) -> list[str]:
        """Objects named in `text`, in order of first mention."""
        found: dict[str, None] = {}
        for word in _WORD.findall(text.lower()):
            name = self.canonical(word)
            if name is not None:
                found.setdefault(name)
        return list(found)


def hallucinated_objects(
    text: str, truth: Iterable[str], vocabulary: ObjectVocabulary
) -> list[str]:
    """Objects `text` mentions that are not among the ground-truth objects (CHAIR-style)."""
    present = {vocabulary.canonical(word) or word for word in truth}
    return [name for name in vocabulary.mentioned(text) if name not in present]


WORD_COLUMNS = ["step", "word", "object", "hallucinated"]


def trace_object_words(
    trace: Trace, truth: Iterable[str], vocabulary: ObjectVocabulary
) -> pd.DataFrame:
    """One row per object word the trace generated: step (its first token), word, the object it
    names, and whether that object is hallucinated (not among `truth`)."""
    present = {vocabulary.canonical(word) or word for word in truth}
    rows = []
    for first, _, word in word_spans(list(trace.tokens)):
        name = vocabulary.canonical(word.strip().lower())
        if name is not None:
            rows.append((first, word.strip(), name, name not in present))
    return pd.DataFrame(rows, columns=WORD_COLUMNS).astype({"hallucinated": bool})


def plot_word_against_truth(
    trace: Trace,
    step: int,
    truth_ids: Mapping[str, int],
    critical_layer: int | None = None,
    mutation_layers: Iterable[int] = (),
) -> Figure:
    """The generated token's probability over layers at `step` against the first token of each
    true object (`truth_ids`: word -> token id, recorded as the trace's rivals), with the token's
    critical layer (dashed) and mutation layers (dotted; pair l sits between layers l and l+1)."""
    figure = Figure(figsize=(6, 3.2), layout="constrained")
    axis = figure.subplots()
    probs = np.exp(trace.logprob[step].astype(np.float64))
    axis.plot(trace.layers, probs, color="tab:red", lw=2, marker="o", ms=3,
              label=f"generated {trace.tokens[step].strip()!r}")  # fmt: skip
    for word, token_id in truth_ids.items():
        if token_id in trace.rival_ids:
            column = trace.rival_ids.index(token_id)
            truth = np.exp(trace.rival_logprobs[step, :, column].astype(np.float64))
            axis.plot(trace.layers, truth, lw=1.5, marker="o", ms=3, label=f"true {word!r}")
    if critical_layer is not None:
        axis.axvline(critical_layer + 0.5, color="grey", ls="--", lw=1, label="critical layer")
    for index, layer in enumerate(mutation_layers):
        axis.axvline(layer + 0.5, color="black", ls=":", lw=1.2,
                     label="mutation" if index == 0 else None)  # fmt: skip
    axis.set_ylim(0, 1.02)
    axis.set_xlabel("layer (0 = embeddings)")
    axis.set_ylabel("probability")
    axis.set_title(f"step {step}: {trace.tokens[step].strip()!r}", fontsize=10)
    axis.legend(fontsize=7)
    return figure
