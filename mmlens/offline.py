"""Guards that keep mmlens offline: nothing is downloaded or pip-installed at run time."""

import importlib

_TL_HELPERS = "transformer_lens.model_bridge.sources.transformers.helpers"


def _refuse_install() -> bool:
    """Stand-in for TransformerLens's `_ensure_torchvision`, which would `pip install`."""
    return False


def disable_runtime_installs() -> None:
    """Stop TransformerLens 4.x from running `pip install torchvision` when a processor fails.

    TransformerLens falls back to installing torchvision with pip (which can swap torch for a
    multi-GB CUDA build); mmlens replaces that helper with one that reports "not available".
    """
    try:
        helpers = importlib.import_module(_TL_HELPERS)
    except ImportError:  # a TransformerLens without the helper has nothing to disable
        return
    if hasattr(helpers, "_ensure_torchvision"):
        helpers._ensure_torchvision = _refuse_install
