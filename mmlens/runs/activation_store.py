"""An activation folder written by `collect_activations` / `mmlens activations`, and reading it.

    OUT/run.json, OUT/parts/...   as a run folder (`store`), each part with activations.safetensors
    OUT/items.parquet             every item once, in benchmark order (prompt, truth, output)
    OUT/index.parquet             one row per item, hook and position kind: the part, where its rows
                                  start, how many, their shape, sequence positions, generated ids

Reading never loads more than it is asked for: `vectors` reads one hook and kind, and `dataset`
reads one vector at a time from the memory-mapped safetensors files, so a store larger than RAM
streams (e.g. into a sparse autoencoder's trainer).
"""

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from safetensors import SafetensorError, safe_open
from torch import Tensor
from torch.utils.data import Dataset

from mmlens.benchmarks.items import BenchmarkItem, ItemSet
from mmlens.errors import ConfigError
from mmlens.runs.activations import ActivationSettings, check_hooks, collect_batch
from mmlens.runs.locking import hold_run_folder
from mmlens.runs.parts import TENSORS, complete_parts
from mmlens.runs.repair import repair_duplicates, tidy_run_folder
from mmlens.runs.runner import RunSummary, run_items
from mmlens.runs.sharding import Shard
from mmlens.runs.store import RunStore


def collect_activations(
    model: Any,
    items: ItemSet | Sequence[BenchmarkItem],
    out: str | Path,
    settings: ActivationSettings,
    identity: dict[str, Any] | None = None,
    shard: Shard | None = None,
    progress: bool = True,
) -> RunSummary:
    """Write `settings.hooks` at `settings.positions` for every item into `out` (resumable: the
    same call again does what is left; other settings there are refused). `identity` adds what
    the store records of the run (benchmark, data, model); rank 0 merges the index at the end."""
    shard = shard or Shard()
    check_hooks(model, settings)
    record = {"kind": "activations", "model": model.name, **(identity or {})}
    record.update(settings.identity())
    with hold_run_folder(out, shard, "collect_activations", prepare=tidy_run_folder):
        if shard.rank == 0:
            store = RunStore.open(out, record, shard.rank)
        shard.barrier()
        if shard.rank != 0:
            store = RunStore.open(out, record, shard.rank)
        summary = run_items(model, items, store, settings, shard, progress, work=collect_batch)
        shard.barrier()
        if shard.rank == 0:
            merge_index(Path(out))
        shard.barrier()
    return summary


def merge_index(out: Path) -> None:
    """Write OUT/items.parquet and OUT/index.parquet over every complete part."""
    repair_duplicates(out)
    items, index = [], []
    for part in complete_parts(out / "parts"):
        items.append(pd.read_parquet(part / "items.parquet"))
        rows = pd.read_parquet(part / "tokens.parquet")
        if len(rows):
            index.append(rows.assign(part=part.name))
    merged = pd.concat(items, ignore_index=True) if items else pd.DataFrame()
    if len(merged):
        merged = merged.sort_values("order", kind="stable").reset_index(drop=True)
    table = pd.concat(index, ignore_index=True) if index else pd.DataFrame()
    if len(table):
        table = table.sort_values(["order", "hook", "kind"], kind="stable").reset_index(drop=True)
    for name, frame in (("items", merged), ("index", table)):
        partial = out / f".{name}.parquet.partial"
        frame.to_parquet(partial, index=False)
        os.replace(partial, out / f"{name}.parquet")


class ActivationStore:
    """A finished activation folder: its items, its index, and the vectors on demand."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        missing = [n for n in ("run.json", "index.parquet") if not (self.folder / n).is_file()]
        if missing:
            raise ConfigError(
                f"{self.folder} is not a finished activation folder (missing "
                f"{', '.join(missing)}); run `mmlens activations ... --out` to the end (the same "
                "command resumes it)."
            )
        try:
            self.settings = json.loads((self.folder / "run.json").read_text(encoding="utf-8"))
            self.items = pd.read_parquet(self.folder / "items.parquet")
            self.index = pd.read_parquet(self.folder / "index.parquet")
        except (OSError, ValueError) as error:
            raise ConfigError(f"{self.folder}: a table cannot be read ({error}).") from error
        self._files: dict[str, Any] = {}

    def rows(self, hook: str, kind: str) -> pd.DataFrame:
        """The index rows of one hook and position kind, in benchmark order."""
        found = self.index[(self.index.hook == hook) & (self.index.kind == kind)]
        if not len(found):
            pairs = sorted(set(zip(self.index.hook, self.index.kind, strict=True)))[:6]
            raise ConfigError(
                f"{self.folder} holds no {hook!r} at {kind!r}; it holds e.g. {pairs}."
            )
        return found.reset_index(drop=True)

    def _tensor(self, part: str, key: str, start: int, count: int) -> Tensor:
        if part not in self._files:
            path = self.folder / "parts" / part / TENSORS
            try:
                self._files[part] = safe_open(str(path), framework="pt")
            except (OSError, SafetensorError) as error:
                raise ConfigError(f"{path} cannot be read ({error}).") from error
        return self._files[part].get_slice(key)[start : start + count]

    def vectors(self, hook: str, kind: str) -> tuple[Float[np.ndarray, "row ..."], pd.DataFrame]:
        """Every stored vector of `hook` at `kind` as one float32 array, and a table saying
        whose each row is (item id, order, position, generated token id, index within item)."""
        rows = self.rows(hook, kind)
        arrays, tables = [], []
        for row in rows.itertuples():
            arrays.append(self._tensor(row.part, row.key, int(row.start), int(row.count)))
            positions = list(row.positions) or [-1] * int(row.count)
            tokens = list(row.token_ids) or [-1] * int(row.count)
            tables.append(
                pd.DataFrame(
                    {
                        "id": row.id,
                        "order": row.order,
                        "within": np.arange(int(row.count)),
                        "position": positions,
                        "token_id": tokens,
                    }
                )
            )
        values = torch.cat(arrays).float().numpy() if arrays else np.zeros((0,), np.float32)
        return values, pd.concat(tables, ignore_index=True)

    def dataset(self, hook: str, kind: str) -> "ActivationDataset":
        """A PyTorch `Dataset` of single vectors, read lazily from disk."""
        return ActivationDataset(self, self.rows(hook, kind))


class ActivationDataset(Dataset):
    """One vector per index: (vector [float32], item id); reads only that vector's bytes."""

    def __init__(self, store: ActivationStore, rows: pd.DataFrame) -> None:
        self.store = store
        self.rows = rows
        self.ends = np.cumsum(rows["count"].to_numpy())

    def __len__(self) -> int:
        return int(self.ends[-1]) if len(self.ends) else 0

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        which = int(np.searchsorted(self.ends, index, side="right"))
        row = self.rows.iloc[which]
        within = index - (int(self.ends[which - 1]) if which else 0)
        vector = self.store._tensor(row.part, row.key, int(row.start) + within, 1)[0]
        return vector.float(), int(row.id)
