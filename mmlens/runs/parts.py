"""A run's parts: one folder per written batch (OUT/parts/RRR-NNNNNN: rank, sequence number),
holding items.parquet, tokens.parquet and part.json (who wrote it, under which run settings);
an activation store's parts also hold activations.safetensors, and tokens.parquet is its index.

A part appears whole or not at all: it is written beside its final place as .partial-RRR-... and
renamed. Names that start with a dot are never read; they are what a killed writer left behind.
"""

import json
import os
import shutil
import socket
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
from safetensors.torch import save_file
from torch import Tensor

PARTIAL_PREFIX = ".partial-"
RECORD = "part.json"
TENSORS = "activations.safetensors"


def complete_parts(parts: Path) -> list[Path]:
    """The complete part folders under `parts`, in name order (rank, then sequence)."""
    if not parts.is_dir():
        return []
    return sorted(p for p in parts.iterdir() if p.is_dir() and not p.name.startswith("."))


def write_part_folder(
    parts: Path,
    rank: int,
    items: pd.DataFrame,
    tokens: pd.DataFrame,
    run: dict[str, Any] | None = None,
    tensors: dict[str, Tensor] | None = None,
    tensors_file: Path | None = None,
) -> Path:
    """Write a new complete part of `rank`, numbered after the rank's last one; `run` (the run's
    settings) goes into part.json so that duplicates can be told apart later. An activation
    store's part also holds TENSORS (`tensors`, or an existing part's file `tensors_file`)."""
    work = parts / f"{PARTIAL_PREFIX}{rank:03d}-{uuid.uuid4().hex}"
    work.mkdir()
    items.to_parquet(work / "items.parquet", index=False)
    tokens.to_parquet(work / "tokens.parquet", index=False)
    if tensors is not None:
        save_file(tensors, str(work / TENSORS))
    elif tensors_file is not None:
        shutil.copyfile(tensors_file, work / TENSORS)
    record = {"run": run, "rank": rank, "pid": os.getpid(), "host": socket.gethostname()}
    (work / RECORD).write_text(json.dumps(record) + "\n", encoding="utf-8")
    _fsync_folder(work)
    mine = [p for p in complete_parts(parts) if p.name.startswith(f"{rank:03d}-")]
    sequence = int(mine[-1].name.split("-")[1]) + 1 if mine else 0
    for _ in range(1000):  # a name taken meanwhile (only if another writer ignored the lock)
        final = parts / f"{rank:03d}-{sequence:06d}"
        try:
            os.rename(work, final)
        except OSError:
            if not final.exists():
                raise
            sequence += 1
        else:
            return final
    raise OSError(f"no free part name for rank {rank} in {parts}")


def part_record(part: Path) -> dict[str, Any] | None:
    """What part.json says (None for parts written before parts recorded it)."""
    try:
        found = json.loads((part / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def remove_part(part: Path) -> None:
    """Remove a complete part so that readers never see half of it: hide it first (one rename)."""
    hidden = part.with_name(f"{PARTIAL_PREFIX}removed-{part.name}-{uuid.uuid4().hex[:8]}")
    os.rename(part, hidden)
    shutil.rmtree(hidden, ignore_errors=True)


def _fsync_folder(folder: Path) -> None:
    for file in folder.iterdir():
        with open(file, "rb") as handle:
            os.fsync(handle.fileno())
