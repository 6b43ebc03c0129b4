"""A checkpoint's safetensors files checked before `transformers` reads them: truncated or
garbage files and sharded indexes that name missing shards are one clear error, not a
`SafetensorError` traceback from deep inside `from_pretrained`."""

import json
from pathlib import Path

from safetensors import SafetensorError, safe_open

from mmlens.errors import CheckpointNotFoundError

_FIX = "download or convert the checkpoint again"


def check_weight_files(folder: Path, files: list[Path]) -> None:
    """Every file's header parses and covers the file exactly (a truncated download does not),
    and every sharded index names shards that exist."""
    for file in files:
        try:
            with safe_open(file, framework="pt"):
                pass
        except (SafetensorError, OSError) as error:
            raise CheckpointNotFoundError(f"{file} is damaged ({error}); {_FIX}.") from error
    if (folder / "model.safetensors").is_file():
        return  # `transformers` reads the single file and ignores any index
    for index in sorted(folder.glob("*.safetensors.index.json")):
        _check_index(folder, index)


def _check_index(folder: Path, index: Path) -> None:
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as error:
        raise CheckpointNotFoundError(f"{index} is damaged ({error}); {_FIX}.") from error
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise CheckpointNotFoundError(f"{index} has no weight_map of shard names; {_FIX}.")
    missing = sorted({shard for shard in weight_map.values() if not (folder / shard).is_file()})
    if missing:
        raise CheckpointNotFoundError(
            f"{index} names shards that are not in {folder}: {', '.join(missing[:3])}"
            f"{' ...' if len(missing) > 3 else ''}; {_FIX}."
        )
