"""`device=` and `dtype=` checked before a checkpoint is read: one clear error for a device this
machine does not have, a typo, or a dtype the weights cannot take."""

import torch

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
