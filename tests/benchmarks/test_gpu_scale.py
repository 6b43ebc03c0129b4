"""benchmarks/gpu_scale.py: the GPU benchmark's code path, run with `--tiny` on the CPU."""

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_scale.py"
CONTENDERS = ("trace", "generate", "lens", "recorder", "generate_plus_lens")


@pytest.fixture
def gpu_scale(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    monkeypatch.syspath_prepend(str(SCRIPT.parent))  # it imports trace_cost
    had_trace_cost = "trace_cost" in sys.modules
    spec = importlib.util.spec_from_file_location("gpu_scale", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu_scale", module)
    spec.loader.exec_module(module)
    yield module
    if not had_trace_cost:
        sys.modules.pop("trace_cost", None)


@pytest.mark.slow
def test_tiny_run_measures_every_workload_and_contender(tmp_path):
    out = tmp_path / "tiny.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--tiny", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "trace / (generate + lens)" in done.stdout  # the markdown tables
    summary = json.loads(out.read_text())
    assert summary["environment"]["device"] and summary["environment"]["torch"]
    assert summary["skipped"] == [] and summary["elapsed_s"] <= summary["budget_s"]
    for workload, steps in (("pope", 2), ("amber", 6)):
        result = summary["workloads"][workload]
        assert result["new_tokens"] == steps and result["prompt_positions"] > 16  # 16 image tokens
        assert sorted(result["batches"]) == ["1", "2"]
        for batch, cell in result["batches"].items():
            assert cell["rounds"] == 2
            for name in CONTENDERS + (("bridge",) if batch == "2" else ()):
                assert cell[name]["items_per_min_median"] > 0, (workload, batch, name)
                assert cell[name]["items_per_min_best"] >= cell[name]["items_per_min_median"]
            assert ("bridge" in cell) == (batch == "2")
            ratio = cell["ratio_trace_over_generate_plus_lens"]
            assert len(ratio["per_round"]) == 2 and ratio["median"] > 0
            # Equal work: every row of every contender generated exactly `steps` tokens, and
            # trace (through the bridge) picked the same tokens as plain HF generate.
            assert all(v == [steps] for v in cell["generated_tokens_per_row"].values())
            assert cell["rows_with_identical_tokens_trace_vs_generate"] == 1.0
    for contender in ("trace", "generate_plus_lens"):
        projection = summary["projection"][contender]
        assert projection["pope_minutes"] > 0 and projection["amber_minutes"] > 0
        assert projection["pope_plus_amber_minutes"] == pytest.approx(
            projection["pope_minutes"] + projection["amber_minutes"]
        )
    assert summary["targets"]["trace_pope_plus_amber_minutes"] > 0


def test_projection_counts_pope_and_both_amber_tasks(gpu_scale):
    def cell(trace: float, baseline: float) -> dict:
        return {
            "trace": {"items_per_min_median": trace},
            "generate_plus_lens": {"items_per_min_median": baseline},
        }

    workloads = {
        "pope": {"batches": {"1": cell(100, 120), "8": cell(900, 1000)}},
        "amber": {"batches": {"1": cell(10, 12), "8": cell(50, 40)}},
    }
    trace = gpu_scale.projection(workloads)["trace"]
    assert (trace["pope_batch"], trace["amber_caption_batch"]) == (8, 8)
    assert trace["pope_minutes"] == pytest.approx(9_000 / 900)
    # 1,004 captions at the caption rate, 14,216 yes-no questions at POPE's rate
    assert trace["amber_minutes"] == pytest.approx(1_004 / 50 + 14_216 / 900)
    assert trace["amber_minutes_if_all_15220_were_captions"] == pytest.approx(15_220 / 50)
    baseline = gpu_scale.projection(workloads)["generate_plus_lens"]
    assert baseline["pope_minutes"] == pytest.approx(9)


def test_a_spent_budget_skips_every_cell_with_a_note(gpu_scale, tmp_path):
    out = tmp_path / "none.json"
    summary = gpu_scale.main(["--tiny", "--budget-s", "0", "--out", str(out)])
    assert len(summary["skipped"]) == 4 and all("skipped" in n for n in summary["skipped"])
    assert all(not w["batches"] for w in summary["workloads"].values())
    assert "note" in summary["projection"]["trace"]
    assert json.loads(out.read_text())["skipped"] == summary["skipped"]


@pytest.mark.slow
def test_in_process_run_passes_shape_checks_and_keeps_grad_mode(gpu_scale):
    torch = gpu_scale.torch
    # Under pytest, jaxtyping checks the shapes of every mmlens call the script makes.
    for grad in (True, False):
        torch.set_grad_enabled(grad)
        try:
            argv = ["--tiny", "--batches", "2", "--rounds", "1", "--amber-tokens", "3"]
            summary = gpu_scale.main(argv)
            assert torch.is_grad_enabled() == grad
        finally:
            torch.set_grad_enabled(False)  # as conftest leaves it
        assert summary["workloads"]["amber"]["batches"]["2"]["trace"]["items_per_min_median"] > 0
    assert gpu_scale.torch.get_default_dtype() == gpu_scale.torch.float32


def test_no_cuda_refuses_the_gpu_run_with_advice(gpu_scale, monkeypatch):
    monkeypatch.setattr(gpu_scale.torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match="--tiny"):
        gpu_scale.main([])
