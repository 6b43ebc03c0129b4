"""AMBER: its reader on the real annotation files, its metrics worked out by hand, and the whole
scorer against a line-by-line transcription of AMBER's inference.py on many responses."""

import json
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mmlens.benchmarks import AmberData, read_amber, read_amber_responses, score_amber
from mmlens.benchmarks.amber import discriminative_metrics, extract_nouns, generative_item
from mmlens.benchmarks.similarity import ExactMatch, near_synonyms
from mmlens.errors import BenchmarkDataError, ConfigError


@pytest.fixture(scope="module")
def data(amber_dir):
    return AmberData.load(amber_dir)


def test_reader_on_the_real_files(amber_dir, data, tmp_path):
    # the subset in tests/data: all 337 queries on AMBER_1.jpg .. AMBER_20.jpg
    items = read_amber(amber_dir, data=data)
    assert len(items) == 337 == len(data.annotations) and not items.skipped
    assert sum(item.task == "generative" for item in items) == 20
    first = items[0]
    assert (first.id, first.image, first.prompt) == (1, Path("AMBER_1.jpg"), "Describe this image.")
    assert first.truth == tuple(data.annotations[1]["truth"]) and first.extra["hallu"]
    existence = read_amber(
        amber_dir, query_files=["query_discriminative-existence.json"], data=data
    )
    assert len(existence) == 99 and {i.kind for i in existence} == {"discriminative-hallucination"}
    (tmp_path / "AMBER_1.jpg").write_bytes(b"")
    some = read_amber(amber_dir, images=tmp_path, query_files=["query_generative.json"], data=data)
    assert len(some) == 1 and len(some.skipped) == 19
    assert "image missing" in some.skipped[0].reason


def _toy(safe=("light",)) -> AmberData:
    association = {
        "person": ["man", "woman"],
        "dog": ["puppy"],
        "tree": ["forest"],
        "cat": [],
        "car": ["vehicle"],
        "light": [],
        "kitten": [],
    }
    annotations = {
        1: {
            "id": 1,
            "type": "generative",
            "truth": ["person", "dog", "dog"],
            "hallu": ["cat", "car"],
        },
        2: {"id": 2, "type": "generative", "truth": ["cat"], "hallu": ["dog"]},
        3: {"id": 3, "type": "discriminative-hallucination", "truth": "no"},
        4: {"id": 4, "type": "discriminative-hallucination", "truth": "no"},
        5: {"id": 5, "type": "discriminative-attribute-state", "truth": "yes"},
        6: {"id": 6, "type": "relation", "truth": "yes"},
    }
    return AmberData(Path("toy"), annotations, association, frozenset(safe))


def test_generative_item_by_hand(pipeline):
    data = _toy()
    text = "A man and two puppies sit under a tree. A vehicle passes. There is a light."
    judged = generative_item(text, data.annotations[1], data, pipeline, ExactMatch())
    assert judged["nouns"] == ["man", "puppy", "tree", "vehicle", "light"]
    # "light" is a safe word: counted as a noun, never hallucinated; "vehicle" names the
    # hallucination target "car" (Cog) and is itself a hallucination.
    assert judged["hallucinated"] == ["tree", "vehicle"]
    # the second "dog" of the truth list is never covered: AMBER marks the first match only
    assert judged["covered"] == ["person", "dog"] and judged["n_truth"] == 3
    assert (judged["n_hallu_targets"], judged["n_hallu_mentioned"]) == (2, 1)


def test_capitalised_nouns_and_near_synonyms(pipeline):
    data = _toy()
    judged = generative_item("Dogs sleep.", data.annotations[2], data, pipeline, ExactMatch())
    assert judged["nouns"] == []  # "Dogs" keeps its capital, so it is not in the vocabulary

    def kitten_is_cat(first: str, second: str) -> bool:
        return first == second or {first, second} == {"kitten", "cat"}

    kitten = "A kitten is sleeping."  # NLTK's tagger reads "A kitten sleeps." as JJ NN
    judged = generative_item(kitten, data.annotations[2], data, pipeline, kitten_is_cat)
    assert judged["hallucinated"] == [] and judged["covered"] == ["cat"]
    judged = generative_item(kitten, data.annotations[2], data, pipeline, ExactMatch())
    assert judged["hallucinated"] == ["kitten"] and judged["covered"] == []


def test_scores_by_hand(pipeline):
    data = _toy()
    responses = [
        (1, "A man and two puppies sit under a tree. A vehicle passes. There is a light."),
        (2, "A cat."),
        (3, "No"),
        (4, "Yes"),
        (5, "Yes"),
        (6, "No"),
    ]
    scores = score_amber(responses, data, pipeline, ExactMatch())
    m = scores.metrics
    assert m["chair"] == pytest.approx(2 / 6)  # nouns: 5 + 1
    assert m["cover"] == pytest.approx(3 / 4)
    assert m["hal"] == pytest.approx(1 / 2)
    assert m["cog"] == pytest.approx(1 / 3)
    # "No" is AMBER's positive class: said No on 3 (right) and 6 (wrong); truly no: 3, 4
    assert m["accuracy"] == pytest.approx(2 / 4)
    assert m["precision"] == pytest.approx(1 / 2) and m["recall"] == pytest.approx(1 / 2)
    assert m["f1"] == pytest.approx(1 / 2)
    assert m["amber_score"] == pytest.approx((1 - 2 / 6 + 1 / 2) / 2)
    assert m["existence_accuracy"] == pytest.approx(1 / 2) and m["relation_accuracy"] == 0
    assert m["attribute_precision"] is None  # no "No" answers among attribute questions
    assert scores.counts == {"n_generative": 2, "n_discriminative": 4, "n_unparsed": 0}


def test_yes_no_rules(pipeline):
    data = _toy()
    responses = [(3, "no"), (4, "No, there is not."), (5, "Yes.")]
    strict = score_amber(responses, data)
    assert strict.counts["n_unparsed"] == 3 and strict.metrics["accuracy"] == 0
    assert strict.metrics["chair"] is None and strict.metrics["amber_score"] is None
    assert "neither 'Yes' nor 'No'" in strict.notes[-1]
    lenient = score_amber(responses, data, answer_rule="pope")
    assert lenient.counts["n_unparsed"] == 0 and lenient.metrics["accuracy"] == 1
    with pytest.raises(ConfigError, match="answer_rule"):
        score_amber(responses, data, answer_rule="loose")


def test_response_file_problems(tmp_path):
    data = _toy()
    with pytest.raises(BenchmarkDataError, match="answered twice"):
        score_amber([(3, "No"), (3, "Yes")], data)
    with pytest.raises(BenchmarkDataError, match="not in the annotations: \\[99\\]"):
        score_amber([(99, "No")], data)
    path = tmp_path / "r.json"
    path.write_text('[{"id": 3, "answer": "No"}]')
    with pytest.raises(BenchmarkDataError, match="no 'response'"):
        read_amber_responses(path)
    import pandas as pd

    frame = pd.DataFrame({"id": [3, 4], "response": ["No", "No"]})
    assert score_amber(frame, data).metrics["accuracy"] == 1.0
    path.write_text("[]")
    empty = score_amber(read_amber_responses(path), data)
    assert all(value is None for value in empty.metrics.values())


def test_malformed_annotation_folder(tmp_path, amber_dir):
    with pytest.raises(BenchmarkDataError, match="AMBER data folder not found"):
        AmberData.load(tmp_path / "nope")
    for name in ("relation.json", "safe_words.txt"):
        (tmp_path / name).write_bytes((amber_dir / name).read_bytes())
    (tmp_path / "annotations.json").write_text(
        json.dumps([{"id": 1, "type": "generative", "truth": ["unicorn"], "hallu": []}])
    )
    with pytest.raises(BenchmarkDataError, match=r"entry 0: objects \['unicorn'\]"):
        AmberData.load(tmp_path)
    (tmp_path / "annotations.json").write_text("[{")
    with pytest.raises(BenchmarkDataError, match="not valid JSON"):
        AmberData.load(tmp_path)


# --- AMBER's inference.py, transcribed line by line (its counters, not its printing) ----------


def _reference_counters(inference_data, ground_truth, association, safe_words, nouns_of, similar):
    metrics = {k: 0.001 if k.endswith("_num") else 0 for k in _COUNTERS}
    hallucination_words = []
    for word1 in association:
        hallucination_words.append(word1)
        hallucination_words.extend(association[word1])
    for entry in inference_data:
        id = entry["id"]
        if ground_truth[id - 1]["type"] == "generative":
            nouns = nouns_of(entry["response"])
            after_process_nouns = [noun for noun in nouns if noun in hallucination_words]
            safe_words_, safe_list = [], []
            for idx, word in enumerate(ground_truth[id - 1]["truth"]):
                safe_words_ += association[word]
                safe_list += [idx] * len(association[word])
            ha_words, ha_list = [], []
            for idx, word in enumerate(ground_truth[id - 1]["hallu"]):
                ha_words += association[word]
                ha_list += [idx] * len(association[word])
            safe_words_ += ground_truth[id - 1]["truth"]
            safe_len = len(ground_truth[id - 1]["truth"])
            safe_list += [0] * safe_len
            safe_flag_list = [0] * len(after_process_nouns)
            ha_words += ground_truth[id - 1]["hallu"]
            ha_len = len(ground_truth[id - 1]["hallu"])
            ha_list += [0] * ha_len
            for idx, noun in enumerate(after_process_nouns):
                if noun in safe_words:
                    continue
                if noun in safe_words_:
                    for j in range(len(safe_words_)):
                        if noun == safe_words_[j]:
                            if j < (len(safe_list) - safe_len):
                                safe_list[safe_list[j] + len(safe_list) - safe_len] = 1
                            else:
                                safe_list[j] = 1
                            break
                    continue
                if noun in ha_words:
                    for j in range(len(ha_words)):
                        if noun == ha_words[j]:
                            if j < (len(ha_list) - ha_len):
                                ha_list[ha_list[j] + len(ha_list) - ha_len] = 1
                            else:
                                ha_list[j] = 1
                            break
                for j, check_word in enumerate(ha_words):
                    if similar(noun, check_word):
                        if j < (len(ha_list) - ha_len):
                            ha_list[ha_list[j] + len(ha_list) - ha_len] = 1
                        else:
                            ha_list[j] = 1
                        break
                flag = False
                for j, check_word in enumerate(safe_words_):
                    if similar(noun, check_word):
                        flag = True
                        if j < (len(safe_list) - safe_len):
                            safe_list[safe_list[j] + len(safe_list) - safe_len] = 1
                        else:
                            safe_list[j] = 1
                        break
                if flag:
                    continue
                safe_flag_list[idx] = 1
            metrics["chair_score"] += sum(safe_flag_list)
            metrics["chair_num"] += len(safe_flag_list)
            metrics["safe_cover_score"] += sum(safe_list[-safe_len:])
            metrics["safe_cover_num"] += len(safe_list[-safe_len:])
            metrics["hallu_cover_score"] += sum(ha_list[-ha_len:])
            metrics["hallu_cover_num"] += len(ha_list[-ha_len:])
            if sum(safe_flag_list) == 0:
                metrics["non_hallu_score"] += 1
            metrics["non_hallu_num"] += 1
        else:
            metrics["qa_correct_num"] += 1
            truth = ground_truth[id - 1]["truth"]
            response = entry["response"]
            if truth == "yes":
                if response == "Yes":
                    metrics["qa_correct_score"] += 1
            else:
                metrics["qa_no_num"] += 1
                if response == "No":
                    metrics["qa_correct_score"] += 1
                    metrics["qa_no_score"] += 1
            if response == "No":
                metrics["qa_ans_no_num"] += 1
                if truth == "no":
                    metrics["qa_ans_no_score"] += 1
    return metrics


_COUNTERS = [
    f"{name}_{part}"
    for name in (
        "chair",
        "safe_cover",
        "hallu_cover",
        "non_hallu",
        "qa_correct",
        "qa_no",
        "qa_ans_no",
    )
    for part in ("score", "num")
]


def _reference_printed(m):
    """The numbers inference.py prints, from its counters."""
    precision = round(m["qa_ans_no_score"] / m["qa_ans_no_num"] * 100, 1)
    recall = round(m["qa_no_score"] / m["qa_no_num"] * 100, 1)
    return {
        "chair": round(m["chair_score"] / m["chair_num"] * 100, 1),
        "cover": round(m["safe_cover_score"] / m["safe_cover_num"] * 100, 1),
        "hal": round(100 - m["non_hallu_score"] / m["non_hallu_num"] * 100, 1),
        "cog": round(m["hallu_cover_score"] / m["hallu_cover_num"] * 100, 1),
        "accuracy": round(m["qa_correct_score"] / m["qa_correct_num"] * 100, 1),
        "precision": precision,
        "recall": recall,
        "f1": round(
            2
            * (precision / 100)
            * (recall / 100)
            / ((precision / 100) + (recall / 100) + 0.0001)
            * 100,
            1,
        ),
    }


#: How far AMBER's printed percentages can be from the exact ones (points): 0.1 for each rate
#: (rounding to 0.1 plus counters that start at 0.001), 0.15 for F1, computed from the rounded
#: precision and recall.
PRINTED_BOUND = {"f1": 0.15}


def test_printed_f1_is_within_the_stated_bound_and_can_pass_a_tenth():
    """Every confusion of up to 150 yes-no answers: exact precision, recall and F1 against what
    AMBER's inference.py prints from the same counts with its 0.001-started counters (the README
    states these bounds); at the worst one, mmlens's metrics are the exact ones."""
    tp, fp, fn = (a.ravel() for a in np.meshgrid(*[np.arange(150)] * 3, indexing="ij"))
    keep = (tp + fp + fn < 150) & (tp + fp > 0) & (tp + fn > 0)
    tp, fp, fn = tp[keep], fp[keep], fn[keep]
    exact = {"precision": tp / (tp + fp), "recall": tp / (tp + fn)}
    total = exact["precision"] + exact["recall"]
    exact["f1"] = np.divide(2 * exact["precision"] * exact["recall"], total, where=total > 0,
                            out=np.zeros_like(total))  # fmt: skip
    printed = {
        "precision": np.round(tp / (tp + fp + 0.001) * 100, 1),
        "recall": np.round(tp / (tp + fn + 0.001) * 100, 1),
    }
    p, r = printed["precision"] / 100, printed["recall"] / 100
    printed["f1"] = np.round(2 * p * r / (p + r + 0.0001) * 100, 1)
    gaps = {name: np.abs(100 * exact[name] - printed[name]) for name in exact}
    assert gaps["precision"].max() <= 0.1 + 1e-9 and gaps["recall"].max() <= 0.1 + 1e-9
    assert 0.14 < gaps["f1"].max() <= PRINTED_BOUND["f1"]
    worst = int(gaps["f1"].argmax())
    assert (tp[worst], fp[worst], fn[worst]) == (5, 0, 132)
    frame = pd.DataFrame({"truth": ["no"] * 137, "answer": ["no"] * 5 + ["yes"] * 132})
    mine = discriminative_metrics(frame)
    assert mine["f1"] == pytest.approx(exact["f1"][worst], abs=1e-12)
    assert abs(100 * mine["f1"] - printed["f1"][worst]) > 0.14


def _random_responses(data, rng, n_discriminative=200):
    vocabulary = sorted(data.vocabulary)
    fillers = ["wall", "light", "sign", "picture", "area", "scene", "day", "color"]
    responses = []
    generative = [i for i, a in data.annotations.items() if a["type"] == "generative"]
    for item_id in rng.sample(generative, len(generative)):
        annotation = data.annotations[item_id]
        pool = annotation["truth"] + annotation["hallu"] + rng.sample(vocabulary, 6) + fillers
        for word in annotation["truth"]:
            pool += data.association[word][:2]
        words = rng.sample(pool, min(len(pool), rng.randint(0, 9)))
        words = [w + "s" if rng.random() < 0.2 else w for w in words]
        words = [w.capitalize() if rng.random() < 0.1 else w for w in words]
        pairs = zip(words[::2], words[1::2], strict=False)
        sentences = [f"There is a {w} near the {v}." for w, v in pairs]
        responses.append((item_id, " ".join(sentences) or "An image."))
    others = [i for i, a in data.annotations.items() if a["type"] != "generative"]
    answers = ["Yes", "No", "No", "yes", "No.", "Maybe"]
    responses += [(i, rng.choice(answers)) for i in rng.sample(others, n_discriminative)]
    return responses


@pytest.mark.slow
def test_equals_amber_inference_py_on_random_responses(data, pipeline, amber_dir):
    """Same counters as AMBER's own loop (with the same text pipeline and vectors), and its
    printed numbers within its rounding (PRINTED_BOUND).

    Six rounds of random responses to every caption query of the 20-image subset (120 captions
    in all) and 200 of its 317 yes-no questions."""
    # AMBER's loop reads the annotation of id i at position i - 1 of the full list; the subset
    # in tests/data has gaps, so the same lookup is a dict keyed by that position
    entries = json.loads((amber_dir / "annotations.json").read_text())
    ground_truth = {entry["id"] - 1: entry for entry in entries}
    synonyms = near_synonyms("en_core_web_md")  # over-matches: exercises every branch
    for seed in range(6):
        responses = _random_responses(data, random.Random(seed))
        scores = score_amber(responses, data, pipeline, synonyms)
        counters = _reference_counters(
            [{"id": i, "response": r} for i, r in responses],
            ground_truth,
            data.association,
            data.safe_words,
            lambda text: extract_nouns(text, pipeline),
            synonyms,
        )
        gen = scores.items[scores.items.task == "generative"]
        assert len(gen) == 20 and scores.counts["n_discriminative"] == 200
        assert gen.n_hallucinated.sum() == counters["chair_score"], seed
        assert gen.n_nouns.sum() == pytest.approx(counters["chair_num"] - 0.001), seed
        assert gen.n_covered.sum() == counters["safe_cover_score"], seed
        assert gen.n_hallu_mentioned.sum() == counters["hallu_cover_score"], seed
        assert (gen.n_hallucinated == 0).sum() == counters["non_hallu_score"], seed
        printed = _reference_printed(counters)
        for name, value in printed.items():
            bound = PRINTED_BOUND.get(name, 0.1)
            assert abs(100 * scores.metrics[name] - value) <= bound + 1e-9, (seed, name)
        # not degenerate
        assert 0 < scores.metrics["chair"] < 1 and 0 < scores.metrics["cog"] < 1, seed
        assert scores.counts["n_unparsed"] > 0, seed
