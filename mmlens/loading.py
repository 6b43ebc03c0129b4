"""`mmlens.load`: find a checkpoint locally (never downloading), pick its adapter, wrap it."""

from pathlib import Path
from typing import Any

import torch

from mmlens.devices import resolve_device, resolve_device_map, resolve_dtype
from mmlens.errors import CheckpointNotFoundError, ConfigError
from mmlens.model import HookedLVLM
from mmlens.registry import adapter_for
from mmlens.zoo import ASSEMBLED, assembled_checkpoint, shipped_models


def resolve_checkpoint(name_or_path: str | Path) -> Path:
    """A shipped model's folder, a local directory, or the cached snapshot of a hub id."""
    if not isinstance(name_or_path, (str, Path)) or not str(name_or_path).strip():
        raise CheckpointNotFoundError(
            f"Checkpoint {name_or_path!r}: pass a shipped model's name (mmlens models), a local "
            "folder or a cached hub id, as a str or Path."
        )
    shipped = shipped_models()
    if str(name_or_path) in shipped:
        return shipped[str(name_or_path)]
    if str(name_or_path) in ASSEMBLED:
        return assembled_checkpoint(str(name_or_path))
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise CheckpointNotFoundError(f"{path} is a file; pass the checkpoint's directory.")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(str(name_or_path), local_files_only=True))
    except (LocalEntryNotFoundError, HFValidationError, FileNotFoundError) as error:
        raise CheckpointNotFoundError(
            f"Checkpoint {str(name_or_path)!r} is neither a local directory nor in the "
            "Hugging Face cache; mmlens never downloads. Fetch it yourself "
            f"(e.g. `hf download {name_or_path}`) or pass the path of a local copy."
        ) from error


def load(
    name_or_path: str | Path,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str = torch.float32,
    device_map: str | dict[str, Any] | None = None,
    max_memory: dict[Any, Any] | None = None,
    offload_folder: str | Path | None = None,
    **options: Any,
) -> HookedLVLM:
    """Load a vision-language checkpoint (local dir or cached hub id) as a `HookedLVLM`.

    `device` must exist on this machine ("cuda:1" where there is one GPU is refused at once;
    default "cpu"); `dtype` is a floating torch dtype or its name ("bfloat16"). A model larger
    than one device takes `device_map` instead ("auto", "balanced", "sequential" or a
    {module name: device} dict, as `transformers` takes it; "cpu" and "disk" entries offload,
    "disk" into `offload_folder`), with `max_memory` per device. `options` go to the family's
    adapter (original LLaVA checkpoints take `vision_tower`, the folder of the CLIP tower their
    config names).
    """
    if device_map is not None and device is not None:
        raise ConfigError(
            f"device={str(device)!r} and device_map={device_map!r}: pass one (device_map places "
            "every module itself)."
        )
    if device_map is None and (max_memory is not None or offload_folder is not None):
        raise ConfigError("max_memory and offload_folder go with device_map; pass device_map too.")
    spread = None
    if device_map is not None:
        spread = resolve_device_map(device_map, max_memory, offload_folder)
    device = str(resolve_device("cpu" if device is None else device))
    dtype = resolve_dtype(dtype)
    checkpoint = resolve_checkpoint(name_or_path)
    adapter_class = adapter_for(checkpoint)
    unknown = sorted(set(options) - set(adapter_class.load_options))
    if unknown:
        raise ConfigError(
            f"{', '.join(unknown)}: not an option of {adapter_class.__name__} "
            f"(it takes {', '.join(adapter_class.load_options) or 'none'})."
        )
    adapter = adapter_class.from_directory(
        checkpoint, device=device, dtype=dtype, device_map=spread, **options
    )
    return HookedLVLM(adapter, name=str(name_or_path))
