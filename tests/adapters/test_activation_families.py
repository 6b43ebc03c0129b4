"""Activation stores on every family: what a batch stores equals `run_with_cache` on each item
alone (image tokens, their mean, the last prompt position, generated tokens)."""

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from mmlens.benchmarks.items import BenchmarkItem
from mmlens.errors import ConfigError
from mmlens.inputs import image_regions
from mmlens.runs.activation_store import ActivationStore, collect_activations
from mmlens.runs.activations import ActivationSettings

HOOK = "blocks.1.hook_resid_post"


def test_a_store_equals_run_with_cache_on_every_family(case, image, tmp_path):
    model = case.model
    other = Image.fromarray(np.asarray(image)[::-1].copy())
    items = []
    for index, (picture, prompt) in enumerate(
        [(image, "What is in the picture?"), (other, "Say what you see, in a few words.")]
    ):
        path = tmp_path / f"{index}.png"
        picture.save(path)
        items.append(BenchmarkItem("test", index, path, prompt, "generative", "caption", ()))
    settings = ActivationSettings(
        (HOOK,), ("image", "image_mean", "last", "generated"), max_new_tokens=3, batch_size=2
    )
    collect_activations(model, items, tmp_path / "store", settings, progress=False)
    store = ActivationStore(tmp_path / "store")
    for order, item in enumerate(items):
        inputs = model.prepare(Image.open(item.image), item.prompt)
        new = model.generate(inputs=inputs, max_new_tokens=3, verbose=False).token_ids
        n = inputs.n_positions
        image_positions = torch.nonzero(inputs.image_mask[0]).flatten()
        _, cache = model.run_with_cache(inputs=inputs, names_filter=HOOK)
        acts = cache[HOOK][0]
        expected = {
            "image": acts[image_positions],
            "image_mean": acts[image_positions].mean(0, keepdim=True),
            "last": acts[n - 1 : n],
        }
        if inputs.position_ids is None:  # the generated positions, re-run as one sequence
            fed = torch.tensor([new[:-1]])
            full = dataclasses.replace(
                inputs,
                input_ids=torch.cat([inputs.input_ids, fed], 1),
                attention_mask=torch.cat([inputs.attention_mask, torch.ones_like(fed)], 1),
                image_mask=torch.cat([inputs.image_mask, torch.zeros_like(fed).bool()], 1),
                token_kwargs={
                    k: torch.cat([v, torch.zeros_like(fed).to(v.dtype)], 1)
                    for k, v in inputs.token_kwargs.items()
                },
            )
            _, cache = model.run_with_cache(inputs=full, names_filter=HOOK)
            expected["generated"] = cache[HOOK][0, n : n + len(new) - 1]
        for kind, values in expected.items():
            mine, table = store.vectors(HOOK, kind)
            np.testing.assert_allclose(
                mine[table.order == order], values.float().numpy(), atol=1e-4, rtol=1e-4
            )
        _, table = store.vectors(HOOK, "generated")
        assert table[table.order == order].token_id.tolist() == new[:-1]


def test_regions_where_the_family_has_a_patch_grid(case, image, tmp_path):
    """Regions are pooled where image tokens form a grid; LLaVA-NeXT's tiles form none, which
    stops the collection with one clear error (not every item recorded as failed)."""
    path = tmp_path / "image.png"
    image.save(path)
    items = [BenchmarkItem("test", 0, path, "What is in the picture?", "generative", "c", ())]
    settings = ActivationSettings((HOOK,), ("regions:2",))
    inputs = case.model.prepare(image, "What is in the picture?")
    if not inputs.patch_grids or inputs.patch_grids[0] is None:
        with pytest.raises(ConfigError, match="'regions:2' cannot be placed here"):
            collect_activations(case.model, items, tmp_path / "s", settings, progress=False)
        return
    collect_activations(case.model, items, tmp_path / "s", settings, progress=False)
    vectors, _ = ActivationStore(tmp_path / "s").vectors(HOOK, "regions:2")
    _, cache = case.model.run_with_cache(inputs=inputs, names_filter=HOOK)
    expected = [cache[HOOK][0, p].mean(0) for p in image_regions(inputs, 2).values()]
    np.testing.assert_allclose(vectors, torch.stack(expected).numpy(), atol=1e-4, rtol=1e-4)
