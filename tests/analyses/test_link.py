"""The hallucination link over run tables: planted tables with known answers, and a real run of
the shipped model checked against an independent word count."""

import json

import numpy as np
import pandas as pd
import pytest
from _support import planted_token_rows

from mmlens.analyses.hallucination import ObjectVocabulary, hallucinated_objects
from mmlens.analyses.judges import AmberJudge
from mmlens.analyses.link import (
    WORD_DIFFERENCE,
    answer_stages,
    link_summary,
    mutation_histogram,
    object_mentions,
    plot_mutation_layers,
    summary_notes,
)
from mmlens.benchmarks.amber import AmberData, score_amber
from mmlens.benchmarks.shapes import read_shapes, write_shapes_benchmark
from mmlens.benchmarks.similarity import near_synonyms
from mmlens.errors import TraceFormatError
from mmlens.runs import RunSettings, RunStore, run_items
from mmlens.zoo.shapes.scenes import SHAPES


@pytest.fixture
def planted():
    items = pd.DataFrame(
        [
            (0, 10, "generative", "c", "ok", ["grass"], "a dog on grass ."),
            (1, 11, "generative", "c", "ok", ["cat"], "a cats ."),
            (2, 12, "discriminative", "e", "ok", "yes", "No"),
            (3, 13, "discriminative", "e", "ok", "yes", "Yes"),
            (4, 14, "generative", "c", "failed", ["cat"], None),
        ],
        columns=["order", "id", "task", "kind", "status", "truth", "output"],
    )
    items["truth"] = items.truth.map(json.dumps)
    grass = np.r_[np.full(7, 0.5), 0.05, 0.05]  # a true object ahead until the dog's mutation
    rows = [
        planted_token_rows(0, 0, "a"),
        planted_token_rows(0, 1, "dog", spike=6, prob=0.01, after=0.9, truth=grass),
        planted_token_rows(0, 2, "on"),
        planted_token_rows(0, 3, "grass", truth=0.8),
        planted_token_rows(0, 4, "."),
        planted_token_rows(1, 0, "a"),
        planted_token_rows(1, 1, "cats", truth=0.8),
        planted_token_rows(1, 2, "."),
        planted_token_rows(2, 0, "No", spike=5, prob=0.2, after=0.7, truth=0.6),
        planted_token_rows(3, 0, "Yes", truth=0.8),
    ]
    return items, pd.concat(rows[::-1], ignore_index=True)


def test_planted_mentions_and_answers(planted):
    items, tokens = planted
    vocabulary = ObjectVocabulary.from_words(["dog", "grass", "cat"])
    mentions = object_mentions(items, tokens, vocabulary)
    assert mentions[["id", "step", "object", "hallucinated"]].values.tolist() == [
        [10, 1, "dog", True], [10, 3, "grass", False], [11, 1, "cat", False],
    ]  # fmt: skip
    dog = mentions.iloc[0]
    assert dog.critical_layer == 2 and dog.mutation_layers == (6,) and dog.first_mutation == 6
    assert dog.truth_ahead_before_mutation and dog.last_truth_ahead == 6
    assert dog.prob_final == pytest.approx(0.9) and dog.truth_prob_final == pytest.approx(0.05)
    assert not mentions.has_mutation.iloc[1:].any()
    assert mentions.truth_ahead_before_mutation.iloc[1:].isna().all()
    answers = answer_stages(items, tokens)
    assert answers[["id", "answer", "wrong", "has_mutation"]].values.tolist() == [
        [12, "no", True, True], [13, "yes", False, False],
    ]  # fmt: skip
    assert answers.first_mutation.tolist()[0] == 5 and answers.last_truth_ahead.iloc[0] == 5
    summary = link_summary(mentions, answers, n_resamples=500).set_index("statistic")
    assert summary.loc["P(mutation | hallucinated)", "estimate"] == 1.0
    assert summary.loc["P(mutation | correct)", "estimate"] == 0.0
    difference = summary.loc["P(mutation | hallucinated) - P(mutation | correct)"]
    assert difference.estimate == 1.0 and difference.n == "1, 2" and difference["items"] == 2
    ahead = "P(true object ahead at first mutation | hallucinated, mutates)"
    assert summary.loc[ahead, "estimate"] == 1.0
    assert summary.loc["P(mutation | wrong answer)", "estimate"] == 1.0
    histogram = mutation_histogram(mentions)
    assert histogram.values.tolist() == [[True, 6, 1, 1.0]]


def test_empty_tables_give_empty_results(planted):
    items, tokens = planted
    none = tokens.iloc[:0]
    vocabulary = ObjectVocabulary.from_words(["zebra"])
    assert object_mentions(items, tokens, vocabulary).empty
    assert answer_stages(items, none).empty
    (row,) = link_summary(object_mentions(items, none, vocabulary)).itertuples()
    assert np.isnan(row.estimate) and row.note == "no object words in the run's 2 captions"
    with pytest.raises(TraceFormatError, match="lacks columns"):
        object_mentions(items.drop(columns="truth"), tokens, vocabulary)


def test_rates_a_run_cannot_give_say_why(planted):
    """No hallucinated word (or no correct one): NaN rates with a note naming the missing group,
    never a silent NaN row with n = 0."""
    items, tokens = planted
    mentions = object_mentions(items, tokens, ObjectVocabulary.from_words(["grass", "cat"]))
    assert len(mentions) and not mentions.hallucinated.any()
    answers = answer_stages(items, tokens)
    summary = link_summary(mentions, answers, n_resamples=200).set_index("statistic")
    missing = summary.loc["P(mutation | hallucinated)"]
    assert np.isnan(missing.estimate) and missing.n == "0"
    assert missing.note == "no hallucinated object words in this run"
    assert summary.loc["P(mutation | correct)", "note"] == ""
    assert summary.loc["P(mutation | correct)", "estimate"] == 0.0
    assert summary.loc[WORD_DIFFERENCE, "note"] == (
        "needs both groups: no hallucinated object words in this run"
    )
    assert summary.loc["mean first mutation layer | correct", "note"] == (
        "needs mutating words of both kinds: 0 hallucinated and 0 correct words mutate"
    )
    ahead = "P(true object ahead at first mutation | hallucinated, mutates)"
    assert summary.loc[ahead, "note"].startswith("no hallucinated word mutates")
    assert summary.loc["P(mutation | wrong answer)", "note"] == ""  # the answers have both
    unavailable = summary[summary.estimate.isna()]
    assert (unavailable.note != "").all() and (summary[summary.estimate.notna()].note == "").all()
    notes = summary_notes(summary.reset_index())
    assert len(notes) == len(unavailable) == 6
    assert notes[0] == "P(mutation | hallucinated): n/a, no hallucinated object words in this run"
    only_wrong = answers[answers.wrong.astype(bool)]
    table = link_summary(mentions, only_wrong, n_resamples=200).set_index("statistic")
    assert table.loc["P(mutation | right answer)", "note"] == "no right yes-no answers in this run"


def test_a_real_run_agrees_with_an_independent_word_count(shapes_model, pipeline, tmp_path):
    bench = write_shapes_benchmark(tmp_path / "bench", n_scenes=16)
    items = [item for item in read_shapes(bench) if item.task == "generative"]
    store = RunStore.open(tmp_path / "run", {"test": 1})
    run_items(shapes_model, items, store, RunSettings(max_new_tokens=40), progress=False)
    table, tokens = store.merge()
    vocabulary = ObjectVocabulary.from_words(SHAPES)
    mentions = object_mentions(table, tokens, vocabulary)
    for row in table.itertuples():
        truth = json.loads(row.truth)
        mine = mentions[mentions.order == row.order]
        assert set(mine[mine.hallucinated].object) == set(
            hallucinated_objects(row.output, truth, vocabulary)
        )
        assert set(mine.object) == set(vocabulary.mentioned(row.output))
    assert mentions.hallucinated.any() and (~mentions.hallucinated).any()
    correct = mentions[~mentions.hallucinated]
    # a correct word is its own best true object, so the truth's final probability is the word's
    assert (correct.truth_prob_final >= correct.prob_final - 1e-6).all()
    # AMBER's own judgement, placed on the generated words, gives exactly AMBER's CHAIR
    data = AmberData.load(bench)
    judge = AmberJudge(data, pipeline, near_synonyms("exact"))
    judged = object_mentions(table, tokens, judge)
    responses = list(zip(table.id, table.output, strict=True))
    scores = score_amber(responses, data, pipeline, near_synonyms("exact"))
    assert judged.attrs["unplaced"] == 0 and len(judged) == scores.items.n_nouns.sum()
    assert judged.hallucinated.mean() == pytest.approx(scores.metrics["chair"])
    for row in scores.items.itertuples():
        mine = judged[(judged.id == row.id) & judged.hallucinated].object
        assert sorted(mine) == sorted(row.hallucinated)
    summary = link_summary(mentions, n_resamples=500)
    assert (summary.low <= summary.estimate).all() and (summary.estimate <= summary.high).all()
    plot_mutation_layers(mentions).savefig(tmp_path / "link.png")
