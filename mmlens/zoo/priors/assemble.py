"""Assemble the full `mmlens/priors` checkpoint offline: SmolLM2 from the installed GGUF plus the
trained parts shipped in this package, saved once as a normal `transformers` folder.

The folder lives under `$MMLENS_CACHE` (default `~/.cache/mmlens`) and is named by the trained
parts' hash, so new weights never meet an old assembly. Writing goes to a temporary folder that is
renamed into place, so concurrent first loads (e.g. several shards) cannot see half a checkpoint.
"""

import hashlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

from mmlens.errors import CheckpointNotFoundError

TRAINED_FILE = Path(__file__).parent / "trained.safetensors"
DONE = "assembled.txt"


def cache_root() -> Path:
    return Path(os.environ.get("MMLENS_CACHE") or Path.home() / ".cache" / "mmlens").expanduser()


def checkpoint_dir(trained: Path = TRAINED_FILE) -> Path:
    """The assembled checkpoint's folder, assembling it first if needed (about half a minute)."""
    if not trained.is_file():
        raise CheckpointNotFoundError(f"{trained} is missing: reinstall mmlens.")
    digest = hashlib.sha256(trained.read_bytes()).hexdigest()[:16]
    target = cache_root() / f"priors-{digest}"
    if (target / DONE).is_file():
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".priors-", dir=target.parent))
    except OSError as error:
        raise CheckpointNotFoundError(
            f"Cannot write the assembled mmlens/priors checkpoint under {target.parent} ({error}); "
            "point MMLENS_CACHE at a writable folder."
        ) from error
    print(
        f"mmlens/priors: assembling the checkpoint in {target} (once; about half a minute)",
        file=sys.stderr,
    )
    try:
        _assemble(trained, work)
        (work / DONE).write_text(f"trained parts sha256 prefix {digest}\n", encoding="utf-8")
        try:
            work.rename(target)
        except OSError:  # another process finished first
            if not (target / DONE).is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def _assemble(trained: Path, out: Path) -> None:
    from mmlens.zoo.priors.build import build_model, build_processor, load_trained
    from mmlens.zoo.priors.language_model import load_language_model

    language_model, tokenizer = load_language_model()
    processor = build_processor(tokenizer)
    model = build_model(language_model, processor)
    load_trained(model, trained)
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
