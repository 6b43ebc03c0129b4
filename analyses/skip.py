"""Skip experiments (paper Fig. 5; the authors never released this code).

From detected stages (critical layer c, mutation layers m1 < m2 ...; `analyses.stages` labels a
layer pair (l, l+1) by l, the block that makes the change):

* **skip.1** jumps from the critical layer to the first mutation: blocks c .. m1-1 do not run, so
  layer c feeds block m1 (the mutating block) directly;
* **skip.2** skips only the mutation layers: block m for each mutation layer m;
* **skip.3** jumps from the critical layer to the last 5 layers: blocks c .. L-6 do not run.

Each generation really skips the blocks (`HookedLVLM.generate(skip_layers=...)`) and is compared
with the original text: token edit distance, word-level `difflib` similarity, and with ground-truth
objects the hallucinated objects that disappeared or appeared.
"""

import difflib
import html
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from mmlens.analyses.hallucination import ObjectVocabulary, hallucinated_objects
from mmlens.analyses.stages import TraceStages
from mmlens.errors import ConfigError

LAST_LAYERS_KEPT = 5


def skip_plan(stages: TraceStages, n_blocks: int) -> dict[str, list[int]]:
    """The paper's three skip sets (block indices) for these stages; inapplicable ones are left out.

    skip.1 and skip.2 need a mutation layer, every set needs a critical layer, and a set that would
    be empty (or remove every block) is dropped.
    """
    plan: dict[str, list[int]] = {}
    critical = stages.critical_layer
    if critical is None:
        return plan
    mutations = [m for m in stages.mutation_layers if m > critical]
    if mutations:
        plan["skip.1"] = list(range(critical, mutations[0]))
        plan["skip.2"] = list(mutations)
    plan["skip.3"] = list(range(critical, n_blocks - LAST_LAYERS_KEPT))
    return {name: blocks for name, blocks in plan.items() if 0 < len(blocks) < n_blocks}


def edit_distance(a: Sequence[Any], b: Sequence[Any]) -> int:
    """Levenshtein distance between two sequences (insert, delete, substitute cost 1)."""
    previous = list(range(len(b) + 1))
    for i, item in enumerate(a, start=1):
        current = [i]
        for j, other in enumerate(b, start=1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (item != other))
            )
        previous = current
    return previous[-1]


def text_similarity(a: str, b: str) -> float:
    """Word-level `difflib.SequenceMatcher` ratio in [0, 1] (1 = same words in the same order)."""
    return difflib.SequenceMatcher(a=a.split(), b=b.split(), autojunk=False).ratio()


def compare_generations(
    original: Sequence[int],
    original_text: str,
    variants: Mapping[str, tuple[list[int], Sequence[int], str]],
    truth: Iterable[str] | None = None,
    vocabulary: ObjectVocabulary | None = None,
) -> pd.DataFrame:
    """Table of variants (name -> (skipped blocks, token ids, text)) against the original."""
    truth = list(truth) if truth is not None else None
    if truth is not None and vocabulary is None:
        raise ValueError("Pass an ObjectVocabulary with ground-truth objects.")
    base = hallucinated_objects(original_text, truth, vocabulary) if truth is not None else None
    rows = [
        {
            "name": "original",
            "skip_blocks": (),
            "text": original_text,
            "token_edit_distance": 0,
            "similarity": 1.0,
            "hallucinated": base,
            "disappeared": [] if base is not None else None,
            "appeared": [] if base is not None else None,
        }
    ]
    for name, (blocks, ids, text) in variants.items():
        row = {
            "name": name,
            "skip_blocks": tuple(blocks),
            "text": text,
            "token_edit_distance": edit_distance(list(original), list(ids)),
            "similarity": text_similarity(original_text, text),
        }
        if base is not None:
            found = hallucinated_objects(text, truth, vocabulary)
            row |= {
                "hallucinated": found,
                "disappeared": [w for w in base if w not in found],
                "appeared": [w for w in found if w not in base],
            }
        else:
            row |= {"hallucinated": None, "disappeared": None, "appeared": None}
        rows.append(row)
    return pd.DataFrame(rows)


def skip_experiments(
    model: Any,
    image: Any,
    prompt: str,
    *,
    stages: TraceStages | None = None,
    extra: Mapping[str, Iterable[int]] | None = None,
    max_new_tokens: int = 64,
    truth: Iterable[str] | None = None,
    vocabulary: ObjectVocabulary | None = None,
) -> pd.DataFrame:
    """Generate with each skip set of `skip_plan(stages)` plus user-given `extra` sets and compare
    with the unskipped generation (see `compare_generations` for the columns)."""
    plan = skip_plan(stages, model.n_blocks) if stages is not None else {}
    plan |= {name: sorted(set(blocks)) for name, blocks in (extra or {}).items()}
    if not plan:
        raise ConfigError(
            "Nothing to skip: none of the paper's skip sets applies to these stages (they need "
            "a critical layer, skip.1 and skip.2 a mutation layer after it, skip.3 more than "
            f"{LAST_LAYERS_KEPT} blocks after it) and no `extra` sets were given (from the "
            "shell: --blocks NAME=1,2)."
        )
    inputs = model.prepare(image, prompt)
    original = model.generate(inputs=inputs, max_new_tokens=max_new_tokens)
    variants = {}
    for name, blocks in plan.items():
        result = model.generate(inputs=inputs, max_new_tokens=max_new_tokens, skip_layers=blocks)
        variants[name] = (blocks, result.token_ids, result.text)
    return compare_generations(original.token_ids, original.text, variants, truth, vocabulary)


def _highlight(original: str, text: str) -> str:
    """`text` as HTML with the words that differ from `original` marked."""
    old, new = original.split(), text.split()
    pieces = []
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    for tag, _, _, j1, j2 in matcher.get_opcodes():
        words = html.escape(" ".join(new[j1:j2]))
        if words:
            pieces.append(words if tag == "equal" else f"<mark>{words}</mark>")
    return " ".join(pieces)


def skip_html(table: pd.DataFrame) -> str:
    """Side-by-side HTML of the original and each skip, words that changed highlighted."""
    original = table.iloc[0].text
    cells = []
    for row in table.itertuples():
        is_original = row.name == "original"
        body = html.escape(row.text) if is_original else _highlight(original, row.text)
        notes = []
        if not is_original:
            notes.append(f"skipped blocks {list(row.skip_blocks)}")
            notes.append(f"similarity {row.similarity:.2f}")
            notes.append(f"token edit distance {row.token_edit_distance}")
        if row.hallucinated is not None:
            notes.append(f"hallucinated: {', '.join(row.hallucinated) or '-'}")
        note = f"<br><small>{html.escape('; '.join(notes))}</small>" if notes else ""
        cells.append(
            f'<td style="vertical-align:top;padding:8px;width:{100 // len(table)}%">'
            f"<b>{html.escape(row.name)}</b>{note}<p>{body}</p></td>"
        )
    return f'<table style="border-collapse:collapse"><tr>{"".join(cells)}</tr></table>'
