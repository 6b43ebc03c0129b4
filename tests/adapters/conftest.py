"""Every family (llava-hf's LLaVA-1.5 and the four others) beside its Hugging Face reference."""

import numpy as np
import pytest
from _families import ALL_FAMILIES, FamilyCase, build_case
from PIL import Image


@pytest.fixture(scope="session", params=ALL_FAMILIES)
def any_family(request, checkpoints, tmp_path_factory) -> FamilyCase:
    """One family's tiny mmlens model and HF model with the same weights (shared: leave no
    hooks on it)."""
    root = tmp_path_factory.mktemp(request.param)
    return build_case(request.param, root, llava=checkpoints["gqa"])


@pytest.fixture
def case(any_family: FamilyCase) -> FamilyCase:
    """`any_family`, by its short name (test modules with their own `case` shadow it)."""
    return any_family


@pytest.fixture(scope="session")
def image() -> Image.Image:
    """A random 64 x 48 RGB image (not square, so grids and padding are exercised)."""
    pixels = np.random.default_rng(3).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    return Image.fromarray(pixels)
