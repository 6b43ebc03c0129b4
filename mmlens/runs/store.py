"""A run's folder on disk, written so that a killed run loses at most its unwritten batch.

    OUT/.lock             held by the run writing the folder: one run at a time (see `locking`)
    OUT/run.json          what ran (benchmark, model, settings): a second run with the same OUT
                          and other settings is refused, never mixed in
    OUT/parts/RRR-NNNNNN/ one folder per written batch (process rank, sequence number) holding
                          items.parquet, tokens.parquet and part.json; it appears whole (written
                          beside it as .partial-RRR-..., then renamed) or not at all (see `parts`)
    OUT/items.parquet     every item once, in benchmark order (merged when the run finishes)
    OUT/tokens.parquet    every generated token's per-layer records
    OUT/summary.json      counts and timing
    OUT/skips/NAME/       the same items with blocks skipped (`mmlens run --skips`), each a run

On resume, items in any complete part are done (whether they succeeded or failed); partial
folders of this process's rank are removed. An item in two parts (two runs at once before runs
locked their folder, or a crash) is kept once, from the first part (see `repair`).
"""

import json
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from torch import Tensor

from mmlens.errors import ConfigError
from mmlens.runs.locking import LOCK_NAME
from mmlens.runs.parts import complete_parts, write_part_folder
from mmlens.runs.repair import BENCHMARK_FOLDER, repair_duplicates

FORMAT_VERSION = 1
OWN_ENTRIES = frozenset(
    {"parts", "run.json", ".run.json.partial", "skips", LOCK_NAME, BENCHMARK_FOLDER}
)


@dataclass
class RunStore:
    """Reads and writes one run's folder (see the module docstring for the layout)."""

    out: Path
    rank: int = 0
    run: dict[str, Any] | None = None  # run.json's record, written into each part's part.json

    @staticmethod
    def check(out: str | Path, identity: dict[str, Any]) -> None:
        """Raise if `out` cannot hold this run (a file, another run, not a run); write nothing."""
        out = Path(out)
        if out.exists() and not out.is_dir():
            raise ConfigError(f"--out {out} is a file; give a folder for the run.")
        record = {"format": FORMAT_VERSION, **identity}
        path = out / "run.json"
        if path.is_file():
            try:
                existing = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as error:
                raise ConfigError(f"{path} is damaged ({error}); use another --out.") from error
            changed = sorted(
                k for k in set(existing) | set(record) if existing.get(k) != record.get(k)
            )
            if changed:
                detail = "; ".join(
                    f"{k}: {existing.get(k)!r} there, {record.get(k)!r} now" for k in changed
                )
                raise ConfigError(
                    f"{out} holds another run ({detail}); use another --out, or the same settings "
                    "to resume it."
                )
        elif out.exists() and any(
            p.name not in OWN_ENTRIES and not p.name.startswith(f".{BENCHMARK_FOLDER}.partial-")
            for p in out.iterdir()
        ):
            # (other ranks of the same launch may already have made parts/ and run.json)
            raise ConfigError(f"{out} exists and is not an mmlens run; use another --out.")

    @classmethod
    def open(cls, out: str | Path, identity: dict[str, Any], rank: int = 0) -> "RunStore":
        """Create the folder, or reopen it after checking that it holds the same run. Only one
        run may write a folder at a time: hold it (`locking.hold_run_folder`, as `mmlens run`
        does) around opening and running."""
        cls.check(out, identity)
        out = Path(out)
        record = {"format": FORMAT_VERSION, **identity}
        path = out / "run.json"
        (out / "parts").mkdir(parents=True, exist_ok=True)
        if not path.is_file():
            write_text_atomic(path, json.dumps(record, indent=1) + "\n")
        store = cls(out, rank, record)
        for stale in (out / "parts").glob(f".partial-{rank:03d}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        return store

    @property
    def parts(self) -> list[Path]:
        """Complete part folders, in name order."""
        return complete_parts(self.out / "parts")

    def done_ids(self) -> set[int]:
        """Ids of the items any complete part holds."""
        done: set[int] = set()
        for part in self.parts:
            done.update(pd.read_parquet(part / "items.parquet", columns=["id"])["id"].tolist())
        return done

    def write_part(
        self, items: pd.DataFrame, tokens: pd.DataFrame, tensors: dict[str, Tensor] | None = None
    ) -> Path:
        """Write one batch's tables (and an activation store's tensors) as a new complete part."""
        return write_part_folder(
            self.out / "parts", self.rank, items, tokens, self.run, tensors=tensors
        )

    def read(self, table: str) -> pd.DataFrame:
        """One table ("items" or "tokens") over every complete part."""
        frames = [pd.read_parquet(part / f"{table}.parquet") for part in self.parts]
        frames = [f for f in frames if len(f)]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def merge(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Write items.parquet and tokens.parquet over all parts, in benchmark order (an item
        written twice is first kept once, with a warning: see `repair`)."""
        repaired = repair_duplicates(self.out)
        if repaired:
            warnings.warn(repaired, RuntimeWarning, stacklevel=2)
        items = self.read("items")
        tokens = self.read("tokens")
        if len(items):
            items = items.sort_values("order", kind="stable").reset_index(drop=True)
            if items["id"].duplicated().any():
                repeated = items.loc[items["id"].duplicated(), "id"].tolist()[:5]
                raise ConfigError(f"{self.out}: items {repeated} were written twice.")
        if len(tokens):
            tokens = tokens.sort_values(["order", "step", "layer"], kind="stable")
            tokens = tokens.reset_index(drop=True)
        for name, frame in (("items", items), ("tokens", tokens)):
            partial = self.out / f".{name}.parquet.partial"
            frame.to_parquet(partial, index=False)
            os.replace(partial, self.out / f"{name}.parquet")
        return items, tokens


def write_text_atomic(path: Path, text: str) -> None:
    """Write a file so that readers see the old content or the new, never half of it."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def run_identity(folder: str | Path) -> dict[str, Any]:
    """What a run folder's run.json says ran: benchmark, data, model, settings."""
    path = Path(folder) / "run.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ConfigError(f"{path} cannot be read ({error}); is {folder} a run folder?") from error


def read_run(folder: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The merged items and tokens tables of a finished `mmlens run` folder."""
    folder = Path(folder)
    missing = [
        n for n in ("run.json", "items.parquet", "tokens.parquet") if not (folder / n).is_file()
    ]
    if missing:
        raise ConfigError(
            f"{folder} is not a finished run folder (missing {', '.join(missing)}); run "
            "`mmlens run ... --out` to the end (rerunning the same command resumes it)."
        )
    try:
        return pd.read_parquet(folder / "items.parquet"), pd.read_parquet(folder / "tokens.parquet")
    except (OSError, ValueError) as error:
        raise ConfigError(f"{folder}: a run table cannot be read ({error}).") from error
