"""Which object words a text mentions, and which of them are hallucinated (not in the image).

Matching is on lower-cased words with a simple plural rule (`dogs` -> `dog`, `boxes` -> `box`)
and optional synonyms (AMBER's `relation.json` maps an object to words that count as it).
"""

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

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
