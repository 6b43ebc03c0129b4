"""The training script is seeded: the same command gives the same weights."""

import pytest
from safetensors.torch import load_file

from mmlens.zoo.shapes.train import train


@pytest.mark.slow
def test_training_is_reproducible(tmp_path):
    first = train(tmp_path / "a", steps=3, batch_size=4, lr=2e-3, seed=0, threads=2)
    second = train(tmp_path / "b", steps=3, batch_size=4, lr=2e-3, seed=0, threads=2)
    other = train(tmp_path / "c", steps=3, batch_size=4, lr=2e-3, seed=1, threads=2)
    a, b, c = (load_file(path / "model.safetensors") for path in (first, second, other))
    assert a.keys() == b.keys()
    assert all((a[name] == b[name]).all() for name in a)
    assert any((a[name] != c[name]).any() for name in a)
