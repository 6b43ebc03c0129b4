"""A saved Trace's two files read and checked: `trace.json` (metadata) and `arrays.npz` (numpy
arrays, no pickle). Anything damaged, missing or of the wrong type or shape is one
`TraceFormatError` naming the file and the fix, never a JSON, zip or TypeError traceback."""

import json
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from mmlens.errors import TraceFormatError

FORMAT_VERSION = 1
_FIX = "trace and save it again (model.trace(...).save(folder))"

# trace.json: field -> the kind of value it holds. image_span and settings may be absent.
_META = {
    "prompt": "string",
    "prompt_text": "string",
    "prompt_ids": "integers",
    "text": "string",
    "tokens": "strings",
    "rival_words": "strings",
    "rival_ids": "integers",
    "image_span": "span",
    "settings": "object",
}
_OPTIONAL_META = ("image_span", "settings")

# arrays.npz: name -> (dtype kinds, number of dimensions); _OPTIONAL_ARRAYS may be absent.
_ARRAYS: dict[str, tuple[str, int]] = {
    "token_ids": ("iu", 1),
    "layers": ("iu", 1),
    "logprob": ("f", 2),
    "entropy": ("f", 2),
    "jsd": ("f", 2),
    "topk_ids": ("iu", 3),
    "topk_probs": ("f", 3),
    "topk_tokens": ("U", 3),
    "rival_logprobs": ("f", 3),
    "rank": ("iu", 2),
    "top1_logprobs": ("f", 3),
    "features": ("f", 3),
    "paper_jsd": ("f", 2),
    "image_attention": ("f", 3),
    "region_attention": ("f", 4),
    "final_jsd": ("f", 2),
    "candidate_prob": ("f", 2),
}
_OPTIONAL_ARRAYS = (
    "features",
    "paper_jsd",
    "image_attention",
    "region_attention",
    "final_jsd",
    "candidate_prob",
)
ARRAY_NAMES = tuple(_ARRAYS)  # what a Trace holds as numpy arrays
_KINDS = {"iu": "integers", "f": "floats", "U": "strings"}


def _holds(value: Any, kind: str) -> bool:
    """Whether a trace.json value is of `kind` (a value of `_META`)."""
    if kind == "string":
        return isinstance(value, str)
    if kind == "object":
        return isinstance(value, dict)
    if kind == "span":
        return value is None or (_holds(value, "integers") and len(value) == 2)
    item = str if kind == "strings" else int
    return isinstance(value, list) and all(
        isinstance(v, item) and not isinstance(v, bool) for v in value
    )


_EXPECTED = {
    "string": "a string",
    "object": "an object",
    "span": "null or [start, end]",
    "strings": "a list of strings",
    "integers": "a list of integers",
}


def read_trace_files(directory: Path) -> dict[str, Any]:
    """The keyword arguments of `Trace` from a saved trace's folder, checked."""
    meta_file, array_file = directory / "trace.json", directory / "arrays.npz"
    if not meta_file.is_file() or not array_file.is_file():
        raise TraceFormatError(f"{directory} is not a saved Trace (needs trace.json, arrays.npz).")
    meta = _read_meta(meta_file)
    arrays = _read_arrays(array_file)
    steps, layers = len(arrays["token_ids"]), len(arrays["layers"])
    topk = arrays["topk_ids"].shape
    for name in ("topk_ids", "topk_probs", "topk_tokens"):
        shape = arrays[name].shape
        if shape[:2] != (steps, layers) or shape != topk:
            raise TraceFormatError(
                f"{array_file}: {name} has shape {shape}; expected ({steps} steps, {layers} "
                f"layers, k) and topk_ids, topk_probs and topk_tokens alike; {_FIX}."
            )
    if len(meta["tokens"]) != steps:
        raise TraceFormatError(
            f"{meta_file} has {len(meta['tokens'])} tokens for {steps} generated ids in "
            f"{array_file.name}; the files do not belong together: {_FIX}."
        )
    return {**meta, **arrays}


def _read_meta(meta_file: Path) -> dict[str, Any]:
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise TraceFormatError(f"{meta_file} is not valid JSON ({error}); {_FIX}.") from error
    except OSError as error:
        raise TraceFormatError(f"{meta_file} could not be read ({error}).") from error
    if not isinstance(meta, dict):
        raise TraceFormatError(f"{meta_file} does not hold a JSON object; {_FIX}.")
    version = meta.pop("format_version", None)
    if version != FORMAT_VERSION:
        raise TraceFormatError(
            f"{meta_file.parent} has trace format {version}; expected {FORMAT_VERSION}."
        )
    unknown = sorted(set(meta) - set(_META))
    missing = sorted(set(_META) - set(meta) - set(_OPTIONAL_META))
    if unknown or missing:
        detail = ", ".join([f"missing {n}" for n in missing] + [f"unknown {n}" for n in unknown])
        raise TraceFormatError(f"{meta_file} has the wrong fields ({detail}); {_FIX}.")
    for name, value in meta.items():
        if not _holds(value, _META[name]):
            raise TraceFormatError(
                f"{meta_file}: {name} is {type(value).__name__} {str(value)[:40]!r}, not "
                f"{_EXPECTED[_META[name]]}; {_FIX}."
            )
    if meta.get("image_span") is not None:
        meta["image_span"] = tuple(meta["image_span"])
    return meta


def _read_arrays(array_file: Path) -> dict[str, np.ndarray]:
    if not zipfile.is_zipfile(array_file):
        raise TraceFormatError(f"{array_file} is damaged: it is not a .npz (zip) archive; {_FIX}.")
    try:
        with np.load(array_file, allow_pickle=False) as npz:
            names = set(npz.files)
            loaded = {name: npz[name] for name in names & set(_ARRAYS)}
    except ValueError as error:
        if "pickle" not in str(error):
            raise TraceFormatError(f"{array_file} is damaged ({error}); {_FIX}.") from error
        raise TraceFormatError(
            f"{array_file} holds pickled object arrays, which mmlens never loads; {_FIX}."
        ) from error
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, KeyError) as error:
        raise TraceFormatError(f"{array_file} is damaged ({error}); {_FIX}.") from error
    unknown = sorted(names - set(_ARRAYS))
    missing = sorted(set(_ARRAYS) - names - set(_OPTIONAL_ARRAYS))
    if unknown or missing:
        detail = ", ".join([f"missing {n}" for n in missing] + [f"unknown {n}" for n in unknown])
        raise TraceFormatError(f"{array_file} has the wrong arrays ({detail}); {_FIX}.")
    for name, array in loaded.items():
        kinds, ndim = _ARRAYS[name]
        if (array.size and array.dtype.kind not in kinds) or array.ndim != ndim:
            raise TraceFormatError(
                f"{array_file}: {name} is {array.dtype} with shape {array.shape}; expected "
                f"{_KINDS[kinds]} in {ndim} dimension(s); {_FIX}."
            )
    return loaded
