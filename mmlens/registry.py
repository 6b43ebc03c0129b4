"""Which adapter loads a checkpoint: built-in families plus the `mmlens.adapters` entry points."""

from importlib.metadata import entry_points
from pathlib import Path

from mmlens.adapters import ADAPTERS, Adapter
from mmlens.adapters.base import read_config
from mmlens.errors import CheckpointNotFoundError, UnsupportedModelError

ENTRY_POINT_GROUP = "mmlens.adapters"


def registered_adapters() -> tuple[type[Adapter], ...]:
    """Built-in adapters followed by third-party ones registered as entry points."""
    found: list[type[Adapter]] = list(ADAPTERS)
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        adapter = entry.load()
        if adapter not in found:
            found.append(adapter)
    return tuple(found)


def supported_architectures() -> list[str]:
    """Every `config.architectures` name some adapter can load."""
    return sorted({name for adapter in registered_adapters() for name in adapter.architectures})


def supported_families() -> list[tuple[str, str]]:
    """(architecture, family in words) for every architecture some adapter loads."""
    found = {
        name: adapter.family or adapter.__name__
        for adapter in registered_adapters()
        for name in adapter.architectures
    }
    return sorted(found.items())


def read_architecture(checkpoint: Path) -> str:
    """The architecture named in a checkpoint directory's config.json."""
    config_file = checkpoint / "config.json"
    if not config_file.is_file():
        raise CheckpointNotFoundError(f"{checkpoint} has no config.json; is it a checkpoint?")
    architectures = read_config(config_file).get("architectures") or []
    if not architectures:
        raise UnsupportedModelError(
            f"{config_file} names no architecture; "
            f"supported: {', '.join(supported_architectures())}"
        )
    return str(architectures[0])


def adapter_for(checkpoint: Path) -> type[Adapter]:
    """The adapter class for a local checkpoint directory, or a clear error listing the options."""
    architecture = read_architecture(checkpoint)
    for adapter in registered_adapters():
        if architecture in adapter.architectures:
            return adapter
    raise UnsupportedModelError(
        f"mmlens has no adapter for architecture {architecture!r} ({checkpoint}); "
        f"supported: {', '.join(supported_architectures())}. "
        f"Add one in adapters/ or register it under the {ENTRY_POINT_GROUP!r} entry-point group."
    )
