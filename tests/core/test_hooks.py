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


def test_norm_hooks_hold_what_the_table_says(tmp_path, photo):
    """With norm weights that are not all ones (as in trained models): `hook_out` is the norm's
    output (HF's `hidden_states[-1]` for `ln_final`, `input_layernorm`'s output for `ln1`) and
    `hook_normalized` is x / rms(x), before the weight."""
    from _support import load_hf

    from mmlens.zoo.tiny import TinyLlavaSpec, build_tiny_llava

    path = build_tiny_llava(tmp_path / "tiny", TinyLlavaSpec())
    hf = load_hf(path)
    generator = torch.Generator().manual_seed(0)
    for name, parameter in hf.model.language_model.named_parameters():
        if name.endswith("norm.weight"):
            parameter.data = 1 + 0.5 * torch.randn(parameter.shape, generator=generator)
    hf.save_pretrained(path)
    model = mmlens.load(path)
    inputs = model.prepare(photo, PROMPT)
    reference = hf(**inputs.model_kwargs(), output_hidden_states=True)
    _, cache = model.run_with_cache(inputs=inputs)
    final = hf.model.language_model.norm
    torch.testing.assert_close(cache["ln_final.hook_out"], reference.hidden_states[-1])
    last = cache[f"blocks.{model.n_blocks - 1}.hook_resid_post"]
    rms = last.pow(2).mean(-1, keepdim=True).add(final.variance_epsilon).sqrt()
    torch.testing.assert_close(cache["ln_final.hook_normalized"], last / rms)
    assert not torch.allclose(cache["ln_final.hook_normalized"], reference.hidden_states[-1])
    first = hf.model.language_model.layers[0].input_layernorm
    torch.testing.assert_close(
        cache["blocks.0.ln1.hook_out"], first(cache["blocks.0.hook_resid_pre"])
    )
    torch.testing.assert_close(
        cache["blocks.0.ln1.hook_normalized"] * first.weight, cache["blocks.0.ln1.hook_out"]
    )
