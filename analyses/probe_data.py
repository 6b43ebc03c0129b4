"""Probe tasks from an activation store: features [sample, layer, d], labels, and image groups.

`layer_probes` (analyses.probes) wants one vector per sample and layer; a store holds one hook
per layer. These read the residual stream's hooks of a store at one position kind with one
vector per item (`image_mean`, `last`) and pair them with labels from the benchmark
(`benchmarks.labels`), grouped by image so that folds never split one image.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from jaxtyping import Float

from mmlens.benchmarks.labels import object_labels
from mmlens.errors import ConfigError
from mmlens.runs.activation_store import ActivationStore

RESIDUAL = re.compile(r"blocks\.(\d+)\.(hook_resid_pre|hook_in|hook_resid_post|hook_out)")


def residual_layer(hook: str) -> int:
    """The layer a residual hook holds, numbered as HF `hidden_states` (0 = embeddings):
    `blocks.b.hook_resid_pre` is layer b, `blocks.b.hook_resid_post` layer b + 1."""
    found = RESIDUAL.fullmatch(hook)
    if not found:
        raise ConfigError(f"{hook!r} is not a residual-stream hook (blocks.b.hook_resid_post...).")
    block = int(found[1])
    return block if found[2] in ("hook_resid_pre", "hook_in") else block + 1


@dataclass(frozen=True)
class ProbeTask:
    """What `layer_probes` takes: features, binary labels, the image of each sample, layers."""

    features: Float[np.ndarray, "sample layer d"]
    labels: np.ndarray
    groups: np.ndarray
    layers: list[int]
    ids: np.ndarray  # the item of each sample


def residual_features(
    store: ActivationStore, kind: str, hooks: Sequence[str] | None = None
) -> tuple[Float[np.ndarray, "item layer d"], list[int], np.ndarray]:
    """Every stored residual hook (or `hooks`) at `kind`, one vector per item, stacked by
    layer: (features [item, layer, d], layers, item ids)."""
    found = sorted(
        {h for h in store.index.hook if RESIDUAL.fullmatch(h)} if hooks is None else set(hooks),
        key=residual_layer,
    )
    if not found:
        raise ConfigError(f"{store.folder} holds no residual-stream hook to probe.")
    arrays, ids = [], None
    for hook in found:
        values, table = store.vectors(hook, kind)
        if table.duplicated("id").any():
            raise ConfigError(
                f"{kind!r} holds several vectors per item; probe one per item (image_mean, last)."
            )
        if ids is not None and not np.array_equal(ids, table.id.to_numpy()):
            raise ConfigError(f"{hook} was stored for other items than the other hooks.")
        ids = table.id.to_numpy()
        arrays.append(values)
    assert ids is not None
    return np.stack(arrays, axis=1), [residual_layer(h) for h in found], ids


def object_presence_task(
    store: ActivationStore, object_name: str, kind: str, hooks: Sequence[str] | None = None
) -> ProbeTask:
    """'Is `object_name` in the image?' over every item whose image says (its caption truth,
    known-absent list or a yes-no question about it), from the residual stream at `kind`."""
    features, layers, ids = residual_features(store, kind, hooks)
    labels = object_labels(store.items)
    labels = labels[labels.object == object_name.lower()].set_index("id")
    if labels.empty:
        named = sorted(object_labels(store.items).object.unique())[:10]
        raise ConfigError(f"no item says whether {object_name!r} is present; known: {named}.")
    keep = np.isin(ids, labels.index.to_numpy())
    chosen = pd.Index(ids[keep])
    return ProbeTask(
        features=features[keep],
        labels=labels.loc[chosen, "present"].to_numpy(dtype=bool),
        groups=labels.loc[chosen, "image"].to_numpy(),
        layers=layers,
        ids=ids[keep],
    )
