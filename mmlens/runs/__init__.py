"""Running a model over a benchmark's items: incremental storage, resume, shards."""

from mmlens.runs.exports import OUTPUT_FILES, write_benchmark_output
from mmlens.runs.locking import hold_run_folder
from mmlens.runs.runner import RunSettings, RunSummary, run_items
from mmlens.runs.sharding import Shard
from mmlens.runs.store import RunStore, read_run

__all__ = [
    "OUTPUT_FILES",
    "RunSettings",
    "RunStore",
    "RunSummary",
    "Shard",
    "hold_run_folder",
    "read_run",
    "run_items",
    "write_benchmark_output",
]
