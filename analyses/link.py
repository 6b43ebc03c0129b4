"""The mutation-layer link to hallucination, over a data-set run (`mmlens run`'s tables).

`object_mentions`: one row per object word a caption generates, hallucinated or not (as a judge
from `analyses.judges` decides: AMBER's scorer, or a vocabulary), with its stages
(`analyses.stages`, on the word's first token) and its probability against the best-supported
true object's (the run's `truth_logprob`).
`answer_stages`: the same for yes-no answers (the first generated token).
`link_summary`: the rates compared, with bootstrap intervals that resample items, since words of
one caption are not independent. Layer numbers: see `analyses.stages` (a pair is labelled by its
first layer).
"""

import json
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from mmlens.analyses.hallucination import ObjectVocabulary
from mmlens.analyses.intervals import Interval, clustered_rates
from mmlens.analyses.judges import Judge, VocabularyJudge
from mmlens.analyses.stages import DEFAULT_PARAMS, PAIR_NOTE, StageParams, frame_stages
from mmlens.benchmarks.amber import yes_no
from mmlens.errors import TraceFormatError
from mmlens.words import word_spans

STAGE_FIELDS = ["critical_layer", "has_mutation", "mutation_layers", "stable_jsd"]


ITEM_FIELDS = ("order", "id", "task", "status", "truth", "output")


def _check_items(items: pd.DataFrame) -> None:
    """A run's items table (`mmlens run`'s items.parquet) has what the link reads."""
    if missing := [c for c in ITEM_FIELDS if c not in items.columns]:
        raise TraceFormatError(
            f"The items table lacks columns {missing}; pass a run's items.parquet "
            "(`mmlens.runs.read_run`)."
        )


def _per_token(tokens: pd.DataFrame, params: StageParams) -> pd.DataFrame:
    """Stages and the layer-wise probabilities of every generated token, keyed by (order, step)."""
    ordered = tokens.sort_values(["order", "step", "layer"])
    stages = frame_stages(ordered, params).set_index(["order", "step"])  # checks the layers
    if stages.empty:
        return stages.assign(token=[], prob=[], truth_prob=[], layers=[])
    layers = np.sort(ordered.layer.unique())
    shape = (-1, len(layers))
    truth = ordered.get("truth_logprob", pd.Series(np.nan, index=ordered.index))
    stages["token"] = ordered.token.to_numpy()[:: len(layers)]
    stages["prob"] = list(ordered.prob.to_numpy().reshape(shape))
    stages["truth_prob"] = list(np.exp(truth.to_numpy(dtype=float)).reshape(shape))
    stages["layers"] = [layers] * len(stages)
    return stages


def _against_truth(row: pd.Series) -> dict:
    """Where the true object's probability stood against the word's."""
    prob, truth, layers = row.prob, row.truth_prob, row.layers
    if np.isnan(truth).all():
        return {"last_truth_ahead": None, "truth_ahead_before_mutation": None}
    ahead = layers[truth > prob]
    before = None
    if row.has_mutation:
        column = int(np.searchsorted(layers, row.mutation_layers[0]))
        before = bool(truth[column] > prob[column])
    return {
        "last_truth_ahead": int(ahead.max()) if ahead.size else None,
        "truth_ahead_before_mutation": before,
    }


def object_mentions(
    items: pd.DataFrame,
    tokens: pd.DataFrame,
    judge: ObjectVocabulary | Judge,
    params: StageParams = DEFAULT_PARAMS,
) -> pd.DataFrame:
    """One row per object word generated in each caption (generative items that ran).

    `judge` decides which words name objects and which are hallucinated: an `ObjectVocabulary`
    (CHAIR-style) or a judge from `analyses.judges` (`AmberJudge`: as AMBER's scorer counts).
    Columns: order, id, step (the word's first token), word, object, hallucinated, the token's
    stages (critical_layer, has_mutation, mutation_layers, first_mutation, stable_jsd), prob_final
    and truth_prob_final (the best true object's), last_truth_ahead (last layer where a true
    object was more probable than the word) and truth_ahead_before_mutation (at the first
    mutation's first layer; None without a mutation). `frame.attrs["unplaced"]` counts object
    nouns the judge found in a text but could not place on a generated word, and
    `frame.attrs["captions"]` the captions read.
    """
    _check_items(items)
    if isinstance(judge, ObjectVocabulary):
        judge = VocabularyJudge(judge)
    unplaced_before = judge.unplaced
    captions = items[(items.task == "generative") & (items.status == "ok")]
    per_token = _per_token(tokens[tokens.order.isin(captions.order)], params)
    rows = []
    for item in captions.itertuples():
        if item.order not in per_token.index:
            continue
        steps = per_token.loc[item.order]
        spans = word_spans(steps.token.tolist())
        words = [word for _, _, word in spans]
        for index, name, hallucinated in judge(item.id, item.output, json.loads(item.truth), words):
            first = spans[index][0]
            token = steps.loc[first]
            rows.append(
                {
                    "order": item.order,
                    "id": item.id,
                    "step": first,
                    "word": words[index],
                    "object": name,
                    "hallucinated": hallucinated,
                    **{field: token[field] for field in STAGE_FIELDS},
                    "first_mutation": token.mutation_layers[0] if token.has_mutation else None,
                    "prob_final": float(token.prob[-1]),
                    "truth_prob_final": float(token.truth_prob[-1]),
                    **_against_truth(token),
                }
            )
    frame = _typed(pd.DataFrame(rows, columns=MENTION_COLUMNS))
    frame.attrs["unplaced"] = judge.unplaced - unplaced_before
    frame.attrs["judge"] = judge.name
    frame.attrs["captions"] = len(captions)
    return frame


MENTION_COLUMNS = [
    "order", "id", "step", "word", "object", "hallucinated", *STAGE_FIELDS, "first_mutation",
    "prob_final", "truth_prob_final", "last_truth_ahead", "truth_ahead_before_mutation",
]  # fmt: skip


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    for column in ("critical_layer", "first_mutation", "last_truth_ahead"):
        if column in frame:
            frame[column] = frame[column].astype("Int64")
    for column in ("hallucinated", "has_mutation"):
        if column in frame:
            frame[column] = frame[column].astype(bool)
    for column in ("wrong", "truth_ahead_before_mutation"):  # None: not an answer / no mutation
        if column in frame:
            frame[column] = frame[column].astype("boolean")
    return frame


def answer_stages(
    items: pd.DataFrame,
    tokens: pd.DataFrame,
    params: StageParams = DEFAULT_PARAMS,
    rule: str = "pope",
) -> pd.DataFrame:
    """One row per yes-no item that ran: its answer (`rule`: "pope" or "amber", as scored), whether
    it is wrong (a hallucination; None when the reply is not a yes-no answer under `rule`), and
    the stages of the answer's first token, with
    last_truth_ahead: the last layer where the correct answer was more probable than the one
    given (None if never)."""
    _check_items(items)
    questions = items[(items.task == "discriminative") & (items.status == "ok")]
    per_token = _per_token(tokens[tokens.order.isin(questions.order) & (tokens.step == 0)], params)
    rows = []
    for item in questions.itertuples():
        if (item.order, 0) not in per_token.index:
            continue
        token = per_token.loc[(item.order, 0)]
        answer = yes_no(str(item.output).strip(), rule)
        rows.append(
            {
                "order": item.order,
                "id": item.id,
                "kind": item.kind,
                "truth": json.loads(item.truth),
                "answer": answer,
                "wrong": None if answer is None else answer != json.loads(item.truth),
                **{field: token[field] for field in STAGE_FIELDS},
                "first_mutation": token.mutation_layers[0] if token.has_mutation else None,
                "prob_final": float(token.prob[-1]),
                **_against_truth(token),
            }
        )
    columns = ["order", "id", "kind", "truth", "answer", "wrong", *STAGE_FIELDS, "first_mutation"]
    columns += ["prob_final", "last_truth_ahead", "truth_ahead_before_mutation"]
    return _typed(pd.DataFrame(rows, columns=columns))


SUMMARY_COLUMNS = ["statistic", "estimate", "low", "high", "n", "items", "note"]
WORD_DIFFERENCE = "P(mutation | hallucinated) - P(mutation | correct)"
ANSWER_DIFFERENCE = "P(mutation | wrong answer) - P(mutation | right answer)"


def _item_sums(table: pd.DataFrame, group: str, value: str) -> tuple[np.ndarray, np.ndarray]:
    """Per item (`order`): the sum of `value` and the number of rows, with table[group] True
    (column 0) and False (column 1)."""
    frame = pd.DataFrame(
        {
            "order": table.order,
            "flag": table[group].astype(bool),
            "value": table[value].astype(float),
        }
    )
    totals = frame.groupby(["order", "flag"]).value.agg(["sum", "size"]).unstack("flag")
    totals = totals.reindex(columns=pd.MultiIndex.from_product([["sum", "size"], [True, False]]))
    totals = totals.fillna(0.0)
    return totals["sum"].to_numpy(dtype=float), totals["size"].to_numpy(dtype=float)


def _compare(
    table: pd.DataFrame,
    group: str,
    outcome: str,
    names: tuple[str, str],
    units: tuple[str, str],
    **bootstrap: Any,
) -> list[dict]:
    """Rows comparing P(outcome) between table[group] True (names[0]) and False (names[1]); a
    group with no `units` gives NaN rates with a note saying which group the run lacks."""
    statistics = [f"P({outcome} | {name})" for name in names]
    statistics.append(f"{statistics[0]} - {statistics[1]}")
    usable = table[table[outcome].notna()]
    successes, totals = _item_sums(usable, group, outcome)
    groups, difference = clustered_rates(successes, totals, **bootstrap)
    assert difference is not None
    notes = [
        "" if ci.n[0] else f"no {unit} in this run" for unit, ci in zip(units, groups, strict=True)
    ]
    lacking = [note for note in notes if note]
    notes.append(f"needs both groups: {'; '.join(lacking)}" if lacking else "")
    found = zip(statistics, [*groups, difference], notes, strict=True)
    return [_row(name, ci, len(successes), note) for name, ci, note in found]


def _mean_first_mutation(words: pd.DataFrame, **bootstrap: Any) -> list[dict]:
    """Where mutations sit: the mean first mutation layer of hallucinated and of correct words
    that mutate, and the difference (items resampled)."""
    names = [
        "mean first mutation layer | hallucinated",
        "mean first mutation layer | correct",
        "mean first mutation layer: hallucinated - correct",
    ]
    mutated = words[words.has_mutation]
    if mutated.hallucinated.nunique() < 2:
        n_hallucinated = int(mutated.hallucinated.sum())
        n_correct = len(mutated) - n_hallucinated
        why = f"needs mutating words of both kinds: {n_hallucinated} hallucinated and "
        why += f"{n_correct} correct words mutate"
        return [_missing(name, why, mutated.order.nunique()) for name in names]
    sums, counts = _item_sums(mutated, "hallucinated", "first_mutation")
    groups, difference = clustered_rates(sums, counts, **bootstrap)
    assert difference is not None
    found = zip(names, [*groups, difference], strict=True)
    return [_row(name, ci, len(sums)) for name, ci in found]


def _truth_ahead(words: pd.DataFrame, **bootstrap: Any) -> list[dict]:
    """P(a true object was more probable than the hallucinated word at the word's first mutation),
    the paper's Fig. 3 story, over hallucinated words that mutate (items resampled)."""
    name = "P(true object ahead at first mutation | hallucinated, mutates)"
    chosen = words[words.hallucinated & words.truth_ahead_before_mutation.notna()]
    if chosen.empty:
        return [_missing(name, "no hallucinated word mutates (with a truth probability)", 0)]
    by_item = chosen.groupby("order").truth_ahead_before_mutation
    successes = by_item.sum().to_numpy(dtype=float)[:, None]
    totals = by_item.size().to_numpy(dtype=float)[:, None]
    (ci,), _ = clustered_rates(successes, totals, **bootstrap)
    return [_row(name, ci, len(by_item))]


def _row(name: str, ci: Interval, n_items: int, note: str = "") -> dict:
    return {
        "statistic": name,
        "estimate": ci.estimate,
        "low": ci.low,
        "high": ci.high,
        "n": ", ".join(map(str, ci.n)),
        "items": n_items,
        "note": note,
    }


def _missing(name: str, why: str, n_items: int) -> dict:
    """A statistic this run cannot give: NaN, and why."""
    nan = float("nan")
    return _row(name, Interval(nan, nan, nan, 0.95, (0,)), n_items, why)


def link_summary(
    mentions: pd.DataFrame,
    answers: pd.DataFrame | None = None,
    *,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> pd.DataFrame:
    """The link's rates with bootstrap intervals (items resampled): for object words,
    P(mutation | hallucinated) against P(mutation | correct), where the first mutation sits
    (mean layer of each group and the difference), and how often a true object was
    more probable than a hallucinated word at its first mutation; for yes-no answers,
    P(mutation | wrong) against P(mutation | right).
    Columns: statistic, estimate, low, high, n (units in each group), items, note (why a
    statistic is NaN: which group this run lacks; empty where it was computed). Captions without
    object words give one row saying so; yes-no rows appear when the run has yes-no answers."""
    settings = {"confidence": confidence, "n_resamples": n_resamples, "seed": seed}
    rows = []
    if len(mentions):
        words = mentions.assign(mutation=mentions.has_mutation)
        names = ("hallucinated", "correct")
        units = ("hallucinated object words", "correct object words")
        rows += _compare(words, "hallucinated", "mutation", names, units, **settings)
        rows += _mean_first_mutation(words, **settings)
        rows += _truth_ahead(words, **settings)
    elif mentions.attrs.get("captions", 1):
        why = f"no object words in the run's {mentions.attrs.get('captions', '')} captions"
        rows.append(_missing(WORD_DIFFERENCE, why.replace("  ", " "), 0))
    if answers is not None and answers.wrong.notna().any():
        answers = answers[answers.wrong.notna()].assign(mutation=answers.has_mutation)
        answers["wrong"] = answers.wrong.astype(bool)
        names = ("wrong answer", "right answer")
        units = ("wrong yes-no answers", "right yes-no answers")
        rows += _compare(answers, "wrong", "mutation", names, units, **settings)
    elif answers is not None and len(answers):
        why = f"none of the {len(answers)} yes-no answers could be read as yes or no"
        rows.append(_missing(ANSWER_DIFFERENCE, why, answers.order.nunique()))
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def summary_notes(summary: pd.DataFrame) -> list[str]:
    """One line per statistic the run could not give, saying why (for the CLI and reports)."""
    if "note" not in summary:
        return []
    missing = summary[summary.note.astype(bool)]
    return [f"{row.statistic}: n/a, {row.note}" for row in missing.itertuples()]


def mutation_histogram(table: pd.DataFrame, group: str = "hallucinated") -> pd.DataFrame:
    """Where mutations sit: count and share of mutated units per (group, first mutation layer)."""
    mutated = table[table.has_mutation]
    counts = mutated.groupby([group, "first_mutation"]).size().rename("count").reset_index()
    counts["share"] = counts["count"] / counts.groupby(group)["count"].transform("sum")
    return counts


def plot_mutation_layers(table: pd.DataFrame, group: str = "hallucinated") -> Figure:
    """Histogram of first mutation layers, split by `group` (hallucinated words vs correct)."""
    figure = Figure(figsize=(6, 3.2), layout="constrained")
    axis = figure.subplots()
    counts = mutation_histogram(table, group)
    for offset, (flag, colour) in enumerate(((True, "tab:red"), (False, "tab:blue"))):
        part = counts[counts[group] == flag]
        total = int((table[group] == flag).sum())
        axis.bar(
            part.first_mutation.to_numpy(dtype=float) + (offset - 0.5) * 0.4,
            part["share"],
            width=0.4,
            color=colour,
            label=f"{group} = {flag} ({int(part['count'].sum())} of {total} mutate)",
        )
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set_xlabel(f"first mutation layer ({PAIR_NOTE})")
    axis.set_ylabel("share of mutated words")
    axis.legend(fontsize=7)
    return figure
