"""Attention knockout equals an independent knockout on the plain `transformers` model, for every
family: the reference replaces each family's eager attention function with one that sets the
blocked scores to -inf before the softmax (mmlens edits the 4-D mask instead), and generates by
re-running the whole sequence each step without a KV cache (mmlens uses the cache, and Gemma 3's
sliding layers a shorter one), so positions are plain sequence indices there."""

import sys

import numpy as np
import pytest
import torch
from PIL import Image

from mmlens.errors import ConfigError, LayerIndexError
from mmlens.knockout import attention_knockout, group_positions

PROMPT = "What is in the picture?"


class ScoreKnockout:
    """Each family's eager attention with blocked (query, key) scores set to -inf, in chosen
    attention modules and heads; `edges` maps each batch row to (source, target) position
    sets, a target of None meaning every position from `n_prompt` on (generated tokens)."""

    def __init__(self, case, layers, edges, heads=None, n_prompt=0):  # case: a FamilyCase
        layers_list = case.hf.model.language_model.layers
        self.modules = {layers_list[i].self_attn for i in layers}
        self.edges, self.heads, self.n_prompt = edges, heads, n_prompt
        self.module = sys.modules[type(layers_list[0].self_attn).__module__]
        self.original = self.module.eager_attention_forward

    def __enter__(self):
        self.module.eager_attention_forward = self.attention
        return self

    def __exit__(self, *exc):
        self.module.eager_attention_forward = self.original

    def attention(self, module, query, key, value, attention_mask, scaling=None, dropout=0.0,
                  softcap=None, **kwargs):  # fmt: skip
        if module not in self.modules:
            return self.original(module, query, key, value, attention_mask, scaling=scaling,
                                 dropout=dropout, **({"softcap": softcap} if softcap else {}),
                                 **kwargs)  # fmt: skip
        assert softcap is None and query.shape[2] == key.shape[2]  # no cache: indices = positions
        groups = module.num_key_value_groups
        key = key.repeat_interleave(groups, dim=1)
        value = value.repeat_interleave(groups, dim=1)
        scaling = module.head_dim**-0.5 if scaling is None else scaling
        scores = query @ key.transpose(2, 3) * scaling
        if attention_mask is not None:
            scores = scores + attention_mask[:, :, :, : key.shape[2]]
        length = query.shape[2]
        heads = range(scores.shape[1]) if self.heads is None else self.heads
        for row, pairs in self.edges.items():
            for sources, targets in pairs:
                targets = range(self.n_prompt, length) if targets is None else targets
                for head in heads:
                    for target in targets:
                        for source in sources:
                            if source <= target:
                                scores[row, head, target, source] = -torch.inf
        weights = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
        return (weights @ value).transpose(1, 2).contiguous(), weights


def _positions(inputs, group, row=0):
    return group_positions(inputs, group, row).fixed.tolist()


def test_a_forward_with_knockout_equals_hf_with_blocked_scores(case, image):
    inputs = case.model.prepare(image, PROMPT)
    layers, edges = [1, 2], [("image", "last"), ("prompt", "last")]
    sources = [_positions(inputs, "image"), _positions(inputs, "prompt")]
    last = [inputs.n_positions - 1]
    with torch.no_grad():
        plain = case.model(inputs=inputs)[0, -1]
        with attention_knockout(case.model, inputs, edges, layers):
            ours = case.model(inputs=inputs)[0, -1]
        reference_edges = {0: [(sources[0], last), (sources[1], last)]}
        with ScoreKnockout(case, layers, reference_edges):
            theirs = case.hf(**case.hf_kwargs(inputs)).logits[0, -1]
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    assert (ours - plain).abs().max() > 1e-3  # the knockout did something


def test_knockout_of_some_heads_equals_hf(case, image):
    inputs = case.model.prepare(image, PROMPT)
    region = "region:0,0/2" if inputs.patch_grid(0) else "image"
    with torch.no_grad():
        with attention_knockout(case.model, inputs, [(region, "last")], layers=0, heads=[0]):
            ours = case.model(inputs=inputs)[0]
        edges = {0: [(_positions(inputs, region), [inputs.n_positions - 1])]}
        with ScoreKnockout(case, [0], edges, heads=[0]):
            theirs = case.hf(**case.hf_kwargs(inputs)).logits[0]
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_greedy_generation_with_knockout_equals_hf_without_cache(case, image):
    """The image is cut off from the last prompt position and every generated token in all
    blocks but the first: mmlens's cached steps against HF re-running the whole sequence."""
    inputs = case.model.prepare(image, PROMPT)
    layers = list(range(1, case.model.n_blocks))
    edges = [("image", "last"), ("image", "generated")]
    with attention_knockout(case.model, inputs, edges, layers):
        generation = case.model.generate(inputs=inputs, max_new_tokens=5, verbose=False)
    ours = generation.token_ids
    assert ours
    image_positions, last = _positions(inputs, "image"), [inputs.n_positions - 1]
    reference = {0: [(image_positions, last), (image_positions, None)]}
    new: list[int] = []
    with torch.no_grad(), ScoreKnockout(case, layers, reference, n_prompt=inputs.n_positions):
        for _ in range(len(ours)):
            logits = case.hf(**case.hf_kwargs_with(inputs, new)).logits[0, -1]
            new.append(int(logits.argmax()))
    assert ours == new


def test_a_batch_knocks_out_each_row_at_its_own_positions(case, image):
    """Left-padded rows: row r of a batch with knockout equals the row alone in HF."""
    other = Image.fromarray(np.asarray(image)[::-1].copy())
    prompts = [PROMPT, "Describe it in a few words, please."]
    batch = case.model.prepare([image, other], prompts)
    layers = [0, 2]
    with torch.no_grad(), attention_knockout(case.model, batch, ["image->last"], layers):
        ours = case.model(inputs=batch)[:, -1]
    for row, (picture, prompt) in enumerate(zip([image, other], prompts, strict=True)):
        alone = case.model.prepare(picture, prompt)
        edges = {0: [(_positions(alone, "image"), [alone.n_positions - 1])]}
        with torch.no_grad(), ScoreKnockout(case, layers, edges):
            theirs = case.hf(**case.hf_kwargs(alone)).logits[0, -1]
        torch.testing.assert_close(ours[row], theirs, atol=1e-4, rtol=1e-4)


def test_bad_knockouts_are_clear_errors(case, image):
    model = case.model
    inputs = model.prepare(image, PROMPT)
    bad = [
        (dict(edges=[("image", "last")], layers=[model.n_blocks]), LayerIndexError, "blocks 0.."),
        (dict(edges=[("image", "last")], layers=[]), ConfigError, "layers is empty"),
        (dict(edges=[("image", "last")], layers=0, heads=[99]), ConfigError, "heads 0.."),
        (dict(edges=[("image", "nowhere")], layers=0), ConfigError, "'nowhere'"),
        (dict(edges=[([], "last")], layers=0), ConfigError, "empty list"),
        (dict(edges=[([10_000], "last")], layers=0), ConfigError, "outside the sequence"),
        (dict(edges=["image to last"], layers=0), ConfigError, "SOURCE->TARGET"),
        (dict(edges=[], layers=0), ConfigError, "No edges"),
        (dict(edges=[("region:5,5/2", "last")], layers=0), ConfigError, "region"),
    ]
    for kwargs, error, words in bad:
        with pytest.raises(error, match=words), attention_knockout(model, inputs, **kwargs):
            pass
    if inputs.patch_grid(0) is None:  # LLaVA-NeXT's tiles: a region cannot be placed
        placed = pytest.raises(ConfigError, match="patch grid")
        with placed, attention_knockout(model, inputs, [("region:0,0/2", "last")], 0):
            pass
    text_only = model.prepare(None, PROMPT)
    empty = pytest.raises(ConfigError, match="'image' is empty")
    with empty, attention_knockout(model, text_only, ["image->last"], 0):
        pass
    mismatch = pytest.raises(ConfigError, match="built for inputs")
    with mismatch, attention_knockout(model, inputs, ["image->last"], 0):
        model(inputs=text_only)


def test_the_shared_sweep_equals_the_naive_loop(case, image):
    """Later blocks only, edges batched, the image encoded once: the same table as one whole
    forward per window and edge, on every family."""
    from mmlens.analyses.flow import knockout_sweep

    kwargs = dict(window=2, progress=False)
    shared = knockout_sweep(case.model, image, PROMPT, **kwargs)
    naive = knockout_sweep(case.model, image, PROMPT, shared=False, **kwargs)
    np.testing.assert_allclose(shared.value, naive.value, rtol=1e-4, atol=1e-6)
    assert shared.change.abs().max() > 1e-4
