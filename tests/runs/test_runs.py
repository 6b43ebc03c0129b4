"""Data-set runs: tables written as they go, each item once, resume, bad items, refusing to mix
runs, a real SIGKILL, and two processes under torchrun."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from _support import n_parts, wait_for_parts

import mmlens
from mmlens.benchmarks import read_shapes, write_shapes_benchmark
from mmlens.benchmarks.items import BenchmarkItem, ItemSet, Skipped
from mmlens.cli import main
from mmlens.errors import ConfigError
from mmlens.runs import RunSettings, RunStore, Shard, run_items
from mmlens.words import truth_token_ids, truth_words

SETTINGS = RunSettings(max_new_tokens=4, flush_every=3)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    return write_shapes_benchmark(tmp_path_factory.mktemp("bench") / "shapes", n_scenes=6)


@pytest.fixture(scope="module")
def model():
    return mmlens.load("mmlens/shapes")


def _store(path, settings=SETTINGS):
    return RunStore.open(path, {"benchmark": "shapes", **settings.identity()})


def test_tables_hold_each_item_once_and_equal_single_traces(bench, model, tmp_path):
    items = ItemSet(read_shapes(bench).items[:7])
    store = _store(tmp_path / "run")
    summary = run_items(model, items, store, SETTINGS, progress=False)
    assert (summary.n_ok, summary.n_failed, summary.n_resumed) == (7, 0, 0)
    assert len(store.parts) == 3  # 3 + 3 + 1 items
    merged, tokens = store.merge()
    assert list(merged.id) == [item.id for item in items]
    assert (merged.status == "ok").all() and merged.seconds.gt(0).all()
    assert json.loads(merged.truth[0]) == list(items[0].truth)
    for item in (items[0], items[6]):
        truth = truth_token_ids(model.tokenizer, truth_words(item.task, item.truth))
        trace = model.trace(
            item.image, item.prompt, max_new_tokens=4, rivals=list(truth), progress=False
        )
        row = merged[merged.id == item.id].iloc[0]
        assert row.output == trace.text and row.n_tokens == trace.n_steps
        mine = tokens[tokens.id == item.id].drop(columns=["order", "id"]).reset_index(drop=True)
        expected = trace.to_frame().drop(columns=[f"rival_{t}" for t in truth])
        if item.task == "generative":  # the truth's objects, each one token here
            assert set(truth.values()) == set(item.truth)
            best = trace.rival_logprobs.reshape(-1, len(truth))
            expected["truth_logprob"] = best.max(axis=1)
            expected["truth_word"] = [list(truth.values())[i] for i in best.argmax(axis=1)]
        else:  # "yes" / "no" are not in the shapes model's vocabulary
            assert truth == {}
            expected["truth_logprob"], expected["truth_word"] = np.nan, ""
        pd.testing.assert_frame_equal(mine, expected, check_dtype=False)
    assert len(tokens) == merged.n_tokens.sum() * (model.n_blocks + 1)
    assert pd.read_parquet(store.out / "items.parquet").equals(merged)


def test_batched_run_equals_one_at_a_time(bench, model, tmp_path):
    items = ItemSet(read_shapes(bench).items[:8])
    frames = {}
    for size in (1, 3):
        store = _store(tmp_path / f"run{size}")
        settings = RunSettings(max_new_tokens=4, flush_every=3, batch_size=size)
        run_items(model, items, store, settings, progress=False)
        frames[size] = store.merge()
    (one, one_tokens), (three, three_tokens) = frames[1], frames[3]
    assert list(three.batch_size) == [3] * 6 + [2] * 2
    pd.testing.assert_frame_equal(
        one[["id", "output", "n_tokens"]], three[["id", "output", "n_tokens"]]
    )
    numbers = ["logprob", "entropy", "jsd", "top1_prob"]
    np.testing.assert_allclose(one_tokens[numbers], three_tokens[numbers], atol=2e-5)


def test_resume_extends_without_repeats(bench, model, tmp_path):
    items = read_shapes(bench)
    store = _store(tmp_path / "run")
    run_items(model, ItemSet(items.items[:4]), store, SETTINGS, progress=False)
    again = run_items(
        model, ItemSet(items.items[:6]), _store(tmp_path / "run"), SETTINGS, progress=False
    )
    assert (again.n_resumed, again.n_ok) == (4, 2)
    merged, _ = store.merge()
    assert list(merged.id) == [item.id for item in items.items[:6]]


def test_another_run_in_the_same_folder_is_refused(tmp_path):
    _store(tmp_path / "run")
    other = RunSettings(max_new_tokens=8)
    with pytest.raises(ConfigError, match="max_new_tokens: 4 there, 8 now"):
        _store(tmp_path / "run", other)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        _store(tmp_path / "file")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("x")
    with pytest.raises(ConfigError, match="not an mmlens run"):
        _store(tmp_path / "busy")


def test_bad_items_are_recorded_and_the_run_goes_on(bench, model, tmp_path):
    good = read_shapes(bench).items[:2]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    long_prompt = "word " * 3000
    items = ItemSet(
        (
            good[0],
            BenchmarkItem("shapes", 900, broken, "describe .", "generative", "generative", ()),
            BenchmarkItem(
                "shapes", 901, good[1].image, long_prompt, "generative", "generative", ()
            ),
            good[1],
        ),
        skipped=(Skipped(902, "image missing: nowhere.png"),),
    )
    store = _store(tmp_path / "run")
    batched = RunSettings(max_new_tokens=4, flush_every=3, batch_size=4)  # one bad item per batch
    summary = run_items(model, items, store, batched, progress=False)
    assert (summary.n_ok, summary.n_failed, summary.n_unreadable) == (2, 2, 1)
    merged, tokens = store.merge()
    errors = dict(zip(merged.id, merged.error, strict=True))
    assert "not a readable image" in errors[900]
    assert "context" in errors[901] and errors[902] == "image missing: nowhere.png"
    assert set(tokens.id) == {good[0].id, good[1].id}


def test_a_bad_setting_fails_before_any_item_is_written(bench, model, tmp_path):
    store = _store(tmp_path / "run")
    with pytest.raises(ConfigError, match="top_k=100000"):
        run_items(model, read_shapes(bench), store, RunSettings(top_k=100_000), progress=False)
    assert store.parts == []


def test_partial_folders_are_never_read(tmp_path):
    store = _store(tmp_path / "run")
    junk = store.out / "parts" / ".partial-000-deadbeef"
    junk.mkdir()
    (junk / "items.parquet").write_bytes(b"half written")
    assert store.done_ids() == set()
    _store(tmp_path / "run")  # reopening removes this rank's leftovers
    assert not junk.exists()


def _cli(bench, out, *extra):
    return [
        sys.executable, "-m", "mmlens", "run", "shapes", "--data", str(bench), "--out", str(out),
        "--max-new-tokens", "4", "--quiet", *extra,
    ]  # fmt: skip


@pytest.mark.slow
def test_sigkill_then_the_same_command_resumes(bench, tmp_path):
    out = tmp_path / "run"
    command = _cli(bench, out, "--limit", "24", "--flush-every", "2")
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_parts(out, 2, process, timeout=240)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    written = n_parts(out)
    assert 2 <= written < 12, "the run should be killed part-way"
    assert not (out / "items.parquet").exists()
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    items = pd.read_parquet(out / "items.parquet")
    expected = [item.id for item in read_shapes(bench).items[:24]]
    assert list(items.id) == expected  # every item exactly once, in order
    assert "already done" in done.stdout
    responses = json.loads((out / "responses.json").read_text())
    assert [r["id"] for r in responses] == expected


def _assert_same_up_to_float_order(one: pd.DataFrame, two: pd.DataFrame) -> None:
    """Equal tables, float columns up to the order of float32 reductions: everything else (ids,
    order, token ids, ranks, texts) exactly, floats with rtol=1e-4, atol=1e-5. Why that much: the
    columns are float32 log-probs, entropies and JSDs; summing the same terms in another order
    (one thread against two split a matrix product or a softmax sum differently) moves a value by
    a few float32 ulps (eps 1.2e-7) of its partial sums. Measured on this test's runs, one thread
    against two: at most 2.2e-5 relative (a JSD of 1e-2) and 6.7e-6 absolute (a truth log-prob
    near -10); JSDs near 0 are differences of entropies, so their error is absolute (atol). A real
    fault (another item, layer, setting or token) moves these values by orders of magnitude more."""
    assert list(one.columns) == list(two.columns) and len(one) == len(two)
    floats = [c for c in one.columns if pd.api.types.is_float_dtype(one[c])]
    others = [c for c in one.columns if c not in floats]
    pd.testing.assert_frame_equal(one[others], two[others])
    for column in floats:
        np.testing.assert_allclose(
            two[column], one[column], rtol=1e-4, atol=1e-5, equal_nan=True, err_msg=column
        )


@pytest.mark.slow
def test_two_processes_under_torchrun_equal_one(bench, tmp_path):
    """Both sides run one thread per process (torchrun gives each rank OMP_NUM_THREADS=1; the
    single run gets torch.set_num_threads(1)), so they usually agree bit for bit; floats are still
    compared with a stated tolerance (see `_assert_same_up_to_float_order`), since the reduction
    order of a kernel is not promised across processes and machines."""
    import torch

    single, sharded = tmp_path / "single", tmp_path / "sharded"
    extra = ["--limit", "9", "--skip", "late=6,7"]  # the skip run is sharded too
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(_cli(bench, single, *extra)[3:]) == 0
    finally:
        torch.set_num_threads(threads)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2"]
    launcher += ["--master-port", str(29500 + os.getpid() % 1000)]
    done = subprocess.run(
        [*launcher, "-m", "mmlens", *_cli(bench, sharded, *extra)[3:]],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    failed = [line for line in done.stderr.splitlines() if "rank0" in line or "Error" in line]
    assert done.returncode == 0, "\n".join(failed[:40]) + "\n...\n" + done.stderr[-2000:]
    one = pd.read_parquet(single / "items.parquet")
    two = pd.read_parquet(sharded / "items.parquet")
    assert sorted(two.shard.unique()) == [0, 1]
    columns = ["order", "id", "prompt", "truth", "output", "n_tokens", "status"]
    pd.testing.assert_frame_equal(one[columns], two[columns])
    for folder in (".", "skips/late"):
        tokens_one = pd.read_parquet(single / folder / "tokens.parquet")
        tokens_two = pd.read_parquet(sharded / folder / "tokens.parquet")
        _assert_same_up_to_float_order(tokens_one, tokens_two)
    assert pd.read_parquet(sharded / "skips/late/items.parquet").shard.nunique() == 2


class _RecordingShard(Shard):
    """A rank of a launch whose barrier runs `at_barrier` (what the other ranks do meanwhile)."""

    def __init__(self, rank: int, at_barrier) -> None:
        super().__init__(rank, 2, rank)
        object.__setattr__(self, "at_barrier", at_barrier)

    def barrier(self) -> None:
        self.at_barrier()


def test_ranks_other_than_0_open_a_run_folder_only_after_rank_0_made_it(tmp_path):
    """Two ranks writing run.json at once raced on one `.run.json.partial` (a rank's replace found
    it gone: CI's torchrun test failed on rank 0). Rank 0 makes the folder; the others wait."""
    from mmlens.cli.run import _open_store

    folder, identity = tmp_path / "run", {"benchmark": "shapes"}
    seen: list[bool] = []
    second = _RecordingShard(1, lambda: seen.append(folder.exists()))
    assert _open_store(folder, identity, second).rank == 1
    assert seen == [False]  # rank 1 made nothing before the barrier
    other = tmp_path / "other"
    first = _RecordingShard(0, lambda: seen.append((other / "run.json").is_file()))
    assert _open_store(other, identity, first).rank == 0
    assert seen == [False, True]  # rank 0 made the folder before it
