"""Which generated words name objects, and which of those are hallucinated.

A judge takes one caption (its item id, output text, truth objects and generated words, one per
`mmlens.words.word_spans` entry) and returns `(word index, object, hallucinated)` for each object
word. Two judges:

* `VocabularyJudge`: a word names an object through a vocabulary (plural rule, synonyms) and is
  hallucinated when that object is not among the truth (CHAIR-style, `analyses.hallucination`);
* `AmberJudge`: exactly the nouns AMBER's scorer counts, hallucinated as it judges them
  (`benchmarks.amber.generative_item`), placed on the generated words by lemma. Over a run, the
  mentions' hallucination rate then equals AMBER's CHAIR, up to nouns that cannot be placed on a
  generated word (counted in `unplaced`).
"""

from collections.abc import Sequence
from dataclasses import dataclass, field

from mmlens.analyses.hallucination import ObjectVocabulary
from mmlens.benchmarks.amber import AmberData, generative_item
from mmlens.benchmarks.nlp import TextPipeline, get_pipeline
from mmlens.benchmarks.similarity import NearSynonyms, near_synonyms

Mention = tuple[int, str, bool]  # word index, object, hallucinated


@dataclass
class VocabularyJudge:
    """Object words by vocabulary; hallucinated = not among the item's truth objects."""

    vocabulary: ObjectVocabulary
    unplaced: int = 0  # (never: every object word is a generated word)
    name: str = "vocabulary"

    def __call__(
        self, item_id: int, output: str, truth: Sequence[str], words: Sequence[str]
    ) -> list[Mention]:
        present = {self.vocabulary.canonical(w) or w for w in truth}
        found = []
        for index, word in enumerate(words):
            name = self.vocabulary.canonical(word.lower())
            if name is not None:
                found.append((index, name, name not in present))
        return found


@dataclass
class AmberJudge:
    """AMBER's own judgement of each counted noun, placed on the generated words."""

    data: AmberData
    pipeline: TextPipeline = field(default_factory=get_pipeline)
    synonyms: NearSynonyms = field(default_factory=near_synonyms)
    unplaced: int = 0  # nouns AMBER counted that no generated word's lemma matched
    name: str = "AMBER"

    def __call__(
        self, item_id: int, output: str, truth: Sequence[str], words: Sequence[str]
    ) -> list[Mention]:
        judged = generative_item(
            output, self.data.annotations[item_id], self.data, self.pipeline, self.synonyms
        )
        lemmas = [self.pipeline.lemmatize(word) for word in words]
        found, start = [], 0
        for noun, hallucinated in zip(judged["nouns"], judged["noun_hallucinated"], strict=True):
            if noun not in lemmas[start:]:
                self.unplaced += 1
                continue
            index = lemmas.index(noun, start)
            found.append((index, noun, bool(hallucinated)))
            start = index + 1
        return found


Judge = VocabularyJudge | AmberJudge
