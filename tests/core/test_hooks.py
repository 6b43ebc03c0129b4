"""TransformerLens-style hooks on the multimodal model: patching images and residuals."""

import numpy as np
import torch

import mmlens

PROMPT = "what is in the image ?"


def test_run_with_hooks_patches_the_image_embeddings(tiny, photo):
    inputs = tiny.prepare(photo, PROMPT)
    clean = tiny(inputs=inputs)
    identity = tiny.run_with_hooks(
        inputs=inputs, fwd_hooks=[("hook_image_embeds", lambda t, hook: t)]
    )
    torch.testing.assert_close(identity, clean)
    ablated = tiny.run_with_hooks(
        inputs=inputs, fwd_hooks=[("hook_image_embeds", lambda t, hook: torch.zeros_like(t))]
    )
    assert not torch.allclose(ablated[0, -1], clean[0, -1])
    # Hooks were temporary: the model is clean again.
    torch.testing.assert_close(tiny(inputs=inputs), clean)


def test_patching_a_clean_residual_into_a_corrupted_run_restores_it(tiny, photo):
    clean_inputs = tiny.prepare(photo, PROMPT)
    corrupted_inputs = tiny.prepare(np.flipud(photo).copy(), PROMPT)
    clean_logits, clean_cache = tiny.run_with_cache(inputs=clean_inputs)
    last = f"blocks.{tiny.n_blocks - 1}.hook_resid_post"

    def restore(activation: torch.Tensor, hook: object) -> torch.Tensor:
        return clean_cache[last]

    patched = tiny.run_with_hooks(inputs=corrupted_inputs, fwd_hooks=[(last, restore)])
    torch.testing.assert_close(patched, clean_logits)
    assert not torch.allclose(tiny(inputs=corrupted_inputs), clean_logits)


def test_bfloat16_trace_is_finite(checkpoints, photo):
    model = mmlens.load(checkpoints["gqa"], dtype=torch.bfloat16)
    assert model.dtype == torch.bfloat16
    trace = model.trace(photo, PROMPT, max_new_tokens=4)
    assert trace.logprob.dtype == np.float32
    assert np.isfinite(trace.logprob).all() and np.isfinite(trace.jsd[:, :-1]).all()
    assert (trace.jsd[:, :-1] <= np.log(2) + 1e-9).all()
