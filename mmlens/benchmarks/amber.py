"""AMBER (Wang et al., 2023): captions scored for hallucinated objects, and yes-no questions on
existence, attributes and relations, scored as AMBER's `inference.py` does.

A data folder laid out as AMBER's `data/`: `annotations.json`, `relation.json`,
`safe_words.txt` and `query/query_generative.json`, `query/query_discriminative.json` (or the
per-dimension files). Images are AMBER's 1,004 `AMBER_{n}.jpg`, from the benchmark's own link.

Generative (captions): the response's nouns (NLTK tokenizer, Penn tags starting "NN", WordNet
lemma) that are in AMBER's object vocabulary (the keys and associated words of `relation.json`)
are checked one by one: safe words are ignored; a ground-truth object or one of its associated
words (exactly, or a near-synonym: spaCy vector similarity > 0.8) covers that object; anything
else is a hallucination, and an annotated hallucination target it matches counts for Cog.
CHAIR = hallucinated nouns / nouns; Cover = ground-truth objects mentioned / ground-truth
objects; Hal = captions with a hallucination / captions; Cog = hallucination targets mentioned /
targets.

Discriminative: AMBER's positive class is "No". The response must be exactly "Yes" or "No"
(AMBER's rule; anything else is wrong, and mmlens counts such responses as `n_unparsed`);
`answer_rule="pope"` reads free text with POPE's rule instead. AMBER score = (1 - CHAIR + F1)/2.

Differences from the reference's printed numbers: it rounds each percentage to 0.1 and
computes F1 from the rounded precision and recall plus 1e-4 in the denominator; its counters
start at 0.001 (`metrics.txt`), which shifts each ratio by < 0.001 / count. Together: at most 0.1
point for each rate, and up to 0.15 for F1 when one of precision and recall is small. Its text
pipeline and vectors: see `mmlens.benchmarks.nlp` and `.similarity`.
"""

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mmlens.benchmarks.items import (
    BenchmarkItem,
    ItemSet,
    Skipped,
    as_int_id,
    id_text_pairs,
    read_json,
    read_outputs,
    read_records,
    require_keys,
)
from mmlens.benchmarks.nlp import TextPipeline, get_pipeline
from mmlens.benchmarks.pope import pope_answer
from mmlens.benchmarks.scores import Scores, f1_score, ratio
from mmlens.benchmarks.similarity import NearSynonyms, near_synonyms
from mmlens.errors import BenchmarkDataError, ConfigError
from mmlens.progress import progress_bar

# AMBER's discriminative dimensions by annotation type (any other type is a relation).
DIMENSIONS = {
    "discriminative-hallucination": "existence",
    "discriminative-attribute-state": "attribute",
    "discriminative-attribute-number": "attribute",
    "discriminative-attribute-action": "attribute",
}
QUERY_FILES = ("query_generative.json", "query_discriminative.json")
ANSWER_RULES = ("amber", "pope")


@dataclass(frozen=True)
class AmberData:
    """AMBER's annotations by id, its word associations and its global safe words."""

    folder: Path
    annotations: Mapping[int, dict]
    association: Mapping[str, list[str]]
    safe_words: frozenset[str]

    @classmethod
    def load(cls, folder: str | Path) -> "AmberData":
        folder = Path(folder)
        if not folder.is_dir():
            raise BenchmarkDataError(f"AMBER data folder not found: {folder}")
        raw = read_records(folder / "annotations.json", "AMBER annotations (annotations.json)")
        association = read_json(folder / "relation.json", "AMBER word associations")
        if not isinstance(association, dict):
            raise BenchmarkDataError(f"{folder / 'relation.json'} must be a JSON object.")
        annotations: dict[int, dict] = {}
        for index, entry in enumerate(raw):
            where = f"{folder / 'annotations.json'} entry {index}"
            require_keys(entry, ("id", "type", "truth"), where)
            entry_id = as_int_id(entry["id"], where)
            if entry["type"] == "generative":
                require_keys(entry, ("hallu",), where)
                unknown = [w for w in [*entry["truth"], *entry["hallu"]] if w not in association]
                if unknown:
                    raise BenchmarkDataError(
                        f"{where}: objects {unknown} are not keys of relation.json."
                    )
            elif entry["truth"] not in ("yes", "no"):
                raise BenchmarkDataError(f"{where}: truth {entry['truth']!r} is not yes/no.")
            annotations[entry_id] = entry
        safe_path = folder / "safe_words.txt"
        if not safe_path.is_file():
            raise BenchmarkDataError(f"AMBER safe words not found: {safe_path}")
        safe = frozenset(safe_path.read_text(encoding="utf-8").split("\n"))
        return cls(folder, annotations, association, safe - {""})

    @property
    def vocabulary(self) -> frozenset[str]:
        """Every object word AMBER looks for: relation.json's keys and associated words."""
        return frozenset(self.association) | {w for ws in self.association.values() for w in ws}


def read_amber(
    folder: str | Path,
    images: str | Path | None = None,
    query_files: Iterable[str] = QUERY_FILES,
    data: AmberData | None = None,
) -> ItemSet:
    """AMBER's queries as items (generative first, as the files list them); with `images`, a
    query whose image is missing is skipped, as is a query id with no annotation."""
    data = data or AmberData.load(folder)
    items, skipped = [], []
    for name in query_files:
        path = Path(folder) / "query" / name
        for index, query in enumerate(read_records(path, f"AMBER queries ({name})")):
            where = f"{path} entry {index}"
            require_keys(query, ("id", "image", "query"), where)
            qid = as_int_id(query["id"], where)
            annotation = data.annotations.get(qid)
            if annotation is None:
                skipped.append(Skipped(qid, "no annotation: id not in annotations.json"))
                continue
            image = Path(images) / query["image"] if images is not None else Path(query["image"])
            if images is not None and not image.is_file():
                skipped.append(Skipped(qid, f"image missing: {image}"))
                continue
            generative = annotation["type"] == "generative"
            items.append(
                BenchmarkItem(
                    "amber",
                    qid,
                    image,
                    query["query"],
                    "generative" if generative else "discriminative",
                    annotation["type"],
                    tuple(annotation["truth"]) if generative else annotation["truth"],
                    {"hallu": list(annotation["hallu"])} if generative else {},
                )
            )
    return ItemSet(tuple(items), tuple(skipped))


def read_amber_responses(path: str | Path) -> list[tuple[int, str]]:
    """(id, response) pairs from AMBER's `[{"id", "response"}]` file (or JSON lines)."""
    return read_outputs(path, "id", "response", "AMBER responses")


def extract_nouns(text: str, pipeline: TextPipeline) -> list[str]:
    """AMBER's `extract_nouns`: lemmas of the words tagged NN*, in order."""
    tagged = pipeline.pos_tag(pipeline.tokenize(text))
    return [pipeline.lemmatize(word) for word, tag in tagged if tag.startswith("NN")]


def _mark(flags: list[int], position: int, n_targets: int) -> None:
    """Set the flag of the target that entry `position` stands for (AMBER's list layout: one
    entry per associated word holding its target's index, then one entry per target)."""
    head = len(flags) - n_targets
    if position < head:
        flags[flags[position] + head] = 1
    else:
        flags[position] = 1


def _targets(words: list[str], association: Mapping[str, list[str]]) -> tuple[list[str], list[int]]:
    """AMBER's candidate words for a target list and their flags, as its loop lays them out."""
    candidates, flags = [], []
    for index, word in enumerate(words):
        candidates += association[word]
        flags += [index] * len(association[word])
    return candidates + list(words), flags + [0] * len(words)


def generative_item(
    response: str,
    annotation: Mapping,
    data: AmberData,
    pipeline: TextPipeline,
    synonyms: NearSynonyms,
    vocabulary: frozenset[str] | None = None,
) -> dict:
    """One caption, judged as AMBER's loop judges it: the nouns it counts, which of them are
    hallucinated, and which truth / hallucination-target objects it covers."""
    vocabulary = vocabulary if vocabulary is not None else data.vocabulary
    nouns = [noun for noun in extract_nouns(response, pipeline) if noun in vocabulary]
    truth, hallu = list(annotation["truth"]), list(annotation["hallu"])
    safe_words, safe_flags = _targets(truth, data.association)
    ha_words, ha_flags = _targets(hallu, data.association)
    hallucinated = [False] * len(nouns)
    for index, noun in enumerate(nouns):
        if noun in data.safe_words:
            continue
        if noun in safe_words:
            _mark(safe_flags, safe_words.index(noun), len(truth))
            continue
        if noun in ha_words:
            _mark(ha_flags, ha_words.index(noun), len(hallu))
        for position, word in enumerate(ha_words):
            if synonyms(noun, word):
                _mark(ha_flags, position, len(hallu))
                break
        near = next((p for p, word in enumerate(safe_words) if synonyms(noun, word)), None)
        if near is not None:
            _mark(safe_flags, near, len(truth))
            continue
        hallucinated[index] = True
    covered = safe_flags[len(safe_flags) - len(truth) :]
    cognitive = ha_flags[len(ha_flags) - len(hallu) :]
    return {
        "nouns": nouns,
        "noun_hallucinated": hallucinated,
        "hallucinated": [n for n, h in zip(nouns, hallucinated, strict=True) if h],
        "covered": [w for w, f in zip(truth, covered, strict=True) if f],
        "n_nouns": len(nouns),
        "n_hallucinated": sum(hallucinated),
        "n_truth": len(truth),
        "n_covered": sum(covered),
        "n_hallu_targets": len(hallu),
        "n_hallu_mentioned": sum(cognitive),
    }


def _check_rule(rule: str) -> None:
    if rule not in ANSWER_RULES:
        raise ConfigError(f"answer_rule {rule!r}: use 'amber' (exact Yes/No) or 'pope'.")


def yes_no(response: str, rule: str) -> str | None:
    """ "yes", "no" or None (not an answer) under AMBER's exact rule or POPE's reading."""
    _check_rule(rule)
    if rule == "amber":
        return {"Yes": "yes", "No": "no"}.get(response)
    return pope_answer(response)


def discriminative_metrics(frame: pd.DataFrame) -> dict[str, float | None]:
    """Accuracy, precision, recall, F1 with "no" the positive class, from `truth` and `answer`."""
    said_no, is_no = frame["answer"] == "no", frame["truth"] == "no"
    precision = ratio(int((said_no & is_no).sum()), int(said_no.sum()))
    recall = ratio(int((said_no & is_no).sum()), int(is_no.sum()))
    return {
        "accuracy": ratio(int((frame["answer"] == frame["truth"]).sum()), len(frame)),
        "precision": precision,
        "recall": recall,
        "f1": f1_score(precision, recall),
    }


def score_amber(
    responses: Iterable[tuple[int, str]] | pd.DataFrame,
    data: AmberData,
    pipeline: TextPipeline | None = None,
    synonyms: NearSynonyms | None = None,
    answer_rule: str = "amber",
) -> Scores:
    """AMBER's generative and discriminative metrics and the AMBER score over `responses`.

    `responses` are (id, response) pairs or a DataFrame with `id` and `response` columns.
    Metrics of a task with no responses are None. `items` holds one row per response.
    """
    pairs = id_text_pairs(responses, "id", "response", "AMBER responses")
    counts = Counter(item_id for item_id, _ in pairs)
    repeated = sorted(i for i, n in counts.items() if n > 1)
    unknown = sorted(i for i in counts if i not in data.annotations)
    if repeated or unknown:
        problem = (
            f"ids answered twice: {repeated[:5]}"
            if repeated
            else f"ids not in the annotations: {unknown[:5]}"
        )
        raise BenchmarkDataError(f"AMBER responses: {problem} ({data.folder}).")
    _check_rule(answer_rule)
    generative = [(i, r) for i, r in pairs if data.annotations[i]["type"] == "generative"]
    if generative:  # the text pipeline and vectors load in seconds: only when captions need them
        pipeline = pipeline or get_pipeline()
        synonyms = synonyms or near_synonyms()
    vocabulary = data.vocabulary
    rows = []
    for item_id, response in progress_bar(
        generative, desc="AMBER captions", disable=len(generative) < 50
    ):
        judged = generative_item(
            response, data.annotations[item_id], data, pipeline, synonyms, vocabulary
        )  # type: ignore[arg-type]
        rows.append(
            {
                "id": item_id,
                "task": "generative",
                "kind": "generative",
                "response": response,
                **judged,
            }
        )
    for item_id, response in pairs:
        annotation = data.annotations[item_id]
        if annotation["type"] == "generative":
            continue
        answer = yes_no(response, answer_rule)
        rows.append(
            {
                "id": item_id,
                "task": "discriminative",
                "kind": DIMENSIONS.get(annotation["type"], "relation"),
                "response": response,
                "truth": annotation["truth"],
                "answer": answer,
            }
        )
    frame = pd.DataFrame(rows)
    gen = frame[frame.task == "generative"] if len(frame) else frame
    dis = frame[frame.task == "discriminative"] if len(frame) else frame
    metrics: dict[str, float | None] = {"chair": None, "cover": None, "hal": None, "cog": None}
    if len(gen):
        metrics = {
            "chair": ratio(int(gen.n_hallucinated.sum()), int(gen.n_nouns.sum())),
            "cover": ratio(int(gen.n_covered.sum()), int(gen.n_truth.sum())),
            "hal": ratio(int((gen.n_hallucinated > 0).sum()), len(gen)),
            "cog": ratio(int(gen.n_hallu_mentioned.sum()), int(gen.n_hallu_targets.sum())),
        }
    overall = (
        discriminative_metrics(dis)
        if len(dis)
        else dict.fromkeys(("accuracy", "precision", "recall", "f1"))
    )
    metrics.update(overall)
    chair, f1 = metrics["chair"], metrics["f1"]
    metrics["amber_score"] = None if chair is None or f1 is None else (1 - chair + f1) / 2
    for dimension in ("existence", "attribute", "relation"):
        part = dis[dis.kind == dimension] if len(dis) else dis
        if len(part):
            metrics.update({f"{dimension}_{k}": v for k, v in discriminative_metrics(part).items()})
    unparsed = int(dis.answer.isna().sum()) if len(dis) else 0
    notes = []
    if len(gen):
        vectors = getattr(synonyms, "name", getattr(synonyms, "__name__", "custom"))
        notes.append(f"text pipeline: {pipeline.name}; near synonyms: {vectors}")  # type: ignore[union-attr]
    if unparsed:
        notes.append(
            f"{unparsed} of {len(dis)} yes-no responses are neither 'Yes' nor 'No' and count as "
            "wrong (AMBER's rule); --answer-rule pope reads free text"
        )
    return Scores(
        "AMBER",
        metrics,
        {"n_generative": len(gen), "n_discriminative": len(dis), "n_unparsed": unparsed},
        tuple(notes),
        items=frame,
    )
