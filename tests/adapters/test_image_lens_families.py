"""The image-token lens on every family: norm + unembed on Hugging Face's hidden states at the
image positions (`tests/analyses/test_image_lens.py` holds the full check for LLaVA and
Qwen2.5-VL); LLaVA-NeXT's tiles form no single patch grid, a clear error."""

import numpy as np
import pytest
import torch
from PIL import Image

from mmlens.analyses.image_lens import image_token_lens
from mmlens.errors import ConfigError
from mmlens.words import first_token_id

PROMPT = "What is in the picture?"


def test_the_lens_at_image_positions_equals_hf(case):
    model, hf = case.model, case.hf
    pixels = np.random.default_rng(5).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    inputs = model.prepare(Image.fromarray(pixels), PROMPT)
    word = next(w for w in ("image", "picture", "the", "a") if first_token_id(model.tokenizer, w))
    with torch.no_grad():
        _, cache = model.run_with_cache(inputs=inputs)
        if inputs.patch_grid(0) is None:
            with pytest.raises(ConfigError, match="patch grid"):
                image_token_lens(model, cache, [word])
            return
        lens = image_token_lens(model, cache, [word])
        hidden = hf(**case.hf_kwargs(inputs), output_hidden_states=True).hidden_states
        token = first_token_id(model.tokenizer, word)
        norm, head = hf.model.language_model.norm, hf.lm_head
        last = len(hidden) - 1
        for index, layer in enumerate(lens.layers):
            states = hidden[layer][0, torch.as_tensor(lens.positions)]
            normed = states if layer == last else norm(states)
            expected = torch.softmax(head(normed).float(), -1)[:, token].numpy()
            np.testing.assert_allclose(lens.word_probs[word][index], expected, atol=1e-5)
