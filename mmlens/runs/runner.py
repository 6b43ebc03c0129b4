"""Trace a model over a benchmark's items in batches, writing as it goes (see `store`).

One row per item (what was asked, what the model said, ground truth, timing, status) and one per
generated token and layer (the trace's records, as `Trace.to_frame`, plus `truth_logprob` and
`truth_word`: the best log-prob among the first tokens of the item's truth words, and which word).
A bad item (a missing or unreadable image, a prompt longer than the context) is recorded as
failed with its error and the run goes on; anything else stops the run, and rerunning the same
command resumes it.
"""

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from mmlens.benchmarks.items import BenchmarkItem, ItemSet
from mmlens.errors import ConfigError, MMLensError
from mmlens.progress import progress_bar
from mmlens.runs.sharding import Shard
from mmlens.runs.store import RunStore
from mmlens.skipping import kept_blocks
from mmlens.trace import Trace
from mmlens.words import truth_token_ids, truth_words

ITEM_COLUMNS = [
    "order", "id", "benchmark", "task", "kind", "image", "prompt", "truth", "extra", "output",
    "n_tokens", "status", "error", "seconds", "cpu_seconds", "batch_size", "shard",
]  # fmt: skip


@dataclass(frozen=True)
class RunSettings:
    """How every item is traced; all but `flush_every` are part of the run's identity."""

    max_new_tokens: int = 64
    lens: str = "normed"
    top_k: int = 5
    suffix: str = ""  # appended to every prompt, e.g. " Answer with one word."
    flush_every: int = 16  # items per written part
    batch_size: int = 1  # items traced in one forward (equal to one at a time up to rounding)
    skip_layers: tuple[int, ...] = ()  # blocks not computed (skip experiments over a data set)
    visual_attention: bool = False  # tokens table: image_attention (share, mean over heads)

    def __post_init__(self) -> None:
        object.__setattr__(self, "skip_layers", tuple(sorted(set(self.skip_layers))))
        values = (self.max_new_tokens, self.top_k, self.flush_every, self.batch_size)
        if min(values) < 1:
            raise ConfigError(
                f"max_new_tokens={self.max_new_tokens}, top_k={self.top_k}, flush_every="
                f"{self.flush_every}, batch_size={self.batch_size}: each must be >= 1."
            )

    def identity(self) -> dict[str, Any]:
        """What makes two runs the same run (how they were batched and flushed does not)."""
        found = {k: v for k, v in asdict(self).items() if k not in ("flush_every", "batch_size")}
        found["skip_layers"] = list(self.skip_layers)  # as run.json holds it
        if not self.skip_layers:
            del found["skip_layers"]  # runs made before skip settings existed stay resumable
        if not self.visual_attention:
            del found["visual_attention"]  # (likewise)
        return found


@dataclass(frozen=True)
class RunSummary:
    n_items: int  # this process's share, done before or now
    n_resumed: int  # already in the folder when this process started
    n_ok: int
    n_failed: int
    n_unreadable: int  # items the reader could not use (image missing...), recorded as failed
    seconds: float
    done_as: str = "traced"  # what was done to an item ("collected" for activation stores)

    def line(self) -> str:
        """One line for people: what this process did, naming only what happened."""
        done = [f"{self.n_resumed} already done"] if self.n_resumed else []
        done.append(f"{self.n_ok} {self.done_as}")
        if self.n_failed:
            done.append(f"{self.n_failed} failed")
        text = f"{self.n_items} items: {', '.join(done)}, in {self.seconds:.1f} s"
        if self.n_unreadable:
            text += f"; {self.n_unreadable} more the reader could not use, recorded as failed"
        return text


def _item_row(item: BenchmarkItem, order: int, shard: Shard, **result: Any) -> dict[str, Any]:
    truth = item.truth if isinstance(item.truth, str) else list(item.truth)
    return {
        "order": order,
        "id": item.id,
        "benchmark": item.benchmark,
        "task": item.task,
        "kind": item.kind,
        "image": str(item.image),
        "prompt": item.prompt,
        "truth": json.dumps(truth),
        "extra": json.dumps(item.extra),
        "shard": shard.rank,
        **result,
    }


def _token_frame(trace: Trace, rivals: list[int], truth: dict[int, str]) -> pd.DataFrame:
    """`Trace.to_frame` without the batch's rival columns, plus the item's own truth: the highest
    log-prob among its truth words' first tokens, and which word that is (NaN / "" if none)."""
    frame = trace.to_frame().drop(columns=[f"rival_{r}" for r in trace.rival_words])
    if truth:
        columns = [rivals.index(token) for token in truth]
        logprobs = trace.rival_logprobs[:, :, columns].reshape(-1, len(columns))
        best = logprobs.argmax(axis=1)
        words = np.asarray(list(truth.values()), dtype=object)
        frame["truth_logprob"] = logprobs[np.arange(len(best)), best]
        frame["truth_word"] = words[best]
    else:
        frame["truth_logprob"] = np.float32(np.nan)
        frame["truth_word"] = ""
    return frame


Result = tuple[dict[str, Any], pd.DataFrame | None, dict[str, Tensor] | None]
Work = Callable[[Any, list[BenchmarkItem], Any], list[Result]]


def _trace_batch(model: Any, batch: list[BenchmarkItem], settings: RunSettings) -> list[Result]:
    """Trace items in one forward; if one of them is bad, each alone, so that only the bad ones
    fail. Time is shared equally among a batch's items."""
    start, cpu = time.perf_counter(), time.process_time()
    truths = [truth_token_ids(model.tokenizer, truth_words(i.task, i.truth)) for i in batch]
    rivals = sorted({token for truth in truths for token in truth})
    try:
        traces = model.trace(
            [item.image for item in batch],
            [item.prompt + settings.suffix for item in batch],
            max_new_tokens=settings.max_new_tokens,
            lens=settings.lens,
            top_k=settings.top_k,
            rivals=rivals,
            skip_layers=settings.skip_layers,
            visual_attention=settings.visual_attention,
            progress=False,
        )
    except MMLensError as error:
        if len(batch) == 1:
            failed = {"output": None, "n_tokens": 0, "status": "failed", "error": str(error)}
            results: list[Result] = [(failed, None, None)]
        else:
            return [found for item in batch for found in _trace_batch(model, [item], settings)]
    else:
        results = [
            (
                {"output": t.text, "n_tokens": t.n_steps, "status": "ok", "error": ""},
                _token_frame(t, rivals, truth),
                None,
            )
            for t, truth in zip(traces, truths, strict=True)
        ]
    seconds = (time.perf_counter() - start) / len(batch)
    cpu_seconds = (time.process_time() - cpu) / len(batch)
    for result, _, _ in results:
        result.update(seconds=seconds, cpu_seconds=cpu_seconds, batch_size=len(batch))
    return results


def check_settings(model: Any, settings: RunSettings) -> None:
    """Settings the model cannot run (not items that fail): refused before anything is written."""
    if settings.top_k > model.d_vocab:
        raise ConfigError(f"top_k={settings.top_k} is more than the vocabulary ({model.d_vocab}).")
    kept_blocks(model.n_blocks, settings.skip_layers)


def run_items(
    model: Any,
    items: ItemSet | Sequence[BenchmarkItem],
    store: RunStore,
    settings: Any,
    shard: Shard | None = None,
    progress: bool = True,
    work: Work | None = None,
) -> RunSummary:
    """Trace this shard's items that the store does not hold yet, writing a part every
    `settings.flush_every` items. Items a reader skipped are written as failed (by rank 0).
    `work` replaces tracing (e.g. `activations.collect_batch`): per item a result, its rows
    and tensors, which the part stores (`PartTensors`)."""
    shard = shard or Shard()
    if work is None:
        check_settings(model, settings)
    work = work or _trace_batch
    start = time.perf_counter()
    done = store.done_ids()
    mine = [(order, item) for order, item in enumerate(items) if shard.owns(order)]
    pending = [(order, item) for order, item in mine if item.id not in done]
    rows: list[dict[str, Any]] = []
    token_frames: list[pd.DataFrame] = []
    tensors = PartTensors()
    skipped = getattr(items, "skipped", ())
    if shard.rank == 0:
        for index, skip in enumerate(s for s in skipped if s.id not in done):
            rows.append(
                {
                    "order": len(items) + index,
                    "id": skip.id,
                    "benchmark": items[0].benchmark if len(items) else "",
                    "status": "failed",
                    "error": skip.reason,
                    "n_tokens": 0,
                    "shard": shard.rank,
                }
            )
    n_ok = n_failed = 0

    def flush() -> None:
        if not rows:
            return
        frame = pd.DataFrame(rows).reindex(columns=ITEM_COLUMNS)
        tokens = pd.concat(token_frames, ignore_index=True) if token_frames else pd.DataFrame()
        store.write_part(frame, tokens, tensors.take())
        rows.clear()
        token_frames.clear()

    bar = progress_bar(
        total=len(pending), desc=f"run (rank {shard.rank})", unit="item", disable=not progress
    )
    for first in range(0, len(pending), settings.batch_size):
        chunk = pending[first : first + settings.batch_size]
        results = work(model, [item for _, item in chunk], settings)
        for (order, item), (result, tokens, arrays) in zip(chunk, results, strict=True):
            rows.append(_item_row(item, order, shard, **result))
            if tokens is None:
                n_failed += 1
            else:
                n_ok += 1
                tokens.insert(0, "order", order)
                tokens.insert(1, "id", item.id)
                if arrays is not None:
                    tokens["start"] = tensors.add(tokens["key"].tolist(), arrays)
                token_frames.append(tokens)
        bar.update(len(chunk))
        if len(rows) >= settings.flush_every:
            flush()
    bar.close()
    flush()
    unreadable = sum(1 for s in skipped if s.id not in done) if shard.rank == 0 else 0
    return RunSummary(
        len(mine),
        len(mine) - len(pending),
        n_ok,
        n_failed,
        unreadable,
        time.perf_counter() - start,
        "traced" if work is _trace_batch else "collected",
    )


class PartTensors:
    """The tensors of the items waiting for the next part: each key's rows one item after
    another; `add` says where an item's rows start."""

    def __init__(self) -> None:
        self.pieces: dict[str, list[Tensor]] = {}
        self.sizes: dict[str, int] = {}

    def add(self, keys: list[str], arrays: dict[str, Tensor]) -> list[int]:
        starts = []
        for key in keys:
            starts.append(self.sizes.get(key, 0))
            self.pieces.setdefault(key, []).append(arrays[key])
            self.sizes[key] = starts[-1] + len(arrays[key])
        return starts

    def take(self) -> dict[str, Tensor] | None:
        """Every key's rows as one tensor (None when no item brought any), and start afresh."""
        if not self.pieces:
            return None
        joined = {key: torch.cat(pieces) for key, pieces in self.pieces.items()}
        self.pieces, self.sizes = {}, {}
        return joined
