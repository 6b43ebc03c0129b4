"""Bring a run folder back to a state that a run can go on from, instead of abandoning it.

Two things can be left behind. Half-written files (a part's .partial-* folder, a .NAME.partial
table) from a killed process: never read, and removed by the next run that holds the folder's
lock. And items in two parts: two runs at once (before runs locked their folder), or a straggling
process of a stopped launch. Copies written under the same settings are the same result, so the
first copy (parts in name order: rank, then sequence) is kept and the others dropped, a part
rewritten without them when it also holds items of its own. Copies written under other settings
(part.json says so; for parts from before part.json, run.json's settings are assumed and their
results must agree) mean the folder mixes two runs: that stays an error.
"""

import json
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from mmlens.errors import ConfigError
from mmlens.runs.parts import (
    PARTIAL_PREFIX,
    TENSORS,
    complete_parts,
    part_record,
    remove_part,
    write_part_folder,
)

RESULT_COLUMNS = ["output", "n_tokens", "status"]  # the same settings give the same values

#: Where `mmlens run shapes|priors` without --data writes the built-in benchmark (in the run).
BENCHMARK_FOLDER = "benchmark"


def tidy_run_folder(out: Path) -> list[str]:
    """Clean and repair `out` and its skip runs (OUT/skips/NAME); one line per thing done. Only
    for the holder of the folder's lock, before any process of its run writes."""
    folders = [out]
    if (out / "skips").is_dir():
        folders += sorted(p for p in (out / "skips").iterdir() if p.is_dir())
    lines = []
    for folder in folders:
        removed = remove_stale(folder)
        if removed:
            lines.append(f"removed {removed} half-written file(s) a stopped run left in {folder}")
        repaired = repair_duplicates(folder)
        if repaired:
            lines.append(repaired)
    return lines


def remove_stale(folder: Path) -> int:
    """Remove the half-written parts and tables of stopped processes; how many were removed."""
    found = list(folder.glob(".*.partial")) + list(folder.glob(f".{BENCHMARK_FOLDER}.partial-*"))
    if (folder / "parts").is_dir():
        found += list((folder / "parts").glob(f"{PARTIAL_PREFIX}*"))
    for path in found:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return len(found)


def repair_duplicates(folder: Path) -> str | None:
    """Keep each item of `folder`'s parts once (the first copy); a line saying what was done, or
    None when every item was written once. Raises if the copies come from other settings."""
    parts = complete_parts(folder / "parts")
    first: dict[int, Path] = {}
    extra: dict[Path, list[int]] = {}
    for part in parts:
        for item in pd.read_parquet(part / "items.parquet", columns=["id"])["id"].tolist():
            if item in first and first[item] != part:
                extra.setdefault(part, []).append(item)
            elif item not in first:
                first[item] = part
    if not extra:
        return None
    _check_same_run(folder, first, extra)
    removed = trimmed = 0
    for part, items in extra.items():
        table = pd.read_parquet(part / "items.parquet")
        if table["id"].isin(items).all():
            remove_part(part)
            removed += 1
            continue
        tokens = pd.read_parquet(part / "tokens.parquet")
        kept_tokens = tokens[~tokens["id"].isin(items)] if len(tokens) else tokens
        record = part_record(part) or {}
        write_part_folder(
            part.parent,
            int(part.name.split("-")[0]),
            table[~table["id"].isin(items)].reset_index(drop=True),
            kept_tokens.reset_index(drop=True),
            record.get("run"),
            tensors_file=tensors if (tensors := part / TENSORS).is_file() else None,
        )  # the trimmed copy is complete before the original goes (tensors whole: the index
        # rows left point into them)
        remove_part(part)
        trimmed += 1
    n_items = sum(len(items) for items in extra.values())
    shown = sorted({i for items in extra.values() for i in items})
    return (
        f"repaired {folder}: {n_items} item(s) {_ids(shown)} were written twice (two runs at once, "
        f"or a crash); kept the first copy of each, removed {removed} duplicate part(s), "
        f"trimmed {trimmed}."
    )


def _check_same_run(folder: Path, first: dict[int, Path], extra: dict[Path, list[int]]) -> None:
    """Raise if the copies of an item were written under other settings than the kept one."""
    folder_run = _run_json(folder)
    runs: dict[Path, tuple[dict[str, Any] | None, bool]] = {}

    def run_of(part: Path) -> tuple[dict[str, Any] | None, bool]:
        """The part's settings and whether part.json recorded them (else run.json's)."""
        if part not in runs:
            run = (part_record(part) or {}).get("run")
            runs[part] = (run, True) if run is not None else (folder_run, False)
        return runs[part]

    for part, items in extra.items():
        for kept in sorted({first[item] for item in items}):
            (mine, mine_recorded), (theirs, theirs_recorded) = run_of(part), run_of(kept)
            if mine != theirs:
                raise ConfigError(
                    f"{folder}: items {_ids(items)} were written twice under other settings "
                    f"({_differences(kept.name, theirs, part.name, mine)}): the folder mixes two "
                    "runs. Use another --out, or remove the parts of the run you do not want."
                )
            if not (mine_recorded and theirs_recorded):
                _check_same_results(folder, kept, part, [i for i in items if first[i] == kept])


def _check_same_results(folder: Path, kept: Path, other: Path, items: list[int]) -> None:
    """Parts from before part.json: the copies must agree, or they came from other settings."""
    columns = ["id", *RESULT_COLUMNS]
    a = pd.read_parquet(kept / "items.parquet", columns=columns).set_index("id").loc[items]
    b = pd.read_parquet(other / "items.parquet", columns=columns).set_index("id").loc[items]
    differ = ~((a == b) | (a.isna() & b.isna())).all(axis=1)
    if differ.any():
        item = int(differ[differ].index[0])
        raise ConfigError(
            f"{folder}: item {item} was written twice with other results ({kept.name}: "
            f"{a.loc[item].to_dict()}, {other.name}: {b.loc[item].to_dict()}), so the copies "
            "come from runs with other settings. Use another --out, or remove the parts of the "
            "run you do not want."
        )


def _run_json(folder: Path) -> dict[str, Any] | None:
    try:
        found = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def _differences(
    name_a: str, a: dict[str, Any] | None, name_b: str, b: dict[str, Any] | None
) -> str:
    a, b = a or {}, b or {}
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return "; ".join(f"{k}: {a.get(k)!r} in {name_a}, {b.get(k)!r} in {name_b}" for k in keys)


def _ids(items: Iterable[int]) -> str:
    shown = sorted(items)
    more = f" and {len(shown) - 5} more" if len(shown) > 5 else ""
    return f"{shown[:5]}{more}"
