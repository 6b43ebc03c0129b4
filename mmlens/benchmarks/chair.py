"""CHAIR (Rohrbach et al., 2018) on MS-COCO: which objects a caption mentions that the image
does not hold, scored as the widely used Python 3 port (OPERA's `chair.py`) does.

A caption is lower-cased, tokenized and tagged; each word is lemmatized with its part of speech;
COCO's two-word objects are merged ("hot dog", "teddy bear"; "baby bird" -> "bird", "passenger
jet" -> "jet", "toilet seat" -> "toilet"); "seat" is dropped when "toilet" is there; the remaining
words found in COCO's synonym list map to their class. An image's ground truth is the union of
its instance annotations and the classes its five reference captions mention.

Metrics: CHAIR_s = share of captions with a hallucinated object; CHAIR_i = hallucinated object
mentions / all object mentions; Recall = ground-truth classes mentioned / ground-truth classes,
summed over captions; Len = mean number of words per caption (after the two-word merge; the
port stores it x 0.01 and prints it x 100, so it prints this number).

The user brings `instances_val2014.json` and `captions_val2014.json` (and the train2014 files if
their captions are of train images) in one folder; images are COCO's val2014 files.
"""

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pandas as pd

from mmlens.benchmarks.items import (
    BenchmarkItem,
    ItemSet,
    Skipped,
    id_text_pairs,
    read_json,
    read_outputs,
)
from mmlens.benchmarks.nlp import TextPipeline, get_pipeline, wordnet_pos
from mmlens.benchmarks.scores import Scores, ratio
from mmlens.errors import BenchmarkDataError
from mmlens.progress import progress_bar

DEFAULT_PROMPT = "Please describe this image in detail."
DOUBLE_WORDS = (
    "motor bike",
    "motor cycle",
    "air plane",
    "traffic light",
    "street light",
    "traffic signal",
    "stop light",
    "fire hydrant",
    "stop sign",
    "parking meter",
    "suit case",
    "sports ball",
    "baseball bat",
    "baseball glove",
    "tennis racket",
    "wine glass",
    "hot dog",
    "cell phone",
    "mobile phone",
    "teddy bear",
    "hair drier",
    "potted plant",
    "bow tie",
    "laptop computer",
    "stove top oven",
    "home plate",
    "train track",
)
# "baby bird" is a bird, not a person; "passenger jet" a jet.
ANIMAL_WORDS = (
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "animal",
    "cub",
)
VEHICLE_WORDS = ("jet", "train")


@dataclass(frozen=True)
class CocoVocabulary:
    """COCO's synonym words, each mapped to its class, and the two-word rules."""

    synonyms: Mapping[str, str]
    double_words: Mapping[str, str]

    @classmethod
    @functools.cache
    def default(cls) -> "CocoVocabulary":
        text = resources.files("mmlens.benchmarks").joinpath("data/coco_synonyms.txt")
        lines = [line for line in text.read_text(encoding="utf-8").splitlines() if line.strip()]
        synonyms: dict[str, str] = {}
        for line in lines:
            if line.startswith("#"):
                continue
            words = line.strip().split(", ")
            for word in words:
                synonyms[word] = words[0]
        double = {pair: pair for pair in DOUBLE_WORDS}
        for animal in ANIMAL_WORDS:
            double[f"baby {animal}"] = animal
            double[f"adult {animal}"] = animal
        for vehicle in VEHICLE_WORDS:
            double[f"passenger {vehicle}"] = vehicle
        double.update({"bow tie": "tie", "toilet seat": "toilet", "wine glas": "wine glass"})
        return cls(synonyms, double)

    @property
    def classes(self) -> list[str]:
        return sorted(set(self.synonyms.values()))


@dataclass(frozen=True)
class CaptionObjects:
    """What CHAIR reads in a caption: the merged words and the object mentions."""

    words: list[str]  # all words after lemmatizing and the two-word merge (Len counts these)
    mentions: list[str]  # the words that name a COCO object, in order, repeats kept
    objects: list[str]  # the class of each mention


def caption_objects(
    caption: str, pipeline: TextPipeline | None = None, vocabulary: CocoVocabulary | None = None
) -> CaptionObjects:
    """The COCO objects a caption mentions, as the Python 3 port of CHAIR finds them."""
    pipeline = pipeline or get_pipeline()
    vocabulary = vocabulary or CocoVocabulary.default()
    tagged = pipeline.pos_tag(pipeline.tokenize(caption.lower()))
    lemmas = [pipeline.lemmatize(word, wordnet_pos(tag)) for word, tag in tagged]
    merged, index = [], 0
    while index < len(lemmas):
        pair = " ".join(lemmas[index : index + 2])
        if pair in vocabulary.double_words:
            merged.append(vocabulary.double_words[pair])
            index += 2
        else:
            merged.append(lemmas[index])
            index += 1
    kept = [w for w in merged if w != "seat"] if "toilet" in merged and "seat" in merged else merged
    mentions = [word for word in kept if word in vocabulary.synonyms]
    return CaptionObjects(merged, mentions, [vocabulary.synonyms[w] for w in mentions])


class CocoTruth:
    """Ground-truth COCO classes per image, from the instance and caption annotations.

    Files are read once; each image's objects are worked out on first use (parsing every
    reference caption of val2014 takes minutes, an image's five take milliseconds).
    """

    def __init__(
        self,
        folder: str | Path,
        pipeline: TextPipeline | None = None,
        vocabulary: CocoVocabulary | None = None,
    ) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise BenchmarkDataError(f"COCO annotation folder not found: {self.folder}")
        self.pipeline = pipeline or get_pipeline()
        self.vocabulary = vocabulary or CocoVocabulary.default()
        self.file_names: dict[int, str] = {}
        self._instances: dict[int, list[str]] = {}
        self._captions: dict[int, list[str]] = {}
        self._objects: dict[int, frozenset[str]] = {}
        splits = [
            s for s in ("val", "train") if (self.folder / f"instances_{s}2014.json").is_file()
        ]
        if "val" not in splits:
            raise BenchmarkDataError(
                f"{self.folder} has no instances_val2014.json: CHAIR needs COCO's instance and "
                "caption annotations (annotations_trainval2014)."
            )
        for split in splits:
            self._read_instances(self.folder / f"instances_{split}2014.json")
            self._read_captions(self.folder / f"captions_{split}2014.json")

    def _read_instances(self, path: Path) -> None:
        data = read_json(path, "COCO instance annotations")
        try:
            names = {cat["id"]: cat["name"] for cat in data["categories"]}
            for image in data["images"]:
                self.file_names[int(image["id"])] = image["file_name"]
                self._instances.setdefault(int(image["id"]), [])
            for annotation in data["annotations"]:
                name = names[annotation["category_id"]]
                self._instances.setdefault(int(annotation["image_id"]), []).append(
                    self.vocabulary.synonyms[name]
                )
        except (KeyError, TypeError, ValueError) as error:
            raise BenchmarkDataError(
                f"{path} is not COCO instance annotations (missing or bad {error})."
            ) from error

    def _read_captions(self, path: Path) -> None:
        data = read_json(path, "COCO caption annotations")
        try:
            for annotation in data["annotations"]:
                self._captions.setdefault(int(annotation["image_id"]), []).append(
                    str(annotation["caption"])
                )
        except (KeyError, TypeError, ValueError) as error:
            raise BenchmarkDataError(
                f"{path} is not COCO caption annotations (missing or bad {error})."
            ) from error

    def __contains__(self, image_id: object) -> bool:
        return image_id in self.file_names

    def objects(self, image_id: int) -> frozenset[str]:
        """The COCO classes in image `image_id` (KeyError if COCO does not know the image)."""
        if image_id not in self.file_names:
            raise KeyError(image_id)
        if image_id not in self._objects:
            found = set(self._instances.get(image_id, []))
            for caption in self._captions.get(image_id, []):
                found.update(caption_objects(caption, self.pipeline, self.vocabulary).objects)
            self._objects[image_id] = frozenset(found)
        return self._objects[image_id]


def read_coco(
    truth: CocoTruth,
    images: str | Path | None = None,
    image_ids: Iterable[int] | None = None,
    limit: int | None = None,
    prompt: str = DEFAULT_PROMPT,
) -> ItemSet:
    """Caption items for COCO images (all of the annotations' images, or `image_ids`), with
    their ground-truth classes; with `images`, an image whose file is missing is skipped."""
    chosen = sorted(truth.file_names) if image_ids is None else list(image_ids)
    items, skipped = [], []
    for image_id in chosen[:limit] if limit is not None else chosen:
        if image_id not in truth:
            skipped.append(Skipped(image_id, "no annotation: image id not in the COCO files"))
            continue
        path = Path(truth.file_names[image_id])
        if images is not None:
            path = Path(images) / path
            if not path.is_file():
                skipped.append(Skipped(image_id, f"image missing: {path}"))
                continue
        objects = tuple(sorted(truth.objects(image_id)))
        items.append(
            BenchmarkItem("coco", image_id, path, prompt, "generative", "caption", objects)
        )
    return ItemSet(tuple(items), tuple(skipped))


def read_captions(path: str | Path) -> list[tuple[int, str]]:
    """(image_id, caption) pairs from `{"image_id", "caption"}` JSON lines or a JSON list."""
    return read_outputs(path, "image_id", "caption", "captions to score")


def score_chair(
    captions: Iterable[tuple[int, str]] | pd.DataFrame,
    truth: Mapping[int, Iterable[str]] | CocoTruth,
) -> Scores:
    """CHAIR_s, CHAIR_i, Recall and Len of captions against ground-truth classes per image.

    `captions` are (image_id, caption) pairs or a DataFrame with `image_id` and `caption` columns.

    `truth` maps image id -> COCO classes (or is a `CocoTruth`). A caption whose image has no
    ground truth is not scored and is counted (`n_no_annotation`), never scored against nothing.
    """
    coco = truth if isinstance(truth, CocoTruth) else None
    pipeline = coco.pipeline if coco else get_pipeline()
    vocabulary = coco.vocabulary if coco else CocoVocabulary.default()
    rows, unknown = [], []
    captions = id_text_pairs(captions, "image_id", "caption", "captions")
    for image_id, caption in progress_bar(captions, desc="CHAIR", disable=len(captions) < 200):
        if image_id not in truth:
            unknown.append(image_id)
            continue
        gt = coco.objects(image_id) if coco else frozenset(truth[image_id])  # type: ignore[index]
        found = caption_objects(caption, pipeline, vocabulary)
        hallucinated = [
            (w, o) for w, o in zip(found.mentions, found.objects, strict=True) if o not in gt
        ]
        rows.append(
            {
                "image_id": image_id,
                "caption": caption,
                "objects": found.objects,
                "hallucinated": [o for _, o in hallucinated],
                "truth": sorted(gt),
                "n_words": len(found.words),
                "n_mentions": len(found.objects),
                "n_hallucinated": len(hallucinated),
                "n_recalled": len({o for o in found.objects if o in gt}),
                "n_truth": len(gt),
            }
        )
    frame = pd.DataFrame(rows)
    if frame.empty:
        raise BenchmarkDataError(
            f"No caption could be scored: {len(unknown)} captions, none with an image id in the "
            f"annotations (first: {unknown[:5]})."
        )
    notes = []
    if unknown:
        notes.append(
            f"{len(unknown)} captions have an image_id with no COCO annotation and are not "
            f"scored (first: {unknown[:5]})"
        )
    metrics = {
        "chair_s": ratio(int((frame.n_hallucinated > 0).sum()), len(frame)),
        "chair_i": ratio(int(frame.n_hallucinated.sum()), int(frame.n_mentions.sum())),
        "recall": ratio(int(frame.n_recalled.sum()), int(frame.n_truth.sum())),
        "len": float(frame.n_words.mean()),
    }
    return Scores(
        "CHAIR",
        metrics,
        {"n_scored": len(frame), "n_no_annotation": len(unknown)},
        tuple(notes),
        not_fractions=("len",),
        items=frame,
    )
