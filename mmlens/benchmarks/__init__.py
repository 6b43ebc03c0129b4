"""Hallucination benchmarks read and scored offline: POPE, CHAIR on MS-COCO, AMBER, and a built-in
benchmark with exact ground truth (`shapes`). Readers give `BenchmarkItem`s; metrics are pure
functions over responses, returning `Scores` (metrics as fractions, counts, notes, per-item table).
"""

from mmlens.benchmarks.amber import AmberData, read_amber, read_amber_responses, score_amber
from mmlens.benchmarks.chair import (
    CocoTruth,
    caption_objects,
    read_captions,
    read_coco,
    score_chair,
)
from mmlens.benchmarks.items import BenchmarkItem, ItemSet, Skipped
from mmlens.benchmarks.pope import pope_answer, read_pope, read_pope_answers, score_pope
from mmlens.benchmarks.pope_llava import PopeSplitScores, read_llava_pope, score_llava_pope
from mmlens.benchmarks.scores import Scores
from mmlens.benchmarks.shapes import read_shapes, write_shapes_benchmark

__all__ = [
    "AmberData",
    "BenchmarkItem",
    "CocoTruth",
    "ItemSet",
    "PopeSplitScores",
    "Scores",
    "Skipped",
    "caption_objects",
    "pope_answer",
    "read_amber",
    "read_amber_responses",
    "read_captions",
    "read_llava_pope",
    "read_coco",
    "read_pope",
    "read_pope_answers",
    "read_shapes",
    "score_amber",
    "score_chair",
    "score_llava_pope",
    "score_pope",
    "write_shapes_benchmark",
]
