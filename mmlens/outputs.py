"""Output folders written whole or not at all: work in a hidden folder beside the target and move
it into place when complete, so an interrupted command never leaves a half-written result."""

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mmlens.errors import ConfigError


def check_out(out: Path, force: bool) -> None:
    """Refuse to overwrite an existing output (or to replace a file by a folder) unless `force`."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} is a file; give a folder path for the output.")
    if out.exists() and not force:
        raise ConfigError(f"{out} already exists; pass --force to replace it.")


def start_folder(out: Path, force: bool) -> Path:
    """A fresh hidden working folder beside `out`, after checking that `out` may be written."""
    check_out(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    work.chmod(0o755)  # mkdtemp makes it private; outputs are ordinary folders
    return work


def finish_folder(work: Path, out: Path) -> None:
    """Move the finished working folder to `out`, replacing what was there."""
    if out.exists():
        shutil.rmtree(out)
    work.rename(out)


@contextmanager
def atomic_folder(out: str | Path, force: bool = False) -> Iterator[Path]:
    """Yield a working folder that becomes `out` when the block ends without an exception."""
    out = Path(out)
    work = start_folder(out, force)
    try:
        yield work
        finish_folder(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
