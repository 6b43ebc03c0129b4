"""The stage detector finds planted stages, and reports no mutation where there is none."""

import pytest
from _support import staged_logprobs, trace_from_logprobs

from mmlens.analyses.stages import (
    StageParams,
    layer_groups,
    plot_stages,
    summarize_stages,
    token_stages,
    trace_stages,
)


@pytest.mark.parametrize("critical", [8, 18, 24])
def test_planted_critical_layer_without_mutation(critical):
    trace = trace_from_logprobs(staged_logprobs(n_steps=8, critical=critical, seed=critical))
    table = token_stages(trace)
    assert (table.critical_layer == critical).all()
    assert not table.has_mutation.any()
    assert (table.prob_rise_layer == critical).all()
    stages = trace_stages(trace)
    assert stages.critical_layer == critical and stages.mutation_layers == ()
    assert stages.mutation_fraction == 0


@pytest.mark.parametrize("mutation", [(30,), (27, 31)])
def test_planted_mutation_layers(mutation):
    trace = trace_from_logprobs(staged_logprobs(n_steps=8, critical=18, mutation=mutation))
    table = token_stages(trace)
    assert (table.critical_layer == 18).all()
    assert all(layers == mutation for layers in table.mutation_layers)
    # The generated token is the last mutation's: its probability only rises there.
    assert (table.prob_rise_layer == mutation[-1]).all()
    stages = trace_stages(trace)
    assert stages.mutation_layers == mutation and stages.mutation_fraction == 1.0
    groups = layer_groups(trace, stages)
    assert groups[17] == "rapid evolution" and groups[18] == "stabilization"
    assert groups[mutation[0]] == "mutation" and groups[-1] == "output"


def test_summary_over_a_data_set():
    tables = [
        token_stages(trace_from_logprobs(staged_logprobs(n_steps=4, critical=c, seed=c)))
        for c in (16, 18, 20)
    ]
    stages = summarize_stages(tables)
    assert stages.n_tokens == 12 and stages.critical_layer == 18
    assert stages.critical_counts == {16: 4, 18: 4, 20: 4}


def test_parameters_validate_themselves():
    with pytest.raises(ValueError, match="stable_fraction"):
        StageParams(stable_fraction=0.5, mutation_fraction=0.3)
    with pytest.raises(ValueError, match="min_run"):
        StageParams(min_run=0)


def test_on_a_real_tiny_trace(tiny, photo, tmp_path):
    trace = tiny.trace(photo, "describe the image .", max_new_tokens=6)
    table = token_stages(trace)
    assert len(table) == trace.n_steps
    assert set(table.columns) >= {"critical_layer", "mutation_layers", "prob_rise_layer"}
    valid = table.critical_layer.dropna()
    assert valid.between(0, tiny.n_blocks).all()
    plot_stages(trace).savefig(tmp_path / "stages.png")


def test_a_stable_stretch_shorter_than_min_run_is_no_critical_layer():
    trace = trace_from_logprobs(staged_logprobs(n_steps=4, critical=31, seed=1))
    table = token_stages(trace)  # only pair 31-32 is stable: shorter than min_run=3
    assert table.critical_layer.isna().all() and not table.has_mutation.any()
    assert trace_stages(trace).critical_layer is None
