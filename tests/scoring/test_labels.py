"""Object labels from a benchmark's items: every item of an image shares what its caption truth,
its known-absent list and its yes-no questions say of it."""

import json

import pandas as pd
import pytest

from mmlens.benchmarks.labels import object_labels
from mmlens.errors import ConfigError


def _item(id_, image, task, prompt, truth, extra=None):
    return {
        "id": id_,
        "image": image,
        "task": task,
        "prompt": prompt,
        "truth": json.dumps(truth),
        "extra": json.dumps(extra or {}),
    }


def test_captions_questions_and_absent_lists_label_each_image():
    items = pd.DataFrame(
        [
            _item(1, "a.png", "generative", "describe", ["dog", "Cat"], {"hallu": ["car"]}),
            _item(2, "a.png", "discriminative", "Is there a bus in the image?", "no"),
            _item(3, "b.png", "discriminative", "is there an apple in the picture ?", "yes"),
            _item(4, "b.png", "discriminative", "are there two objects ?", "yes"),
        ]
    )
    labels = object_labels(items)
    a = labels[labels.id == 1].set_index("object").present.to_dict()
    assert a == {"bus": False, "car": False, "cat": True, "dog": True}
    assert labels[labels.id == 2].set_index("object").present.to_dict() == a  # same image
    assert labels[labels.id == 4].set_index("object").present.to_dict() == {"apple": True}


def test_a_benchmark_without_object_truth_is_a_clear_error():
    items = pd.DataFrame([_item(1, "a.png", "discriminative", "are there two objects ?", "yes")])
    with pytest.raises(ConfigError, match="gives no object labels"):
        object_labels(items)
    with pytest.raises(ConfigError, match="needs \\['truth'\\]"):
        object_labels(items.drop(columns=["truth"]))
