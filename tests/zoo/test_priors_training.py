"""Training `mmlens/priors`: batches as the processor makes them, and exact resumption."""

import random

import pytest
import torch
from safetensors.torch import load_file

from mmlens.adapters.llava import image_chat
from mmlens.zoo.priors import train as training
from mmlens.zoo.priors.build import build_processor
from mmlens.zoo.priors.text import random_example

pytestmark = pytest.mark.slow


def test_batches_equal_what_the_processor_makes(smollm2):
    processor = build_processor(smollm2[1])
    rng = random.Random(0)
    scenes, images = training._scenes(rng, 6)
    examples = [random_example(scene, rng) for scene in scenes]
    batch = training.example_batch(processor, examples, images)
    texts = [image_chat(e.prompt) for e in examples]
    reference = processor(images=images, text=texts, return_tensors="pt", padding=True)
    torch.testing.assert_close(batch["pixel_values"], reference["pixel_values"], rtol=0, atol=1e-6)
    tokenizer = processor.tokenizer
    for row, example in enumerate(examples):
        prompt = reference["input_ids"][row][reference["attention_mask"][row].bool()].tolist()
        answer = tokenizer(f" {example.answer}", add_special_tokens=False).input_ids
        length = len(prompt) + len(answer) + 1
        assert batch["input_ids"][row, :length].tolist() == [*prompt, *answer, 2]
        assert batch["labels"][row, : len(prompt)].eq(-100).all()
        assert batch["labels"][row, len(prompt) : length].tolist() == [*answer, 2]
        assert batch["labels"][row, length:].eq(-100).all()
    assert tokenizer.convert_ids_to_tokens(2) == "<|im_end|>"


class Interrupted(Exception):
    pass


def test_an_interrupted_run_resumes_to_the_same_weights(smollm2, tmp_path, monkeypatch):
    monkeypatch.setattr(training, "load_language_model", lambda: smollm2)
    settings = training.Settings(
        vision_steps=3, vision_batch=4, steps=4, batch_size=2, checkpoint_every=2
    )
    whole = training.train(settings, tmp_path / "a", tmp_path / "a.safetensors", "cpu", 2)

    real_loss, calls = training.answer_loss, []

    def stop_at_third_step(model, batch):
        calls.append(1)
        if len(calls) == 3:
            raise Interrupted
        return real_loss(model, batch)

    monkeypatch.setattr(training, "answer_loss", stop_at_third_step)
    with pytest.raises(Interrupted):
        training.train(settings, tmp_path / "b", tmp_path / "b.safetensors", "cpu", 2)
    assert (tmp_path / "b" / "align.pt").is_file() and not (tmp_path / "b.safetensors").exists()
    monkeypatch.setattr(training, "answer_loss", real_loss)
    resumed = training.train(settings, tmp_path / "b", tmp_path / "b.safetensors", "cpu", 2)
    first, second = load_file(str(whole)), load_file(str(resumed))
    assert first.keys() == second.keys()
    for name in first:
        torch.testing.assert_close(second[name], first[name], rtol=0, atol=1e-6)
