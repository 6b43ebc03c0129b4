"""Every family (llava-hf's LLaVA-1.5 and the four others) beside its Hugging Face reference."""

import pytest
from _families import ALL_FAMILIES, FamilyCase, build_case


@pytest.fixture(scope="session", params=ALL_FAMILIES)
def any_family(request, checkpoints, tmp_path_factory) -> FamilyCase:
    """One family's tiny mmlens model and HF model with the same weights (shared: leave no
    hooks on it)."""
    root = tmp_path_factory.mktemp(request.param)
    return build_case(request.param, root, llava=checkpoints["gqa"])
