"""`mmlens score pope|chair|amber`: score outputs that any tool wrote, as the benchmarks define."""

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmlens.benchmarks.scores import Scores
from mmlens.errors import ConfigError

if TYPE_CHECKING:
    from mmlens.benchmarks.pope_llava import PopeSplitScores


def _pope(args: argparse.Namespace) -> "Scores | PopeSplitScores":
    """POPE's layout (one split's label file, --questions) or, with --annotation-dir, LLaVA's
    (one question file for all splits, scored per split against POPE's label files)."""
    from mmlens.benchmarks.pope import read_pope, read_pope_answers, score_pope
    from mmlens.benchmarks.pope_llava import (
        is_llava_question_file,
        read_llava_pope,
        score_llava_pope,
    )

    if args.annotation_dir is not None:
        data = read_llava_pope(args.questions, args.annotation_dir)
        return score_llava_pope(data, read_pope_answers(args.answers))
    if is_llava_question_file(args.questions):
        raise ConfigError(
            f"{args.questions} is LLaVA's question file (its questions have a 'category', no "
            "'label'); add --annotation-dir DIR, the folder of POPE's label files "
            "coco_pope_{random,popular,adversarial}.json, to score it per split."
        )
    return score_pope(read_pope(args.questions), read_pope_answers(args.answers))


def _chair(args: argparse.Namespace) -> Scores:
    from mmlens.benchmarks.chair import CocoTruth, read_captions, score_chair
    from mmlens.benchmarks.nlp import get_pipeline

    captions = read_captions(args.captions)  # fail on a bad file before reading COCO
    truth = CocoTruth(args.coco, pipeline=get_pipeline(args.text_pipeline))
    return score_chair(captions, truth)


def _amber(args: argparse.Namespace) -> Scores:
    from mmlens.benchmarks.amber import AmberData, read_amber_responses, score_amber
    from mmlens.benchmarks.nlp import get_pipeline
    from mmlens.benchmarks.similarity import near_synonyms

    responses = read_amber_responses(args.responses)
    data = AmberData.load(args.amber)
    generative = any(data.annotations.get(i, {}).get("type") == "generative" for i, _ in responses)
    return score_amber(
        responses,
        data,
        pipeline=get_pipeline(args.text_pipeline) if generative else None,
        synonyms=near_synonyms(args.synonyms) if generative else None,
        answer_rule=args.answer_rule,
    )


def _score(args: argparse.Namespace) -> int:
    details = Path(args.details) if args.details else None
    if details is not None and details.is_dir():
        raise ConfigError(f"--details {details} is a folder; give a file path (JSON lines).")
    if details is not None and details.exists() and not args.force:
        raise ConfigError(f"{details} already exists; pass --force to replace it.")
    scores: Scores | PopeSplitScores
    scores = {"pope": _pope, "chair": _chair, "amber": _amber}[args.benchmark](args)
    if details is not None:
        details.parent.mkdir(parents=True, exist_ok=True)
        scores.items.to_json(details, orient="records", lines=True)
    if args.json:
        print(json.dumps(scores.to_dict()))
    else:
        print(scores.table())
        if details is not None:
            print(f"per-item details: {details}")
    return 0


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="one JSON object (fractions) on stdout")
    parser.add_argument("--details", help="also write the per-item table here (JSON lines)")
    parser.add_argument("--force", action="store_true", help="replace an existing --details file")
    parser.set_defaults(run=_score)


def _text_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--text-pipeline",
        choices=["offline", "nltk"],
        default="offline",
        help="offline: NLTK's tokenizer and perceptron tagger with the data mmlens ships, "
        "WordNet morphy (no downloads); nltk: the reference functions (needs NLTK's data "
        "installed)",
    )


def add_commands(commands: Any) -> None:
    """Register `mmlens score` and its three benchmarks."""
    score = commands.add_parser("score", help="score existing outputs on POPE, CHAIR or AMBER")
    benchmarks = score.add_subparsers(dest="benchmark", required=True)
    pope = benchmarks.add_parser(
        "pope",
        help="POPE accuracy, precision, recall, F1, yes-ratio",
        description="POPE's layout: --questions coco_pope_random.json --answers FILE (one split). "
        "LLaVA's layout (scripts/v1_5/eval/pope.sh), with eval_pope.py's option names: "
        "--annotation-dir coco/ --question-file llava_pope_test.jsonl --result-file FILE scores "
        "each split named in the questions' 'category' against coco_pope_{split}.json and "
        "prints the F1 averaged over random, popular and adversarial. Answers are paired with "
        "questions by question_id, questions with labels by id (LLaVA's id modulo 10,000,000) "
        "or else by order as eval_pope.py does, each pair checked to ask the same question.",
    )
    pope.add_argument(
        "--questions",
        "--question-file",
        dest="questions",
        required=True,
        help="POPE's question file with labels (JSON lines), or LLaVA's llava_pope_test.jsonl "
        "(question_id, image, text, category) with --annotation-dir",
    )
    pope.add_argument(
        "--answers",
        "--result-file",
        dest="answers",
        required=True,
        help="answers: JSON lines of question_id, text (LLaVA's answer file)",
    )
    pope.add_argument(
        "--annotation-dir",
        help="LLaVA's layout: the folder of POPE's label files coco_pope_{split}.json; "
        "needed (and only allowed) when the question file is LLaVA's",
    )
    _common(pope)
    chair = benchmarks.add_parser("chair", help="CHAIR_s, CHAIR_i, Recall, Len on MS-COCO")
    chair.add_argument("--captions", required=True, help="JSON lines of image_id, caption")
    chair.add_argument("--coco", required=True, help="folder with instances_/captions_val2014.json")
    _text_options(chair)
    _common(chair)
    amber = benchmarks.add_parser("amber", help="AMBER CHAIR, Cover, Hal, Cog, F1, AMBER score")
    amber.add_argument("--responses", required=True, help='AMBER responses: [{"id", "response"}]')
    amber.add_argument("--amber", required=True, help="AMBER's data folder (annotations.json...)")
    amber.add_argument(
        "--answer-rule",
        choices=["amber", "pope"],
        default="amber",
        help="amber: yes-no responses must be exactly Yes/No; pope: read free text as POPE does",
    )
    amber.add_argument(
        "--synonyms",
        default="auto",
        help="near-synonym vectors: auto (en_core_web_lg if installed, else exact matching), "
        "a spaCy pipeline name (e.g. en_core_web_md), or exact",
    )
    _text_options(amber)
    _common(amber)
