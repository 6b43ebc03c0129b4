"""One run at a time per run folder: an OS lock on OUT/.lock, held for the whole command.

Rank 0 of a launch (the only process of a plain run) takes an exclusive `fcntl.flock` on OUT/.lock
without waiting and writes who it is into the file (pid, host, start time, command, processes).
The kernel drops the lock when its process exits, however it exits (SIGKILL included), so a lock
never outlives its run; the file itself stays, and its text means nothing while nobody locks it.

Ranks of one torchrun launch share the folder: only rank 0 locks, and every rank learns the outcome
from a gather before anything is written, so all ranks of a refused launch stop with the same error
(none waits at a barrier for a rank that gave up). Every launch has a rank 0, so a second launch
over a running one, of any size, is refused, and so is a plain run over a torchrun one or the
reverse. While rank 0 holds the lock and the other ranks wait at the gather, it may tidy the folder
(`prepare`: remove what killed runs left half-written, repair duplicated parts).
"""

import json
import os
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from mmlens.errors import MMLensError, RunFolderBusyError
from mmlens.runs.sharding import Shard

try:
    import fcntl
except ImportError:  # Windows: no flock; the run goes on unlocked, with a warning
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".lock"


class FolderLock:
    """An exclusive, non-blocking OS lock on `folder/.lock`, released by `release()` or by the
    holder's death. Folders it had to make are removed again on release if nothing was written
    into them, so that a run refused later (a bad setting) leaves nothing behind."""

    def __init__(self, folder: Path, descriptor: int | None, created: list[Path]) -> None:
        self.folder = folder
        self._descriptor = descriptor
        self._created = created  # folders that acquire made, innermost first

    @classmethod
    def acquire(cls, folder: str | Path, command: str = "", world: int = 1) -> "FolderLock":
        """Lock `folder` (made if missing) for this process, or raise RunFolderBusyError naming
        the holder."""
        folder = Path(folder)
        created = [p for p in (folder, *folder.parents) if not p.exists()]
        if fcntl is None:
            folder.mkdir(parents=True, exist_ok=True)
            print(
                f"mmlens: warning: this platform has no fcntl, so {folder} is not locked; make "
                "sure no other run writes it at the same time.",
                file=sys.stderr,
            )
            return cls(folder, None, created)
        for _ in range(100):  # the file may be removed between our open and our lock: again
            folder.mkdir(parents=True, exist_ok=True)
            descriptor = _lock_file(folder / LOCK_NAME)
            if descriptor is not None:
                break
        else:
            raise RunFolderBusyError(busy_message(folder, {}))
        if descriptor < 0:  # the file system cannot lock
            return cls(folder, None, created)
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": command,
            "processes": world,
        }
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, (json.dumps(record) + "\n").encode(), 0)
        return cls(folder, descriptor, created)

    @property
    def held(self) -> bool:
        return self._descriptor is not None

    def release(self) -> None:
        """Clear the holder's record and drop the lock (closing the file drops it); remove the
        folders acquire made if they hold nothing but the lock file."""
        if self._descriptor is None:
            return
        descriptor, self._descriptor = self._descriptor, None
        unused = False
        try:
            unused = bool(self._created) and [p.name for p in self.folder.iterdir()] == [LOCK_NAME]
            if unused:
                (self.folder / LOCK_NAME).unlink()  # while locked: see _lock_file
            else:
                os.ftruncate(descriptor, 0)
        finally:
            os.close(descriptor)
        for folder in self._created if unused else ():
            try:
                folder.rmdir()
            except OSError:  # something else was put there meanwhile: keep it
                break

    def __enter__(self) -> "FolderLock":
        return self

    def __exit__(self, *_: object) -> None:
        self.release()


def _lock_file(path: Path) -> int | None:
    """Open and lock `path`: its descriptor; None if the file was replaced or removed while we
    waited for the lock (a holder removes it only while holding it); -1 if locks do not work."""
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except FileNotFoundError:  # its folder was removed by a holder that wrote nothing
        return None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        raise RunFolderBusyError(busy_message(path.parent, read_holder(path.parent))) from None
    except OSError as error:  # a file system without locks (some network mounts)
        os.close(descriptor)
        print(
            f"mmlens: warning: cannot lock {path} ({error}); the run goes on unlocked, so make "
            "sure no other run writes this folder at the same time.",
            file=sys.stderr,
        )
        return -1
    try:
        same = os.path.samestat(os.fstat(descriptor), os.stat(path))
    except FileNotFoundError:
        same = False
    if not same:
        os.close(descriptor)
        return None
    return descriptor


def read_holder(folder: str | Path) -> dict[str, Any]:
    """What the lock file says about its holder ({} if it says nothing readable yet)."""
    try:
        found = json.loads((Path(folder) / LOCK_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def busy_message(folder: Path, holder: dict[str, Any]) -> str:
    """One line: the folder is taken, by whom, and what to do."""
    if not holder:
        return (
            f"{folder} is being written by another run (it has just started, so it has not said "
            "who it is yet). Wait for it to finish, or stop it; then rerun this command to resume."
        )
    pid, host = holder.get("pid", "?"), holder.get("host", "?")
    here = host == socket.gethostname()
    processes = holder.get("processes")
    launch = (
        f" (rank 0 of {processes} processes)"
        if isinstance(processes, int) and processes > 1
        else ""
    )
    command = f", running `{holder['command']}`" if holder.get("command") else ""
    stop = f"kill {pid}" if here else f"kill {pid} on {host}"
    return (
        f"{folder} is being written by another run: pid {pid}{launch} on {host}, started "
        f"{holder.get('started', '?')}{command}. Wait for it to finish, or stop it ({stop}); then "
        "rerun this command to resume the folder."
    )


@contextmanager
def hold_run_folder(
    folder: str | Path,
    shard: Shard | None = None,
    command: str = "",
    prepare: Callable[[Path], None] | None = None,
) -> Iterator[FolderLock | None]:
    """Own `folder` for the body of the `with`: rank 0 locks it and runs `prepare(folder)` while
    the other ranks wait; then every rank goes on, or every rank raises the same error. Yields the
    lock on rank 0, None on other ranks."""
    shard = shard or Shard()
    folder = Path(folder)
    lock: FolderLock | None = None
    failure: Exception | None = None
    if shard.rank == 0:
        try:
            lock = FolderLock.acquire(folder, command, shard.world)
            if prepare is not None:
                prepare(folder)
        except Exception as error:  # every rank must hear of it, or the others wait forever
            failure = error
    told = failure if failure is None or isinstance(failure, MMLensError) else None
    if failure is not None and told is None:
        told = RuntimeError(f"rank 0 stopped: {failure!r}")
    failures = [found for found in shard.gather(told) if found is not None]
    if failures:
        if lock is not None:
            lock.release()
        raise failure if failure is not None else failures[0]
    try:
        yield lock
    finally:
        if lock is not None:
            lock.release()
