"""Models mmlens builds or ships itself (no downloads).

`SHIPPED` maps a name accepted by `mmlens.load` to the package folder holding the checkpoint.
"""

from importlib.resources import files
from pathlib import Path

SHIPPED: dict[str, str] = {
    "mmlens/shapes": "shapes/model",
}


def shipped_models() -> dict[str, Path]:
    """Name -> local directory of every model that ships inside the mmlens package."""
    root = files("mmlens.zoo")
    return {name: Path(str(root.joinpath(folder))) for name, folder in SHIPPED.items()}
