"""Progress for people, wherever the output goes: tqdm's bar on a terminal or in a notebook, and
a few plain lines (start, every quarter, end) when stderr is a log file, a pipe or CI, where the
bar's hundreds of carriage-return updates would flood the log."""

import io
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

from tqdm.auto import tqdm

#: Plain-line mode prints when the count crosses each of these fractions of the total.
MILESTONES = (0.25, 0.5, 0.75)


def interactive(stream: io.TextIOBase | None = None) -> bool:
    """Whether a live bar can be drawn: a terminal, or a Jupyter kernel (tqdm's widget)."""
    stream = stream or sys.stderr
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) or "ipykernel" in sys.modules


def progress_bar(
    iterable: Iterable[Any] | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    disable: bool = False,
    **options: Any,
) -> Any:
    """A tqdm bar on a terminal or in a notebook, `PlainProgress` elsewhere (same calls:
    iterate, `update`, `set_postfix_str`, `close`, `with`)."""
    if disable or interactive():
        return tqdm(iterable, total=total, desc=desc, unit=unit, disable=disable, **options)
    return PlainProgress(iterable, total=total, desc=desc, unit=unit)


class PlainProgress:
    """Progress as a few whole lines on stderr: when it starts, at each quarter of a known
    total, and when it ends (with the time taken)."""

    def __init__(
        self,
        iterable: Iterable[Any] | None = None,
        total: int | None = None,
        desc: str = "",
        unit: str = "it",
        stream: io.TextIOBase | None = None,
    ) -> None:
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.total, self.desc, self.unit = total, desc, unit
        self.stream = stream or sys.stderr
        self.n = 0
        self.postfix = ""
        self.start = time.monotonic()
        self._next = 0
        self._closed = False
        self._say(f"started ({total} {unit})" if total else "started")

    def _say(self, what: str) -> None:
        label = f"{self.desc}: " if self.desc else ""
        extra = f" [{self.postfix}]" if self.postfix else ""
        print(f"{label}{what}{extra}", file=self.stream, flush=True)

    def update(self, n: int = 1) -> None:
        self.n += n
        while (
            self.total
            and self._next < len(MILESTONES)
            and self.n >= MILESTONES[self._next] * self.total
        ):
            fraction = MILESTONES[self._next]
            elapsed = time.monotonic() - self.start
            self._say(f"{self.n}/{self.total} {self.unit} ({fraction:.0%}), {elapsed:.1f} s")
            self._next += 1

    def set_postfix_str(self, text: str = "", refresh: bool = True) -> None:
        self.postfix = text

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        count = f"{self.n}/{self.total}" if self.total else str(self.n)
        self._say(f"done, {count} {self.unit} in {time.monotonic() - self.start:.1f} s")

    def __iter__(self) -> Iterator[Any]:
        assert self.iterable is not None, "PlainProgress without an iterable is not iterable"
        for item in self.iterable:
            yield item
            self.update()
        self.close()

    def __enter__(self) -> "PlainProgress":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
