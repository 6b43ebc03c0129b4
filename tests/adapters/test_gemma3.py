"""Gemma 3 details that the family parity tests do not reach."""

import json

import numpy as np
import torch
from transformers import Gemma3ForConditionalGeneration

import mmlens
from mmlens.zoo.tiny_gemma3 import build_tiny_gemma3

PROMPT = "describe this image ."


def test_lens_follows_the_model_when_the_config_sets_a_logit_softcap(tmp_path, wide_photo):
    """`Gemma3ForConditionalGeneration` ignores `final_logit_softcapping`, so the lens must too:
    its last layer is the model's own next-token distribution, not a capped one."""
    path = build_tiny_gemma3(tmp_path / "gemma3")
    config = json.loads((path / "config.json").read_text())
    config["text_config"]["final_logit_softcapping"] = 0.5  # small: a cap would change a lot
    (path / "config.json").write_text(json.dumps(config))
    model = mmlens.load(path)
    hf = Gemma3ForConditionalGeneration.from_pretrained(path, attn_implementation="eager").eval()
    assert hf.config.text_config.final_logit_softcapping == 0.5
    inputs = model.prepare(wide_photo, PROMPT)
    logits = hf(**inputs.model_kwargs()).logits[0, -1].double()
    trace = model.trace(wide_photo, PROMPT, max_new_tokens=1, top_k=3, progress=False)
    expected = logits.log_softmax(-1)
    np.testing.assert_allclose(trace.logprob[0, -1], expected[trace.token_ids[0]], atol=1e-5)
    np.testing.assert_allclose(trace.topk_probs[0, -1], expected.exp().topk(3).values, atol=1e-5)
    capped = (0.5 * torch.tanh(logits / 0.5)).log_softmax(-1)
    assert abs(capped[trace.token_ids[0]] - expected[trace.token_ids[0]]) > 0.1
