"""Bad input that used to reach users as a traceback (or as silently wrong pixels, tokens or
weights) is one `MMLensError` naming the value and the fix."""

import json
import re
import shutil
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

import mmlens
from mmlens import Trace
from mmlens.errors import (
    CheckpointNotFoundError,
    ConfigError,
    ImageError,
    PromptError,
    TokenError,
    TraceFormatError,
)
from mmlens.inputs import load_image

PROMPT = "describe this image ."
RGB = np.zeros((12, 12, 3), dtype=np.uint8)


@pytest.fixture
def unchecked():
    """Call mmlens as users do: without this suite's runtime type checker (jaxtyping with
    beartype), which would refuse these ill-typed values before mmlens's own checks see them."""
    from jaxtyping import config

    before = config.jaxtyping_disable
    config.update("jaxtyping_disable", True)
    yield
    config.update("jaxtyping_disable", before)


# -- numpy images: values are never clipped or wrapped ---------------------------------------------
def _with(value: float) -> np.ndarray:
    """A float image in [0, 1] with one bad value."""
    array = np.full((8, 8, 3), 0.5)
    array[3, 4, 1] = value
    return array


@pytest.mark.parametrize(
    ("array", "named"),
    [
        (_with(np.nan), "nan"),
        (_with(np.inf), "inf"),
        (_with(-np.inf), "-inf"),
        (np.full((8, 8, 3), 300), "300"),
        (np.full((8, 8, 3), -5), "-5"),
        (np.full((8, 8), 1000, dtype=np.uint16), "1000"),
        (np.full((8, 8, 3), 200.0), "200"),
        (np.zeros((8, 8, 3), dtype=np.complex64), "complex64"),
        (np.array([["a", "b"], ["c", "d"]]), "<U1"),
        (np.array([[None, 1], [2, 3]], dtype=object), "object"),
    ],
)
def test_numpy_images_with_values_no_image_holds(array, named):
    with pytest.raises(ImageError, match=named) as raised:
        load_image(array)
    assert "numpy image" in str(raised.value)


def test_out_of_range_values_say_the_fix():
    with pytest.raises(ImageError, match=r"300\.\.300; integer images must be 0\.\.255"):
        load_image(np.full((4, 4, 3), 300, dtype=np.int64))
    with pytest.raises(ImageError, match="divide by 255"):
        load_image(np.full((4, 4, 3), 200.0))
    with pytest.raises(ImageError, match="divide by 257"):
        load_image(np.full((4, 4), 40_000, dtype=np.uint16))
    with pytest.raises(ImageError, match="np.nan_to_num"):
        load_image(_with(np.nan))


def test_float_images_are_0_to_1_and_bool_images_black_and_white():
    assert load_image(np.full((4, 4, 3), 1.0, dtype=np.float32)).getpixel((0, 0)) == (255,) * 3
    assert load_image(np.full((4, 4), 0.5, dtype=np.float16)).getpixel((0, 0)) == (128,) * 3
    mask = np.eye(4, dtype=bool)
    assert load_image(mask).getpixel((0, 0)) == (255,) * 3
    assert load_image(mask).getpixel((1, 0)) == (0,) * 3
    wide = np.full((4, 4, 3), 255, dtype=np.int64)  # any integer dtype holding 0..255 is fine
    assert load_image(wide).getpixel((0, 0)) == (255,) * 3


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((0, 0, 3), r"\(0, 0, 3\): it has no pixels"),
        ((0, 5, 3), r"\(0, 5, 3\): it has no pixels"),
        ((3, 16, 16), r"\(3, 16, 16\), channels first.*transpose\(1, 2, 0\)"),
        ((1, 16, 16, 3), r"\(1, 16, 16, 3\), a batch of one; pass array\[0\]"),
        ((16,), r"\(16,\); an image is"),
    ],
)
def test_numpy_images_of_the_wrong_shape(tiny, shape, message):
    with pytest.raises(ImageError, match=message):
        tiny.prepare(np.zeros(shape, dtype=np.uint8), PROMPT)


def test_pil_images_without_pixels_or_with_values_rgb_would_clip(tiny):
    with pytest.raises(ImageError, match="0x0: it has no pixels"):
        tiny.prepare(Image.new("RGB", (0, 0)), PROMPT)
    with pytest.raises(ImageError, match=r"mode I;16\) holds values 1000\.\.1000"):
        tiny.prepare(Image.new("I;16", (8, 8), 1000), PROMPT)
    # a float image of 0..1 is read as the numpy rule says (PIL's convert would make it black)
    assert load_image(Image.new("F", (4, 4), 0.5)).getpixel((0, 0)) == (128,) * 3


def test_torch_tensors_are_not_taken_as_images(tiny, unchecked):
    image = torch.rand(3, 16, 16)
    with pytest.raises(ImageError, match=r"torch tensor of shape \(3, 16, 16\).*permute"):
        tiny.prepare(image, PROMPT)
    with pytest.raises(ImageError, match=r"float tensor of shape \(3, 16, 16\)"):
        tiny.generate(image, PROMPT, max_new_tokens=1)
    with pytest.raises(ImageError, match=r"float tensor of shape \(3, 16, 16\)"):
        tiny.run_with_cache(image)
    with pytest.raises(PromptError, match="Token ids must be an integer tensor"):
        tiny.run_with_cache(torch.rand(1, 5))  # not image-shaped: taken as bad token ids
    with pytest.raises(ImageError, match="io.BytesIO"):
        tiny.prepare(b"\x89PNG", PROMPT)


# -- image files -----------------------------------------------------------------------------------
def test_a_folder_is_not_an_image_file(tiny, tmp_path):
    with pytest.raises(
        ImageError, match=f"{re.escape(str(tmp_path))} is a folder, not an image file"
    ):
        tiny.trace(tmp_path, PROMPT, max_new_tokens=1)


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_truncated_image_files(tiny, tmp_path, suffix):
    whole = tmp_path / f"whole{suffix}"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(whole)
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(ImageError, match=f"{re.escape(str(cut))}.*truncated"):
        tiny.prepare(cut, PROMPT)
    with pytest.raises(ImageError, match=f"{re.escape(str(cut))} could not be read.*truncated"):
        tiny.prepare(Image.open(cut), PROMPT)  # opened lazily: the pixels fail later


def test_decompression_bomb_warning_made_an_error(tiny, tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.new("RGB", (64, 64)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 3000)  # 4096 pixels: PIL only warns
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ImageError, match=f"{re.escape(str(path))} is too large to open safely"):
            tiny.prepare(path, PROMPT)


# -- prompts that are not text ---------------------------------------------------------------------
BAD_PROMPTS = [
    (b"describe", "bytes.*decode"),
    (None, "prompt=None"),
    (3, "int 3"),
    (1.5, "float 1.5"),
    (["describe", 7], r"prompt\[1\] is int 7"),
    ([None], r"prompt\[0\] is NoneType"),
    (("a", "b"), "tuple; pass a list"),
]


@pytest.mark.parametrize(("prompt", "message"), BAD_PROMPTS)
def test_prompts_that_are_not_text(tiny, prompt, message, unchecked):
    image = [RGB] * len(prompt) if isinstance(prompt, list) else RGB
    with pytest.raises(PromptError, match=message):
        tiny.prepare(image, prompt)
    with pytest.raises(PromptError, match=message):
        tiny.trace(image, prompt, max_new_tokens=1, progress=False)
    with pytest.raises(PromptError, match=message):
        tiny.to_tokens(prompt, image=image)
    if prompt is not None:  # generate(image) alone asks for a prompt: tested below
        with pytest.raises(PromptError, match=message):
            tiny.generate(image, prompt, max_new_tokens=1)
        with pytest.raises(PromptError, match=message):
            tiny.run_with_cache(image, prompt)


def test_token_ids_still_run_and_empty_ones_are_refused(tiny, unchecked):
    tokens = tiny.to_tokens(PROMPT, image=RGB)
    assert tiny.generate(tokens, max_new_tokens=2).shape[1] > tokens.shape[1]  # tokens, as TL
    assert tiny.generate(torch.tensor([[1, 5, 6]]), max_new_tokens=1).shape == (1, 4)
    with pytest.raises(PromptError, match="generate\\(tokens\\)"):
        tiny.generate(RGB, tokens, max_new_tokens=1)
    with pytest.raises(PromptError, match=r"shape \(1, 0\) hold no tokens"):
        tiny.generate(torch.zeros(1, 0, dtype=torch.long), max_new_tokens=1)


def test_an_empty_prompt_is_allowed(tiny):
    """An image with no instruction is a real query (the template still makes tokens)."""
    assert tiny.prepare(RGB, "").text == "USER: <image>\n ASSISTANT:"
    assert tiny.trace(RGB, "", max_new_tokens=1, progress=False).n_steps == 1


# -- other arguments -------------------------------------------------------------------------------
def test_rivals_must_be_a_list_of_known_words_or_ids(tiny, unchecked):
    with pytest.raises(TokenError, match=r"rivals='dog' is one string; pass a list"):
        tiny.trace(RGB, PROMPT, max_new_tokens=1, rivals="dog")
    with pytest.raises(TokenError, match="'zebra' is not in the vocabulary.*<unk>"):
        tiny.trace(RGB, PROMPT, max_new_tokens=1, rivals=["zebra"])
    with pytest.raises(TokenError, match="Rival bool True"):
        tiny.trace(RGB, PROMPT, max_new_tokens=1, rivals=[True])
    with pytest.raises(TokenError, match="not a single token"):
        tiny.to_single_token("dog cat")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"top_k": 2.5}, "top_k=2.5 must be an integer"),
        ({"top_k": True}, "top_k=True must be an integer"),
        ({"max_new_tokens": True}, "max_new_tokens=True"),
    ],
)
def test_trace_settings_of_the_wrong_type(tiny, kwargs, message, unchecked):
    with pytest.raises(ConfigError, match=message):
        tiny.trace(RGB, PROMPT, **{"max_new_tokens": 1, **kwargs})


# -- devices and dtypes ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("device", "message"),
    [
        ("gpu", "device='gpu' is not a device torch knows"),
        ("", "device='' is not a device"),
        ("meta", "holds no weights"),
        ("mps", "device='mps', but this machine has no MPS"),
    ],
)
def test_devices_this_machine_does_not_have(checkpoints, device, message, monkeypatch, unchecked):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=message):
        mmlens.load(checkpoints["gqa"], device=device)


def test_cuda_devices_that_are_not_there(checkpoints, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="device='cuda', but this machine has no CUDA device"):
        mmlens.load(checkpoints["gqa"], device="cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigError, match=r"device='cuda:7', but this machine has 1 cuda .*cuda:0"):
        mmlens.load(checkpoints["gqa"], device="cuda:7")


@pytest.mark.parametrize(
    ("dtype", "message"),
    [
        ("fp16", "dtype='fp16' is not a torch dtype; use one of float32, bfloat16, float16"),
        ("auto", "dtype='auto' is not a torch dtype"),
        (torch.int8, "dtype=torch.int8: weights need a floating dtype"),
        ("int8", "dtype='int8': weights need a floating dtype"),
    ],
)
def test_dtypes_weights_cannot_take(checkpoints, dtype, message, unchecked):
    with pytest.raises(ConfigError, match=message):
        mmlens.load(checkpoints["gqa"], dtype=dtype)


def test_dtype_names_are_accepted(checkpoints):
    assert mmlens.load(checkpoints["gqa"], dtype="bfloat16").dtype == torch.bfloat16


@pytest.mark.parametrize("name", [None, 3, ""])
def test_checkpoint_names_that_are_not_names(name, unchecked):
    with pytest.raises(CheckpointNotFoundError, match=f"Checkpoint {name!r}: pass a shipped"):
        mmlens.load(name)


# -- damaged checkpoints ---------------------------------------------------------------------------
@pytest.fixture
def hf_copy(checkpoints, tmp_path):
    copy = tmp_path / "llava-hf"
    shutil.copytree(checkpoints["gqa"], copy)
    return copy


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[: len(data) // 2],  # a download cut short
        lambda data: b"garbage" * 100,
        lambda data: b"",
    ],
    ids=["truncated", "garbage", "empty"],
)
def test_damaged_safetensors_in_a_llava_hf_checkpoint(hf_copy, damage):
    weights = hf_copy / "model.safetensors"
    weights.write_bytes(damage(weights.read_bytes()))
    with pytest.raises(
        CheckpointNotFoundError, match=f"{re.escape(str(weights))} is damaged.*download"
    ):
        mmlens.load(hf_copy)


def test_sharded_index_naming_a_missing_shard(hf_copy):
    weights = load_file(hf_copy / "model.safetensors")
    (hf_copy / "model.safetensors").unlink()
    names = sorted(weights)
    first, second = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"
    save_file({n: weights[n] for n in names[:10]}, hf_copy / first, metadata={"format": "pt"})
    weight_map = {name: first if i < 10 else second for i, name in enumerate(names)}
    index = hf_copy / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    with pytest.raises(
        CheckpointNotFoundError, match=f"{re.escape(str(index))} names shards .*{second}"
    ):
        mmlens.load(hf_copy)
    index.write_text("{not json")
    with pytest.raises(CheckpointNotFoundError, match=f"{re.escape(str(index))} is damaged"):
        mmlens.load(hf_copy)


def test_damaged_safetensors_in_an_original_checkpoint(tmp_path_factory):
    from mmlens.zoo.tiny_original import build_tiny_original_llava

    folders = build_tiny_original_llava(tmp_path_factory.mktemp("original"))
    weights = folders.original / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointNotFoundError, match=f"{re.escape(str(weights))} is damaged"):
        mmlens.load(folders.original, vision_tower=folders.tower)


# -- saved traces ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def saved(tiny, tmp_path_factory):
    folder = tmp_path_factory.mktemp("trace") / "saved"
    return tiny.trace(RGB, PROMPT, max_new_tokens=2, rivals=["dog"], progress=False).save(folder)


@pytest.fixture
def trace_copy(saved, tmp_path):
    return shutil.copytree(saved, tmp_path / "copy")


def _edit_meta(folder, change):
    meta = json.loads((folder / "trace.json").read_text())
    change(meta)
    (folder / "trace.json").write_text(json.dumps(meta))


def _edit_arrays(folder, change):
    with np.load(folder / "arrays.npz") as npz:
        arrays = {name: npz[name] for name in npz.files}
    change(arrays)
    np.savez_compressed(folder / "arrays.npz", **arrays)


META_DAMAGE = [
    (lambda f: (f / "trace.json").write_text('{"prompt": "desc'), "trace.json is not valid JSON"),
    (lambda f: (f / "trace.json").write_bytes(b"\xff\xfe"), "trace.json is not valid JSON"),
    (lambda f: (f / "trace.json").write_text("[1, 2]"), "does not hold a JSON object"),
    (lambda f: _edit_meta(f, lambda m: m.pop("tokens")), r"wrong fields \(missing tokens\)"),
    (lambda f: _edit_meta(f, lambda m: m.update(extra=1)), r"wrong fields \(unknown extra\)"),
    (lambda f: _edit_meta(f, lambda m: m.update(tokens=5)), "tokens is int '5', not a list"),
    (lambda f: _edit_meta(f, lambda m: m.update(prompt=5)), "prompt is int '5', not a string"),
    (lambda f: _edit_meta(f, lambda m: m.update(image_span=[1])), "image_span is list"),
    (lambda f: _edit_meta(f, lambda m: m.update(settings=[])), "settings is list"),
    (lambda f: _edit_meta(f, lambda m: m.update(rival_ids="x")), "rival_ids is str"),
]
ARRAY_DAMAGE = [
    (lambda f: (f / "arrays.npz").write_bytes(b"garbage"), "not a .npz \\(zip\\) archive"),
    (
        lambda f: (f / "arrays.npz").write_bytes((f / "arrays.npz").read_bytes()[:200]),
        "arrays.npz is damaged",
    ),
    (lambda f: _edit_arrays(f, lambda a: a.pop("logprob")), r"wrong arrays \(missing logprob\)"),
    (
        lambda f: _edit_arrays(f, lambda a: a.update(topk_ids=a["topk_ids"][:, :1])),
        r"topk_ids has shape \(\d+, 1, 5\)",
    ),
    (
        lambda f: _edit_arrays(f, lambda a: a.update(logprob=a["logprob"].astype(str))),
        "logprob is <U",
    ),
    (
        lambda f: _edit_arrays(f, lambda a: a.update(token_ids=a["token_ids"][None])),
        r"token_ids is int64 with shape \(1, \d+\)",
    ),
]


@pytest.mark.parametrize(("damage", "message"), META_DAMAGE + ARRAY_DAMAGE)
def test_damaged_saved_traces(trace_copy, damage, message):
    damage(trace_copy)
    with pytest.raises(TraceFormatError, match=message) as raised:
        Trace.load(trace_copy)
    assert str(trace_copy) in str(raised.value) and "save it again" in str(raised.value)


def test_pickled_arrays_in_a_trace_are_refused(trace_copy):
    _edit_arrays(trace_copy, lambda a: a.update(topk_tokens=np.array([object()], dtype=object)))
    with pytest.raises(TraceFormatError, match="pickled object arrays"):
        Trace.load(trace_copy)


def test_saving_a_trace_over_a_file(saved, tmp_path):
    target = tmp_path / "taken"
    target.write_text("x")
    with pytest.raises(ConfigError, match=f"{re.escape(str(target))} is a file; give a folder"):
        Trace.load(saved).save(target)


def test_sampling_top_k_must_be_an_integer(unchecked):
    from mmlens.sampling import Sampler

    for bad in (2.5, True, 0):
        with pytest.raises(ConfigError, match=rf"top_k={bad!r}"):
            Sampler(top_k=bad)
