"""Which items this process traces when a launcher starts several (torchrun, accelerate launch).

Both launchers set RANK, WORLD_SIZE and LOCAL_RANK; item i belongs to rank i % WORLD_SIZE. Rank 0
locks the run folder for the whole launch and tells the others (`gather`; see `locking`). Every
process writes its own parts; after a barrier (a gloo process group, which works beside CUDA and
on CPU alike), rank 0 merges them.
"""

import os
from dataclasses import dataclass
from typing import Any

from mmlens.errors import ConfigError


@dataclass(frozen=True)
class Shard:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.rank < self.world:
            raise ConfigError(
                f"RANK={self.rank} with WORLD_SIZE={self.world}: need 0 <= RANK < WORLD_SIZE."
            )

    @classmethod
    def from_env(cls) -> "Shard":
        """This process's shard from the launcher's environment (one shard when none is set)."""
        try:
            return cls(
                int(os.environ.get("RANK", 0)),
                int(os.environ.get("WORLD_SIZE", 1)),
                int(os.environ.get("LOCAL_RANK", 0)),
            )
        except ValueError as error:
            raise ConfigError(
                f"RANK / WORLD_SIZE / LOCAL_RANK must be integers ({error})."
            ) from error

    def owns(self, order: int) -> bool:
        return order % self.world == self.rank

    def device(self, device: str) -> str:
        """`cuda` becomes this process's GPU (`cuda:LOCAL_RANK`) when several processes run."""
        return f"cuda:{self.local_rank}" if device == "cuda" and self.world > 1 else device

    def barrier(self) -> None:
        """Wait until every process got here (nothing to wait for with one process)."""
        if self.world == 1:
            return
        self._group().barrier()

    def gather(self, value: Any) -> list[Any]:
        """Every process's `value` (picklable), in rank order; a barrier too. With one process,
        `[value]`. Lets ranks agree on an outcome (e.g. rank 0 could not lock the folder)."""
        if self.world == 1:
            return [value]
        found: list[Any] = [None] * self.world
        self._group().all_gather_object(found, value)
        return found

    def _group(self) -> Any:
        """`torch.distributed`, its gloo process group started on first use."""
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("gloo", rank=self.rank, world_size=self.world)
        return dist

    def close(self) -> None:
        import torch.distributed as dist

        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()
