"""mmlens: TransformerLens-style interpretability for large vision-language models."""

from mmlens.errors import MMLensError
from mmlens.inputs import ModelInputs, load_image
from mmlens.loading import load
from mmlens.model import Generation, HookedLVLM
from mmlens.offline import disable_runtime_installs
from mmlens.trace import Trace

disable_runtime_installs()  # before any TransformerLens loader can run

__all__ = ["Generation", "HookedLVLM", "MMLensError", "ModelInputs", "Trace", "load", "load_image"]
__version__ = "0.1.0"
