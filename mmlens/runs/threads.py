"""How many CPU threads a data-set run gives torch.

torch defaults to one thread per core. On a machine that other work shares, they oversubscribe
the cores: `benchmarks/run_threads.py` measured CPU runs 2.1-2.4x slower with torch's default than
with one thread on a 2-core machine with one other busy core, while one thread cost 0-12 % when the
machine was idle (benchmarks/RESULTS.md). So a CPU run uses one thread per process, as torchrun
gives each rank, unless the user says otherwise (`--threads`, or OMP_NUM_THREADS, which torch
reads itself). GPU runs keep torch's default: the CPU does little there.
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from mmlens.errors import ConfigError


def run_threads(requested: int | None, device: str) -> int | None:
    """The thread count to set, or None to leave torch's as it is."""
    if requested is not None:
        if isinstance(requested, bool) or requested < 1:
            raise ConfigError(f"--threads {requested}: give a number of threads >= 1.")
        return requested
    if os.environ.get("OMP_NUM_THREADS"):
        return None  # the user's (or torchrun's) choice, already read by torch
    return 1 if str(device).startswith("cpu") else None


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run the body with `count` torch threads (None: as they are), then restore the count, so a
    run called in-process (a notebook, a test) leaves its caller's setting alone."""
    before = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
