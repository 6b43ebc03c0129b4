"""What every benchmark reader returns: typed items, and the items it had to leave out (with why).

A reader never drops an item silently: an item that cannot be used (its image is missing, its id
has no annotation) is kept in `ItemSet.skipped` with the reason, and a malformed file is a
`BenchmarkDataError` that names the file and the entry.
"""

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from mmlens.errors import BenchmarkDataError


@dataclass(frozen=True)
class BenchmarkItem:
    """One thing to ask a model: an image, a prompt, and what a correct answer is.

    `truth` is the benchmark's ground truth: "yes"/"no" for yes-no questions, the objects that
    are in the image for captions (AMBER's `truth`, COCO's objects). `extra` holds the rest of the
    annotation (AMBER's `hallu` list, POPE's subset, the built-in benchmark's scene).
    """

    benchmark: str
    id: int
    image: Path
    prompt: str
    task: str  # "generative" or "discriminative"
    kind: str  # finer type: AMBER's annotation type, POPE's subset, ...
    truth: str | tuple[str, ...]
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.task not in ("generative", "discriminative"):
            raise ValueError(f"task {self.task!r}: use 'generative' or 'discriminative'")


@dataclass(frozen=True)
class Skipped:
    """An item a reader left out, and why."""

    id: int | str
    reason: str


@dataclass(frozen=True)
class ItemSet(Sequence[BenchmarkItem]):
    """A benchmark's usable items in file order, plus the skipped ones."""

    items: tuple[BenchmarkItem, ...]
    skipped: tuple[Skipped, ...] = ()

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: Any) -> Any:
        return self.items[index]

    def __iter__(self) -> Iterator[BenchmarkItem]:
        return iter(self.items)

    def summary(self) -> str:
        """'3000 items; 2 skipped (image missing: 2)'."""
        if not self.skipped:
            return f"{len(self.items)} items; none skipped"
        reasons: dict[str, int] = {}
        for item in self.skipped:
            key = item.reason.split(":")[0]
            reasons[key] = reasons.get(key, 0) + 1
        detail = ", ".join(f"{reason}: {count}" for reason, count in reasons.items())
        return f"{len(self.items)} items; {len(self.skipped)} skipped ({detail})"

    def to_frame(self) -> pd.DataFrame:
        """One row per item: benchmark, id, image, prompt, task, kind, truth."""
        return pd.DataFrame(
            [
                {
                    "benchmark": item.benchmark,
                    "id": item.id,
                    "image": str(item.image),
                    "prompt": item.prompt,
                    "task": item.task,
                    "kind": item.kind,
                    "truth": item.truth if isinstance(item.truth, str) else list(item.truth),
                }
                for item in self.items
            ],
            columns=["benchmark", "id", "image", "prompt", "task", "kind", "truth"],
        )


def read_json(path: str | Path, what: str) -> Any:
    """A JSON file's content, or a `BenchmarkDataError` naming the file and what it should be."""
    path = Path(path)
    if not path.is_file():
        raise BenchmarkDataError(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BenchmarkDataError(f"{path} is not valid JSON ({error}); expected {what}.") from error


def read_json_lines(path: str | Path, what: str) -> list[dict[str, Any]]:
    """The objects of a JSON-lines file (blank lines ignored), naming the bad line on error."""
    path = Path(path)
    if not path.is_file():
        raise BenchmarkDataError(f"{what} not found: {path}")
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise BenchmarkDataError(
                    f"{path} line {number} is not JSON ({error}); expected {what}, one per line."
                ) from error
            if not isinstance(row, dict):
                raise BenchmarkDataError(f"{path} line {number} is not a JSON object.")
            rows.append(row)
    return rows


def read_records(path: str | Path, what: str) -> list[dict[str, Any]]:
    """Objects from a JSON list or a JSON-lines file (decided by content, not extension)."""
    path = Path(path)
    if not path.is_file():
        raise BenchmarkDataError(f"{what} not found: {path}")
    text = path.read_text(encoding="utf-8").lstrip()
    if text.startswith("["):
        records = read_json(path, what)
        for index, record in enumerate(records):
            if not isinstance(record, dict):
                raise BenchmarkDataError(f"{path} entry {index} is not a JSON object ({what}).")
        return list(records)
    return read_json_lines(path, what)


def read_outputs(path: str | Path, id_key: str, text_key: str, what: str) -> list[tuple[int, str]]:
    """(id, text) pairs from a JSON list or JSON lines of objects with `id_key` and `text_key`."""
    pairs = []
    for index, row in enumerate(read_records(path, what)):
        where = f"{path} entry {index}"
        require_keys(row, (id_key, text_key), where)
        pairs.append(_id_text(row[id_key], row[text_key], text_key, where))
    return pairs


def _id_text(item_id: Any, text: Any, text_key: str, where: str) -> tuple[int, str]:
    """A checked (id, text) pair: the id an integer, the text a string."""
    if not isinstance(text, str):
        raise BenchmarkDataError(f"{where}: {text_key} {text!r} is not a string.")
    return as_int_id(item_id, where), text


def require_keys(record: dict[str, Any], keys: Sequence[str], where: str) -> None:
    """Raise a `BenchmarkDataError` if `record` lacks any of `keys`."""
    missing = [key for key in keys if key not in record]
    if missing:
        raise BenchmarkDataError(
            f"{where} has no {', '.join(repr(k) for k in missing)} (keys: {sorted(record)})."
        )


def as_int_id(value: Any, where: str) -> int:
    """An item id as an int (JSON files hold them as numbers or numeric strings)."""
    try:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, float) and not value.is_integer():
            raise ValueError
        return int(value)
    except (TypeError, ValueError) as error:
        raise BenchmarkDataError(f"{where}: id {value!r} is not an integer.") from error


def id_text_pairs(
    outputs: Any, id_column: str, text_column: str, what: str
) -> list[tuple[int, str]]:
    """(id, text) pairs from a DataFrame with the two columns, a mapping id -> text, or pairs."""
    if isinstance(outputs, pd.DataFrame):
        missing = [c for c in (id_column, text_column) if c not in outputs.columns]
        if missing:
            raise BenchmarkDataError(
                f"{what}: the DataFrame has no column {missing[0]!r} "
                f"(columns: {list(outputs.columns)}); it needs {id_column!r} and {text_column!r}."
            )
        rows = zip(outputs[id_column], outputs[text_column], strict=True)
    elif isinstance(outputs, dict):
        rows = iter(outputs.items())
    else:
        rows = iter(outputs)
    return [
        _id_text(item_id, text, text_column, f"{what} row {index}")
        for index, (item_id, text) in enumerate(rows)
    ]
