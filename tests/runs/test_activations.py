"""Activation stores (`mmlens activations`, `collect_activations`): what they hold equals
`run_with_cache` on each item alone, for every kind of hook and position; they resume after a
SIGKILL, split over two torchrun processes, stream from disk, and refuse bad settings."""

import dataclasses
import os
import signal
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from _support import n_parts, wait_for_parts

from mmlens.benchmarks import read_shapes, write_shapes_benchmark
from mmlens.cli import main
from mmlens.errors import ConfigError
from mmlens.inputs import image_regions
from mmlens.runs.activation_store import ActivationStore, collect_activations
from mmlens.runs.activations import ActivationSettings

SEQUENCE_HOOKS = ("blocks.0.hook_resid_pre", "blocks.1.hook_resid_post", "blocks.2.attn.hook_z")
VISION_HOOKS = ("hook_image_embeds", "vision_encoder.encoder_layers.1.hook_resid_post")


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    return write_shapes_benchmark(tmp_path_factory.mktemp("bench") / "shapes", n_scenes=3)


@pytest.fixture
def model(shapes_model):
    return shapes_model


def _close(mine: np.ndarray, theirs: torch.Tensor) -> None:
    np.testing.assert_allclose(mine, theirs.float().numpy(), atol=1e-4, rtol=1e-4)


def test_stored_activations_equal_run_with_cache_on_each_item(model, bench, tmp_path):
    items = read_shapes(bench).items[:5]  # captions and questions: a padded batch of 3, then 2
    settings = ActivationSettings(
        hooks=SEQUENCE_HOOKS,
        positions=("image", "image_mean", "regions:2", "last", "generated"),
        max_new_tokens=4,
        batch_size=3,
        flush_every=2,
    )
    collect_activations(model, items, tmp_path / "seq", settings, progress=False)
    vision = ActivationSettings(VISION_HOOKS, ("image", "image_mean"), batch_size=3)
    collect_activations(model, items, tmp_path / "vision", vision, progress=False)
    store, patches = ActivationStore(tmp_path / "seq"), ActivationStore(tmp_path / "vision")
    assert list(store.items.id) == [item.id for item in items]
    for order, item in enumerate(items):
        inputs = model.prepare(item.image, item.prompt)
        image = torch.nonzero(inputs.image_mask[0]).flatten()
        new = model.generate(inputs=inputs, max_new_tokens=4, verbose=False).token_ids
        fed = torch.tensor([new[:-1]])  # what the model read back: all but the last new token
        full = dataclasses.replace(
            inputs,
            input_ids=torch.cat([inputs.input_ids, fed], 1),
            attention_mask=torch.cat([inputs.attention_mask, torch.ones_like(fed)], 1),
            image_mask=torch.cat([inputs.image_mask, torch.zeros_like(fed, dtype=torch.bool)], 1),
        )
        _, cache = model.run_with_cache(inputs=full, names_filter=list(SEQUENCE_HOOKS))
        regions = image_regions(inputs, 2)
        n = inputs.n_positions
        for hook in SEQUENCE_HOOKS:
            acts = cache[hook][0]
            expected = {
                "image": acts[image],
                "image_mean": acts[image].mean(0, keepdim=True),
                "regions:2": torch.stack([acts[p].mean(0) for p in regions.values()]),
                "last": acts[n - 1 : n],
                "generated": acts[n : n + len(new) - 1],
            }
            for kind, values in expected.items():
                mine, table = store.vectors(hook, kind)
                _close(mine[table.order == order], values)
            _, table = store.vectors(hook, "generated")
            assert table[table.order == order].token_id.tolist() == new[:-1]
            assert table[table.order == order].position.tolist() == list(range(n, n + len(new) - 1))
        _, cache = model.run_with_cache(inputs=inputs, names_filter=list(VISION_HOOKS))
        for hook in VISION_HOOKS:
            rows = cache[hook][0]
            mine, table = patches.vectors(hook, "image")
            _close(mine[table.order == order], rows)
            mine, table = patches.vectors(hook, "image_mean")
            _close(mine[table.order == order], rows.mean(0, keepdim=True))
    assert store.items.output.tolist() == [
        model.generate(item.image, item.prompt, max_new_tokens=4, verbose=False).text
        for item in items
    ]


def test_the_index_and_a_dataset_that_streams(model, bench, tmp_path):
    items = read_shapes(bench).items[:4]
    settings = ActivationSettings(("blocks.1.hook_resid_post",), ("image", "last"), flush_every=1)
    summary = collect_activations(model, items, tmp_path / "a", settings, progress=False)
    assert summary.line().startswith("4 items: 4 collected, in")
    store = ActivationStore(tmp_path / "a")
    index = pd.read_parquet(tmp_path / "a" / "index.parquet")
    assert set(index.columns) >= {"id", "order", "hook", "kind", "count", "shape", "start", "part"}
    assert index.part.nunique() == 4  # one part per item (flush_every=1), read across parts
    assert set(index.layer) == {2}  # blocks.1.hook_resid_post: layer 2, as hidden_states
    vectors, table = store.vectors("blocks.1.hook_resid_post", "image")
    dataset = store.dataset("blocks.1.hook_resid_post", "image")
    assert len(dataset) == len(vectors) == len(table)
    for index_ in (0, 63, 64, len(dataset) - 1):
        vector, item_id = dataset[index_]
        assert item_id == table.id[index_]
        np.testing.assert_array_equal(vector.numpy(), vectors[index_])
    loader = torch.utils.data.DataLoader(dataset, batch_size=50)
    assert sum(len(batch) for batch, _ in loader) == len(dataset)
    with pytest.raises(ConfigError, match="holds no 'hook_embed' at 'last'"):
        store.vectors("hook_embed", "last")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"hooks": ("blocks.1.hook_nothing",)}, "hook 'blocks.1.hook_nothing' is not a hook"),
        ({"hooks": ("blocks.1.attn.hook_pattern",)}, "is \\[batch, head, query, key\\]"),
        ({"hooks": ("hook_pixel_values",)}, "holds pixels"),
        ({"hooks": ("hook_image_embeds",), "positions": ("last",)}, "no 'last' position"),
        ({"hooks": ("hook_embed",), "positions": ("middle",)}, "position kind 'middle'"),
        ({"hooks": ("hook_embed",), "positions": ("generated",)}, "max_new_tokens >= 2"),
        ({"hooks": ("vision_encoder.encoder_layers.1.hook_out",), "positions": ("regions:2",)},
         "65 patch rows, not one per image token"),
    ],
)  # fmt: skip
def test_bad_settings_are_clear_errors_and_write_nothing(model, bench, tmp_path, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        settings = ActivationSettings(**kwargs)
        collect_activations(model, read_shapes(bench).items[:1], tmp_path / "a", settings)
    assert not list((tmp_path / "a" / "parts").glob("0*")) if (tmp_path / "a").exists() else True


def test_a_folder_holding_other_settings_is_refused(model, bench, tmp_path):
    items = read_shapes(bench).items[:2]
    one = ActivationSettings(("blocks.1.hook_resid_post",), ("last",))
    collect_activations(model, items, tmp_path / "a", one, progress=False)
    other = ActivationSettings(("blocks.1.hook_resid_post",), ("image_mean",))
    with pytest.raises(ConfigError, match="holds another run .*positions"):
        collect_activations(model, items, tmp_path / "a", other, progress=False)


def _cli(bench, out):
    return [
        sys.executable, "-m", "mmlens", "activations", "shapes", "--data", str(bench),
        "--out", str(out), "--hooks", "blocks.*.hook_resid_post", "--positions",
        "image_mean,last,generated", "--max-new-tokens", "3", "--quiet", "--flush-every", "1",
    ]  # fmt: skip


def _assert_same_store(one_folder, two_folder) -> None:
    one, two = ActivationStore(one_folder), ActivationStore(two_folder)
    assert one.items.id.tolist() == two.items.id.tolist()
    for hook, kind in sorted(set(zip(one.index.hook, one.index.kind, strict=True))):
        mine, table = one.vectors(hook, kind)
        theirs, other = two.vectors(hook, kind)
        assert table.id.tolist() == other.id.tolist()
        assert table.token_id.tolist() == other.token_id.tolist()
        np.testing.assert_allclose(mine, theirs, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_sigkill_then_the_same_command_resumes(bench, tmp_path):
    out, whole = tmp_path / "killed", tmp_path / "whole"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        _cli(bench, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    wait_for_parts(out, 3, process, timeout=240)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    written = n_parts(out)
    n_items = len(read_shapes(bench).items)
    assert 3 <= written < n_items, "the collection should be killed part-way"
    assert not (out / "index.parquet").exists()
    done = subprocess.run(_cli(bench, out), capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr
    assert "already done" in done.stdout
    assert main(_cli(bench, whole)[3:]) == 0
    _assert_same_store(out, whole)


@pytest.mark.slow
def test_two_processes_under_torchrun_equal_one(bench, tmp_path):
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as torchrun gives each rank
    try:
        assert main(_cli(bench, single)[3:]) == 0
    finally:
        torch.set_num_threads(threads)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2"]
    launcher += ["--master-port", str(29600 + os.getpid() % 1000)]
    done = subprocess.run(
        [*launcher, *_cli(bench, sharded)[1:]],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(pd.read_parquet(sharded / "items.parquet").shard.unique()) == [0, 1]
    _assert_same_store(single, sharded)
