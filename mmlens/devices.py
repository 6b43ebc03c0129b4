"""`device=`, `device_map=` and `dtype=` checked before a checkpoint is read (one clear error
for a device this machine does not have, a typo, or a dtype the weights cannot take), and where
a module of a model spread over devices computes."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mmlens.errors import ConfigError

DTYPE_NAMES = ("float32", "bfloat16", "float16")
_DEVICE_HINT = "use 'cpu', 'cuda', 'cuda:N' or 'mps'"


def resolve_device(device: str | torch.device | int) -> torch.device:
    """The torch device `device` names, if this machine has it, else `ConfigError`."""
    if isinstance(device, bool) or not isinstance(device, (str, torch.device, int)):
        raise ConfigError(f"device={device!r} is not a device; {_DEVICE_HINT}.")
    try:
        resolved = torch.device(device)
    except (RuntimeError, ValueError) as error:
        raise ConfigError(
            f"device={device!r} is not a device torch knows; {_DEVICE_HINT}."
        ) from error
    kind = resolved.type
    if kind == "cpu":
        return resolved
    if kind == "meta":
        raise ConfigError(f"device={device!r} holds no weights; {_DEVICE_HINT}.")
    if kind == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError(
                f"device={device!r}, but this machine has no MPS (Apple GPU) torch can use; "
                "use device='cpu'."
            )
        return resolved
    backend = getattr(torch, kind, None)
    if backend is not None and hasattr(backend, "is_available"):
        count = backend.device_count() if backend.is_available() else 0
        if count == 0:
            raise ConfigError(
                f"device={device!r}, but this machine has no {kind.upper()} device torch can use "
                f"(torch.{kind}.is_available() is False); use device='cpu'."
            )
        if resolved.index is not None and resolved.index >= count:
            raise ConfigError(
                f"device={device!r}, but this machine has {count} {kind} device(s): "
                f"{', '.join(f'{kind}:{i}' for i in range(count))}."
            )
        return resolved
    try:
        torch.empty(0, device=resolved)
    except (RuntimeError, AssertionError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError(
            f"device={device!r} is not usable here ({reason}); {_DEVICE_HINT}."
        ) from error
    return resolved


def resolve_dtype(dtype: torch.dtype | str | None) -> torch.dtype:
    """A floating torch dtype from a dtype or its name ('bfloat16', 'torch.float16'); None is
    the default float32."""
    if dtype is None:
        return torch.float32
    named = getattr(torch, dtype.removeprefix("torch."), None) if isinstance(dtype, str) else dtype
    if not isinstance(named, torch.dtype):
        raise ConfigError(
            f"dtype={dtype!r} is not a torch dtype; use one of {', '.join(DTYPE_NAMES)} "
            "(a name or e.g. torch.bfloat16)."
        )
    if not named.is_floating_point:
        raise ConfigError(
            f"dtype={dtype!r}: weights need a floating dtype; use one of {', '.join(DTYPE_NAMES)}."
        )
    return named


DEVICE_MAP_NAMES = ("auto", "balanced", "balanced_low_0", "sequential")


@dataclass(frozen=True)
class DeviceMap:
    """Blocks spread over several devices (Accelerate's `device_map`): a strategy name or a
    {module name: device} dict, with `max_memory` per device and `offload_folder` for "disk"."""

    map: str | dict[str, str | int]
    max_memory: dict[str | int, str | int] | None = None
    offload_folder: str | None = None

    @property
    def name(self) -> str:
        """The map in an error message: its strategy, not a dict of every block."""
        return f"device_map={self.map!r}" if isinstance(self.map, str) else "The device_map"

    def from_pretrained_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"device_map": self.map}
        if self.max_memory is not None:
            kwargs["max_memory"] = self.max_memory
        if self.offload_folder is not None:
            kwargs["offload_folder"] = self.offload_folder
        return kwargs


def resolve_device_map(
    device_map: Any, max_memory: Any = None, offload_folder: str | Path | None = None
) -> DeviceMap:
    """`device_map=` checked before a checkpoint is read: a strategy name, or a dict whose every
    device exists here ("cpu" and "disk" included; "disk" needs `offload_folder`)."""
    if isinstance(device_map, str):
        if device_map not in DEVICE_MAP_NAMES:
            raise ConfigError(
                f"device_map={device_map!r}; use one of {', '.join(DEVICE_MAP_NAMES)} or a dict "
                "{module name: device}."
            )
        mapped: str | dict[str, str | int] = device_map
    elif isinstance(device_map, dict) and device_map:
        mapped = {}
        for name, device in device_map.items():
            if not isinstance(name, str):
                raise ConfigError(f"device_map key {name!r} is not a module name (a str).")
            if device != "disk":
                resolve_device(device)
            mapped[name] = device if isinstance(device, int | str) else str(device)
        if "disk" in mapped.values() and offload_folder is None:
            raise ConfigError(
                "device_map sends modules to 'disk'; pass offload_folder=<a folder> for their "
                "weights."
            )
    else:
        raise ConfigError(
            f"device_map={device_map!r}; use one of {', '.join(DEVICE_MAP_NAMES)} or a non-empty "
            "dict {module name: device}."
        )
    if max_memory is not None and not isinstance(max_memory, dict):
        raise ConfigError(f"max_memory={max_memory!r}; give a dict {{device: '20GiB', ...}}.")
    if offload_folder is not None:
        folder = Path(offload_folder)
        if folder.exists() and not folder.is_dir():
            raise ConfigError(f"offload_folder {folder} is a file; give a folder.")
        offload_folder = str(folder)
    return DeviceMap(mapped, max_memory, offload_folder)


def mapped_device(spread: dict[str, Any], name: str) -> Any:
    """A device map's entry for the module called `name` (its longest prefix key), or None."""
    keys = [key for key in spread if key == "" or name == key or name.startswith(key + ".")]
    return spread[max(keys, key=len)] if keys else None


def execution_device(hf_model: nn.Module, module: nn.Module) -> torch.device:
    """Where `module` of `hf_model` computes. On a model spread by a device map, its map entry's
    device, or for modules offloaded to "cpu" or "disk", the map's first accelerator (as
    Accelerate runs them); otherwise where its weights are."""
    spread = getattr(hf_model, "hf_device_map", None)
    if spread:
        name = next(name for name, found in hf_model.named_modules() if found is module)
        device = mapped_device(spread, name) or "cpu"
        if device in ("cpu", "disk"):
            accelerators = [value for value in spread.values() if value not in ("cpu", "disk")]
            device = accelerators[0] if accelerators else "cpu"
        return torch.device(f"cuda:{device}" if isinstance(device, int) else device)
    return next(module.parameters()).device
