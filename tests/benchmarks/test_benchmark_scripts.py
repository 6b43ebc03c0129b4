"""The benchmark scripts still run every contender, at a tiny scale (nothing here is timed)."""

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _import(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # skip_and_tsne imports trace_cost
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def trace_cost(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    return _import("trace_cost", monkeypatch)


def test_memory_sampler_sees_an_allocation(trace_cost):
    with trace_cost.MemorySampler() as sampler:
        block = np.ones(64 * 2**20, dtype=np.uint8)  # touched pages: 64 MiB resident
        del block
    assert 60 <= sampler.extra_mib < 200


def test_llava7b_scale_has_llava_1_5_7b_parameter_count(trace_cost):
    import torch

    from mmlens.zoo.tiny import build_llava, build_tokenizer

    with torch.device("meta"):  # shapes only, no memory
        model, _ = build_llava(trace_cost.SCALES["llava7b"], build_tokenizer())
    # Vicuna-7B with 32,064 rows 6.739 B + CLIP ViT-L/14-336 0.304 B + projector 0.021 B
    assert sum(p.numel() for p in model.parameters()) == 7_063_427_072


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_every_contender_runs(trace_cost, tmp_path, dtype):
    checkpoint = str(trace_cost.build_checkpoint("smoke", tmp_path / "smoke", dtype))
    for name in trace_cost.CONTENDERS:
        result = trace_cost.run_contender(name, checkpoint, 3, 1, "cpu", dtype)
        assert result["name"] == name and result["seconds"] > 0
        if name.startswith("trace"):  # stops early at an end-of-sequence token
            assert 1 <= result["steps"] <= 3
        else:
            assert result["steps"] == (1 if name == "naive_tl" else 3)
        assert result["peak_extra_mib"] >= 0


@pytest.mark.slow
def test_skip_benchmark_fits_fixed_and_per_block_cost(monkeypatch):
    skip_and_tsne = _import("skip_and_tsne", monkeypatch)
    result = skip_and_tsne.skip_timings(3, 1, "smoke")
    assert result["blocks"] == 4
    rows = [value for key, value in result.items() if key.startswith("skip ")]
    assert [row["ideal (L-k)/L"] for row in rows] == [1.0, 0.75, 0.5, 0.25]
    assert rows[0]["time vs full"] == 1.0


@pytest.mark.slow
def test_run_throughput_contenders_run(monkeypatch, tmp_path):
    run_throughput = _import("run_throughput", monkeypatch)
    checkpoint = str(run_throughput.build_checkpoint("smoke", tmp_path / "smoke"))
    for name in ("trace_2", "hf_2"):
        result = run_throughput.run_contender(name, checkpoint, 3, 2, "cpu", "float32")
        assert result["name"] == name and result["seconds"] > 0 and result["items"] == 3
        assert 3 <= result["tokens"] <= 6  # 3 items x 2 steps, fewer if one ends early


def test_activation_memory_measures_a_small_collection(monkeypatch, tmp_path):
    activation_memory = _import("activation_memory", monkeypatch)
    row = activation_memory.child(4, str(tmp_path))
    assert row["items"] == 4 and row["store_mib"] > 0
    assert row["peak_after_read_mib"] >= row["peak_after_collect_mib"] >= row["peak_after_load_mib"]
    assert row["anon_after_read_mib"] > 0 and row["file_after_read_mib"] > 0
