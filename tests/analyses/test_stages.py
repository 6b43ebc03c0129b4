"""The stage detector finds planted stages (clean, and shaped like real profiles: a large first
jump, churn, noise, small late spikes), and on real traces its mutations are where the token's
probability moves."""

import numpy as np
import pandas as pd
import pytest
from _support import staged_logprobs, trace_from_logprobs

from mmlens.analyses.stages import (
    StageParams,
    detect_stages,
    frame_stages,
    layer_groups,
    plot_stages,
    summarize_stages,
    token_stages,
    trace_stages,
)
from mmlens.errors import TraceFormatError


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
def test_planted_mutation_layers_are_labelled_by_the_pairs_first_layer(mutation):
    trace = trace_from_logprobs(staged_logprobs(n_steps=8, critical=18, mutation=mutation))
    table = token_stages(trace)
    pairs = tuple(m - 1 for m in mutation)  # layer m is new: pair (m-1, m), made by block m-1
    assert (table.critical_layer == 18).all()
    assert all(layers == pairs for layers in table.mutation_layers)
    # The generated token is the last mutation's: its probability only rises there.
    assert (table.prob_rise_layer == mutation[-1]).all()
    stages = trace_stages(trace)
    assert stages.mutation_layers == pairs and stages.mutation_fraction == 1.0
    groups = layer_groups(trace, stages)
    assert groups[17] == "rapid evolution" and groups[18] == "stabilization"
    assert groups[pairs[0]] == "stabilization" and groups[mutation[0]] == "mutation"
    assert groups[-1] == "output"


def realistic_profile(
    rng: np.random.Generator, critical: int, spikes: tuple[int, ...], n_pairs: int = 32
) -> np.ndarray:
    """A JSD profile shaped like LLaVA-1.5's: a first pair near ln 2, churn (0.02-0.15 nats, so
    below a tenth of the first pair) up to `critical`, noise around 1e-3 with a factor-3 spread,
    and late spikes of 0.05-0.2 nats."""
    d = np.empty(n_pairs)
    d[0] = rng.uniform(0.45, 0.69)
    d[1:critical] = np.exp(rng.uniform(np.log(0.02), np.log(0.15), critical - 1))
    d[critical:] = 1e-3 * np.exp(rng.normal(0, np.log(3) / 2, n_pairs - critical))
    for pair in spikes:
        d[pair] = rng.uniform(0.05, 0.2)
    return d


def test_realistic_planted_profiles_are_found_exactly():
    rng = np.random.default_rng(0)
    planted = []
    for _ in range(400):
        critical = int(rng.integers(8, 22))
        n_spikes = int(rng.integers(0, 3))
        spikes = tuple(sorted(rng.choice(np.arange(critical + 3, 32), n_spikes, replace=False)))
        planted.append((critical, tuple(int(s) for s in spikes)))
    jsd = np.stack([realistic_profile(rng, c, s) for c, s in planted])
    layers = np.arange(33)
    table = detect_stages(jsd, np.full((len(jsd), 33), 0.5), layers)
    critical_right = (table.critical_layer.to_numpy() == [c for c, _ in planted]).mean()
    mutations_right = np.mean(
        [m == s for m, (_, s) in zip(table.mutation_layers, planted, strict=True)]
    )
    assert critical_right >= 0.98 and mutations_right >= 0.98
    # Thresholds as fractions of each token's largest pair would call the churn stable (it is
    # below a tenth of the first jump) and miss every spike under 0.3 of it.
    largest = jsd.max(axis=1, keepdims=True)
    assert (jsd[:, 1:8] <= 0.1 * largest[:, :1]).mean() > 0.3


def test_a_noisy_stable_stage_makes_no_mutations_of_its_noise():
    """A stable stage whose JSD is itself noisy (half-normal, scale 1e-2 nats: a tenth of its
    pairs above 0.016, a few above 0.03) with real spikes of 0.25-0.5 nats: the threshold follows
    the quiet stretch's spread, not only its level, so the noise stays quiet and spikes count."""
    rng = np.random.default_rng(0)
    planted, profiles = [], []
    for _ in range(400):
        critical = int(rng.integers(8, 22))
        spikes = rng.choice(np.arange(critical + 3, 32), int(rng.integers(0, 3)), replace=False)
        planted.append((critical, tuple(sorted(int(s) for s in spikes))))
        d = np.empty(32)
        d[0] = rng.uniform(0.45, 0.69)
        d[1:critical] = np.exp(rng.uniform(np.log(0.1), np.log(0.4), critical - 1))
        d[critical:] = np.abs(rng.normal(0, 1e-2, 32 - critical))
        d[list(spikes)] = rng.uniform(0.25, 0.5, len(spikes))
        profiles.append(d)
    table = detect_stages(np.stack(profiles), np.full((400, 33), 0.5), np.arange(33))
    assert (table.critical_layer.to_numpy() == [c for c, _ in planted]).mean() >= 0.98
    found = list(zip(table.mutation_layers, planted, strict=True))
    assert np.mean([set(m) - set(s) != set() for m, (_, s) in found]) <= 0.02  # noise flagged
    assert all(set(s) <= set(m) for m, (_, s) in found)  # every spike found
    assert table.stable_spread.median() > 3e-3
    # the level alone (3 x median, floor 0.02) flags noise in over a fifth of these tokens
    level_only = detect_stages(
        np.stack(profiles), np.full((400, 33), 0.5), np.arange(33), StageParams(mutation_spread=0.0)
    )
    paired = zip(level_only.mutation_layers, planted, strict=True)
    assert np.mean([set(m) - set(s) != set() for m, (_, s) in paired]) > 0.2


def test_noise_churn_and_flat_profiles_make_no_stages():
    rng = np.random.default_rng(1)
    churn = np.exp(rng.uniform(np.log(0.05), np.log(0.3), (50, 32)))  # never settles
    flat = np.full((5, 32), 1e-6)  # nothing changes at all
    table = detect_stages(np.vstack([churn, flat]), np.full((55, 33), 0.5), np.arange(33))
    assert table.critical_layer.isna().all() and not table.has_mutation.any()


def test_levels_are_reported_and_a_split_needs_a_drop():
    d = np.array([[0.5, 0.2, 0.1, 1e-3, 1e-3, 2e-3, 0.3, 1e-3]])
    row = detect_stages(d, np.full((1, 9), 0.9), np.arange(9)).iloc[0]
    assert row.critical_layer == 3 and row.mutation_layers == (6,)
    assert row.evolving_jsd == pytest.approx(0.2) and row.stable_jsd == pytest.approx(1e-3)
    assert row.threshold == pytest.approx(0.02)  # the floor: 3 x 1e-3 is below it
    assert row.stable_spread == 0.0  # 5 stable pairs: fewer than spread_pairs, none measured
    noisy = np.array([[0.5, 0.3, 0.2, 0.25, 0.004, 0.012, 0.001, 0.04, 0.008, 0.015]])
    few, enough = (
        detect_stages(noisy, np.full((1, 11), 0.9), np.arange(11), StageParams(spread_pairs=n))
        for n in (8, 6)
    )
    assert few.stable_spread[0] == 0.0 and few.mutation_layers[0] == (7,)  # 0.04 > 3 x 0.01
    assert enough.stable_spread[0] == pytest.approx(1.4826 * 0.0055)  # median |d - 0.01|
    assert enough.mutation_layers[0] == ()  # 0.04 < 0.01 + 8 x 0.0082
    # A quiet stretch shorter than min_stable is not a stabilisation.
    short = detect_stages(d, np.full((1, 9), 0.9), np.arange(9), StageParams(min_stable=6))
    assert short.critical_layer.isna().all()


def test_top1_flips_can_count_as_mutations():
    trace = trace_from_logprobs(staged_logprobs(n_steps=2, critical=18, seed=3))
    top1 = trace.topk_ids[:, :, 0].copy()
    top1[:, 25:] = top1[:, 25:] + 1  # the top-1 changes between layers 24 and 25: pair 24
    found = detect_stages(
        trace.jsd[:, :-1], np.exp(trace.logprob), trace.layers, StageParams(top1_flips=True), top1
    )
    assert all(m == (24,) for m in found.mutation_layers)


def test_summary_over_a_data_set():
    tables = [
        token_stages(trace_from_logprobs(staged_logprobs(n_steps=4, critical=c, seed=c)))
        for c in (16, 18, 20)
    ]
    stages = summarize_stages(tables)
    assert stages.n_tokens == 12 and stages.critical_layer == 18
    assert stages.critical_counts == {16: 4, 18: 4, 20: 4}


def test_parameters_validate_themselves():
    with pytest.raises(ValueError, match="noise_floor"):
        StageParams(noise_floor=0.5)
    with pytest.raises(ValueError, match="min_drop"):
        StageParams(min_drop=1.0)
    with pytest.raises(ValueError, match="min_stable"):
        StageParams(min_stable=0)
    with pytest.raises(ValueError, match="mutation_spread"):
        StageParams(mutation_spread=-1.0)


def test_a_stable_stretch_at_the_very_end_is_no_critical_layer():
    trace = trace_from_logprobs(staged_logprobs(n_steps=4, critical=31, seed=1))
    table = token_stages(trace)  # only pair 31 (layers 31 -> 32) is stable: shorter than 2
    assert table.critical_layer.isna().all() and not table.has_mutation.any()
    assert trace_stages(trace).critical_layer is None


def test_a_run_table_gives_the_traces_stages():
    traces = [
        trace_from_logprobs(staged_logprobs(n_steps=3, critical=c, mutation=m, seed=c))
        for c, m in ((12, (29,)), (20, ()))
    ]
    frames = []
    for order, trace in enumerate(traces):
        frame = trace.to_frame()
        frame.insert(0, "order", order)
        frames.append(frame)
    tokens = pd.concat(frames[::-1], ignore_index=True)  # order of rows does not matter
    found = frame_stages(tokens)
    expected = pd.concat([token_stages(t) for t in traces], ignore_index=True)
    assert found[["order", "step"]].values.tolist() == [[o, s] for o in (0, 1) for s in range(3)]
    pd.testing.assert_series_equal(found.critical_layer, expected.critical_layer)
    assert found.mutation_layers.tolist() == expected.mutation_layers.tolist()
    with pytest.raises(TraceFormatError, match="lacks columns"):
        frame_stages(tokens.drop(columns="jsd"))
    with pytest.raises(TraceFormatError, match="different layers"):
        frame_stages(tokens[~((tokens.order == 1) & (tokens.layer == 32))])


def test_on_real_traces_mutations_are_where_the_probability_moves(shapes_traces, tmp_path):
    """On the shipped model's captions: where the detector says 'mutation', the generated token's
    probability moves (and its top-1 flips); elsewhere after the critical layer it holds still."""
    moved, held, flips_flagged, flips_missed = [], [], 0, 0
    for trace in shapes_traces:
        top1 = trace.topk_ids[:, :, 0]
        for step, row in token_stages(trace).iterrows():
            if pd.isna(row.critical_layer):
                continue
            prob = np.exp(trace.logprob[step])
            for pair in range(int(row.critical_layer), len(trace.layers) - 1):
                change = abs(prob[pair + 1] - prob[pair])
                flip = top1[step, pair + 1] != top1[step, pair]
                if pair in row.mutation_layers:
                    moved.append(change)
                    flips_flagged += flip
                else:
                    held.append(change)
                    flips_missed += flip
    assert len(moved) >= 20
    assert np.median(moved) > 0.1 and np.median(held) < 0.01
    assert flips_flagged > flips_missed
    plot_stages(shapes_traces[0]).savefig(tmp_path / "stages.png")


def test_on_a_real_tiny_trace(tiny, photo):
    trace = tiny.trace(photo, "describe the image .", max_new_tokens=6)
    table = token_stages(trace)
    assert len(table) == trace.n_steps
    assert table.critical_layer.dropna().between(0, tiny.n_blocks).all()
