"""How the held-out evaluation reads answers: greedy words and the forced colour choice."""

import pandas as pd
import pytest
import torch

from mmlens.zoo.heldout.decode import colour_token_ids, forced_colours, greedy
from mmlens.zoo.heldout.evaluate import elicitation_ids, forced_choice
from mmlens.zoo.priors.build import build_model, build_processor
from mmlens.zoo.priors.scenes import COLOURS, Scene, SceneObject, draw_scene


def test_forced_choice_sums_a_colours_variants():
    ids = [[0, 1], [2], [3], [4], [5], [6]]
    logits = torch.full((2, 8), -10.0)
    logits[0, 0] = logits[0, 1] = 1.0  # red twice at 1.0 ...
    logits[0, 2] = 1.5  # ... beats green once at 1.5 (e + e > e**1.5)
    logits[1, 7] = 9.0  # a token that is no colour is never chosen
    logits[1, 5] = -1.0
    names = list(COLOURS)
    probs = logits.softmax(-1)
    expected = [names[max(range(6), key=lambda c: float(probs[r, ids[c]].sum()))] for r in (0, 1)]
    assert forced_colours(logits, ids) == expected == [names[0], names[4]]


def test_forced_choice_replaces_only_colour_answers():
    calls = pd.DataFrame(
        {
            "source": ["question", "caption", "object", "count"],
            "said": ["", "leaf", "ball", "one"],
            "forced": ["red", "green", "", ""],
        }
    )
    forced = forced_choice(calls)
    assert forced["said"].tolist() == ["red", "green", "ball", "one"]
    assert calls["said"].tolist() == ["", "leaf", "ball", "one"]


@pytest.mark.slow
def test_colour_tokens_are_single_distinct_and_spell_the_colour(smollm2):
    tokenizer = smollm2[1]
    ids = colour_token_ids(tokenizer)
    assert [len(group) for group in ids] == [4] * len(COLOURS)
    assert len({i for group in ids for i in group}) == 4 * len(COLOURS)
    for colour, group in zip(COLOURS, ids, strict=True):
        assert {tokenizer.decode([i]).strip().lower() for i in group} == {colour}


@pytest.mark.slow
def test_greedy_matches_generate_and_forced_reads_the_first_logits(smollm2):
    processor = build_processor(smollm2[1])
    model = build_model(smollm2[0], processor).eval()
    scenes = [("ball", "red"), ("leaf", "blue"), ("cup", "white")]
    jobs = []
    for name, colour in scenes:
        image = draw_scene(Scene((SceneObject(name, colour, "middle", 12.0),)))
        for source in ("question", "caption"):
            jobs.append((elicitation_ids(processor, name, source), image))
    texts, forced = greedy(model, processor, jobs, tokens=4, batch=2)
    ids_per_colour = colour_token_ids(processor.tokenizer)
    for (ids, image), text, chosen in zip(jobs, texts, forced, strict=True):
        pixels = processor.image_processor(image, return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            out = model.generate(
                input_ids=torch.tensor([ids]),
                pixel_values=pixels,
                max_new_tokens=4,
                do_sample=False,
                output_logits=True,
                return_dict_in_generate=True,
            )
        new = out.sequences[0, len(ids) :]
        assert text.startswith(processor.tokenizer.decode(new))  # generate stops at the end
        assert chosen == forced_colours(out.logits[0].float(), ids_per_colour)[0]
