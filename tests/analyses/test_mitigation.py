"""Skip as mitigation: planted original and variant runs with known changes."""

import json

import pandas as pd
import pytest
from _support import planted_token_rows

from mmlens.analyses.hallucination import ObjectVocabulary
from mmlens.analyses.mitigation import mitigation_table, plot_mitigation
from mmlens.analyses.skip import text_similarity


def _run(captions):
    """A run of caption items: (id, truth, words); each word one token."""
    items, tokens = [], []
    for order, (item_id, truth, words) in enumerate(captions):
        items.append((order, item_id, "generative", "ok", json.dumps(truth), " ".join(words)))
        tokens += [planted_token_rows(order, step, w) for step, w in enumerate(words)]
    columns = ["order", "id", "task", "status", "truth", "output"]
    return pd.DataFrame(items, columns=columns), pd.concat(tokens, ignore_index=True)


def test_planted_variant_removes_one_hallucination_and_adds_another():
    original = _run([(1, ["grass"], ["a", "dog", "on", "grass"]), (2, ["cat"], ["a", "cat"])])
    variant = _run([(1, ["grass"], ["a", "cat", "on", "grass"]), (2, ["cat"], ["a", "cat"])])
    vocabulary = ObjectVocabulary.from_words(["dog", "cat", "grass"])
    table = mitigation_table(
        original,
        {"skip.2": (variant, [6, 7])},
        vocabulary,
        metrics=lambda items: {"n_scored": len(items)},
        n_resamples=300,
    ).set_index("setting")
    assert table.loc["original", "skip_blocks"] == () and table.loc["skip.2", "skip_blocks"] == (
        6,
        7,
    )
    assert table.loc["skip.2", "changed"] == 0.5
    expected = (text_similarity("a dog on grass", "a cat on grass") + 1) / 2
    assert table.loc["skip.2", "similarity"] == pytest.approx(expected)
    assert table.loc["original", "hallucination_rate"] == pytest.approx(1 / 3)
    assert table.loc["skip.2", "hallucination_rate"] == pytest.approx(1 / 3)
    assert table.loc["skip.2", "rate_change"] == 0
    assert (table.loc["skip.2", "removed"], table.loc["skip.2", "added"]) == (1, 1)
    assert (table.n_scored == 2).all()
    plot_mitigation(table.reset_index())


def test_only_items_that_ran_everywhere_are_compared():
    original = _run([(1, ["grass"], ["a", "dog"]), (2, ["cat"], ["a", "cat"])])
    items, tokens = _run([(1, ["grass"], ["a", "grass"]), (2, ["cat"], ["a", "cat"])])
    items.loc[1, "status"] = "failed"
    table = mitigation_table(
        original, {"mine": ((items, tokens), [3])}, ObjectVocabulary.from_words(["dog", "cat"])
    ).set_index("setting")
    assert (table["items"] == 1).all()
    assert table.loc["original", "hallucination_rate"] == 1.0
    assert table.loc["mine", "object_words"] == 0 and pd.isna(
        table.loc["mine", "hallucination_rate"]
    )
    assert table.loc["mine", "removed"] == 1
