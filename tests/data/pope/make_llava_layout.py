"""Build LLaVA's POPE layout from the POPE subset beside this script, for mmlens's tests.

    python tests/data/pope/make_llava_layout.py  # writes llava/llava_pope_test.jsonl, answers.jsonl

`llava/llava_pope_test.jsonl` is laid out as LLaVA's question file (haotian-liu/LLaVA,
`playground/data/eval/pope/llava_pope_test.jsonl`): one JSON line per question, keys
`question_id, image, text, category`, the splits in LLaVA's order (adversarial, random, popular),
ids `10,000,000 * k + POPE's id` (k = 0, 1, 2 in that order), the text POPE's question with the
older POPE spelling LLaVA's file has ("Is there an X in the imange?") and LLaVA's suffix
"\\nAnswer the question using a single word or phrase.".

`llava/answers.jsonl` is laid out as the answer file LLaVA's `model_vqa_loader.py` writes
(`question_id, prompt, text, answer_id, model_id, metadata`), in question order. The answers are
made up, not a model's: the reading is the label's, flipped on every m-th question of a split
(positions 0, m, 2m, ...; m = 7 random, 5 popular, 3 adversarial), and written in many forms
("Yes", "No, there is not.", "There is a dog.", "NO", "Yes. There is no cat, though." ...), each
chosen among the forms that POPE's rule reads that way.
"""

import json
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
SPLITS = ("adversarial", "random", "popular")  # LLaVA's order; split k has ids 10**7 * k + id
SUFFIX = "\nAnswer the question using a single word or phrase."
FLIP_EVERY = {"random": 7, "popular": 5, "adversarial": 3}
READ_YES = (
    "Yes",
    "yes.",
    "There is a {obj}.",
    "Yes, there is a {obj} in the image.",
    "NO",  # POPE's words are case-sensitive: only No, not, no
    "Yes. There is no cat, though.",  # only the first sentence is read
    "I don't think so",
    "No\nThere is a {obj}.",  # "No\nThere" is one word: split on spaces only
    "no,there is",  # commas dropped: "nothere"
)
READ_NO = (
    "No",
    "no",
    "No, there is not.",
    "There is no {obj} in the image.",
    "I do not see a {obj}.",
    "no, there is none",
)


def _object(text: str) -> str:
    match = re.fullmatch(r"Is there an? (.+) in the image\?", text)
    if match is None:
        raise SystemExit(f"not a POPE question: {text!r}")
    return match.group(1)


def build(coco: Path = HERE / "coco") -> tuple[str, str]:
    """The question file's and the answer file's text."""
    questions, answers = [], []
    for k, split in enumerate(SPLITS):
        lines = (coco / f"coco_pope_{split}.json").read_text(encoding="utf-8").splitlines()
        for position, row in enumerate(json.loads(line) for line in lines):
            question_id = 10_000_000 * k + row["question_id"]
            text = row["text"]
            if text.startswith("Is there an "):
                text = text.replace(" image?", " imange?")
            text += SUFFIX
            questions.append(
                {"question_id": question_id, "image": row["image"], "text": text, "category": split}
            )
            says_yes = (row["label"] == "yes") != (position % FLIP_EVERY[split] == 0)
            forms = READ_YES if says_yes else READ_NO
            answer = forms[position % len(forms)].format(obj=_object(row["text"]))
            answers.append(
                {
                    "question_id": question_id,
                    "prompt": text,
                    "text": answer,
                    "answer_id": f"made-up-{question_id}",
                    "model_id": "made-up-answers",
                    "metadata": {},
                }
            )
    return (
        "".join(json.dumps(q) + "\n" for q in questions),
        "".join(json.dumps(a) + "\n" for a in answers),
    )


if __name__ == "__main__":
    out = HERE / "llava"
    out.mkdir(exist_ok=True)
    question_text, answer_text = build()
    (out / "llava_pope_test.jsonl").write_text(question_text, encoding="utf-8")
    (out / "answers.jsonl").write_text(answer_text, encoding="utf-8")
