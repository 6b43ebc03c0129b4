"""Judges of object words: a vocabulary, and AMBER's scorer on its real annotations."""

from mmlens.analyses.hallucination import ObjectVocabulary
from mmlens.analyses.judges import AmberJudge, VocabularyJudge
from mmlens.benchmarks.amber import AmberData, generative_item
from mmlens.benchmarks.similarity import near_synonyms


def test_vocabulary_judge_uses_plurals_and_synonyms():
    vocabulary = ObjectVocabulary.from_words(["dog", "person"], {"person": ["man"]})
    judge = VocabularyJudge(vocabulary)
    words = ["two", "Dogs", "and", "a", "man"]
    assert judge(1, " ".join(words), ["person"], words) == [(1, "dog", True), (4, "person", False)]


def test_amber_judge_is_amber_on_every_noun_it_can_place(amber_dir, pipeline):
    data = AmberData.load(amber_dir)
    judge = AmberJudge(data, pipeline, near_synonyms("exact"))
    text = "A person walks on the road near a lake with dogs and a bird in the sky ."
    words = text.split()
    found = judge(1, text, data.annotations[1]["truth"], words)
    judged = generative_item(text, data.annotations[1], data, pipeline, near_synonyms("exact"))
    assert [noun for _, noun, _ in found] == judged["nouns"]
    assert [h for _, _, h in found] == judged["noun_hallucinated"]
    assert {words[i] for i, _, h in found if h} == {"dogs", "bird"}  # AMBER image 1: no animals
    assert judge.unplaced == 0
    # a noun no generated word carries (here: the words were cut short) is counted, not guessed
    judge(1, text, data.annotations[1]["truth"], words[:6])
    assert judge.unplaced == len(judged["nouns"]) - 2  # person, road remain placeable
