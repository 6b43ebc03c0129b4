"""The thread count a data-set run gives torch (benchmarks/RESULTS.md has the measurements)."""

import pytest

from mmlens.errors import ConfigError
from mmlens.runs.threads import run_threads


def test_cpu_runs_use_one_thread_unless_told(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert run_threads(None, "cpu") == 1
    assert run_threads(None, "cuda:0") is None  # torch's own default
    assert run_threads(3, "cpu") == 3 and run_threads(2, "cuda") == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert run_threads(None, "cpu") is None  # the user's or torchrun's choice stands
    for bad in (0, -1):
        with pytest.raises(ConfigError, match=f"--threads {bad}"):
            run_threads(bad, "cpu")


def test_the_count_is_restored_after_the_run():
    import torch

    from mmlens.runs.threads import torch_threads

    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before
