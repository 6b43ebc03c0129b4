"""Probe tasks from an activation store: features [sample, layer, d], labels, and image groups.

`layer_probes` (analyses.probes) wants one vector per sample and layer; a store holds one hook
per layer. These read the residual stream's hooks of a store at one position kind with one
vector per item (`image_mean`, `last`) and pair them with labels from the benchmark
(`benchmarks.labels`), grouped by image so that folds never split one image; or, at the
`generated` positions, object words with the link's hallucination judgement.
"""

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from jaxtyping import Float

from mmlens.analyses.hallucination import ObjectVocabulary
from mmlens.analyses.judges import Judge, VocabularyJudge
from mmlens.benchmarks.labels import object_labels
from mmlens.errors import ConfigError
from mmlens.runs.activation_store import ActivationStore
from mmlens.runs.activations import hook_layer
from mmlens.words import word_spans

RESIDUAL = re.compile(r"blocks\.(\d+)\.(hook_resid_pre|hook_in|hook_resid_post|hook_out)")


def residual_layer(hook: str) -> int:
    """The layer a residual hook holds, numbered as HF `hidden_states` (0 = embeddings):
    `blocks.b.hook_resid_pre` is layer b, `blocks.b.hook_resid_post` layer b + 1."""
    if not RESIDUAL.fullmatch(hook):
        raise ConfigError(f"{hook!r} is not a residual-stream hook (blocks.b.hook_resid_post...).")
    return hook_layer(hook)


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
    (features, (ids, within)), layers = vectors_by_layer(store, kind, hooks)
    if (within != 0).any():
        raise ConfigError(
            f"{kind!r} holds several vectors per item; probe one per item (image_mean, last)."
        )
    return features, layers, ids


def vectors_by_layer(
    store: ActivationStore, kind: str, hooks: Sequence[str] | None = None
) -> tuple[tuple[Float[np.ndarray, "vector layer d"], tuple[np.ndarray, np.ndarray]], list[int]]:
    """Every vector of `kind` stacked by residual layer: ((features, (item id, index within
    the item) of each vector), layers)."""
    names = {h for h in store.index.hook if RESIDUAL.fullmatch(h)} if hooks is None else hooks
    found = sorted(set(names), key=residual_layer)
    if not found:
        raise ConfigError(f"{store.folder} holds no residual-stream hook to probe.")
    arrays, keys = [], None
    for hook in found:
        values, table = store.vectors(hook, kind)
        mine = (table.id.to_numpy(), table.within.to_numpy())
        if keys is not None and not (
            np.array_equal(keys[0], mine[0]) and np.array_equal(keys[1], mine[1])
        ):
            raise ConfigError(f"{hook} was stored for other items than the other hooks.")
        keys = mine
        arrays.append(values)
    assert keys is not None
    return (np.stack(arrays, axis=1), keys), [residual_layer(h) for h in found]


def object_presence_task(
    store: ActivationStore, object_name: str, kind: str, hooks: Sequence[str] | None = None
) -> ProbeTask:
    """'Is `object_name` in the image?' over every item whose image says (its caption truth,
    known-absent list or a yes-no question about it), from the residual stream at `kind`. A
    benchmark whose truth lists attributes beside objects (the priors benchmark's colours) gives
    'is it red?' the same way."""
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


def hallucination_task(
    store: ActivationStore, judge: ObjectVocabulary | Judge, hooks: Sequence[str] | None = None
) -> ProbeTask:
    """'Was this object word hallucinated?' at the word's first generated token (the store's
    `generated` positions), for every object word `judge` finds in a caption (as `mmlens link`
    finds them: `analyses.link.object_mentions`). A caption's last token is never read back by
    the model, so a word starting there has no vector and is left out."""
    if isinstance(judge, ObjectVocabulary):
        judge = VocabularyJudge(judge)
    (features, keys), layers = vectors_by_layer(store, "generated", hooks)
    rows = store.rows(store.index.hook.iloc[0], "generated").set_index("id")
    where = {key: index for index, key in enumerate(zip(*keys, strict=True))}
    chosen, labels, groups, ids = [], [], [], []
    captions = store.items[(store.items.task == "generative") & (store.items.status == "ok")]
    for item in captions.itertuples():
        if item.id not in rows.index:
            continue
        spans = word_spans(list(rows.loc[item.id, "generated_tokens"]))
        words = [word for _, _, word in spans]
        for index, _, hallucinated in judge(item.id, item.output, json.loads(item.truth), words):
            key = (item.id, spans[index][0])
            if key in where:
                chosen.append(where[key])
                labels.append(hallucinated)
                groups.append(item.image)
                ids.append(item.id)
    if not chosen:
        raise ConfigError(f"{store.folder}: no object word the judge found has a stored vector.")
    return ProbeTask(
        features=features[chosen],
        labels=np.asarray(labels, dtype=bool),
        groups=np.asarray(groups),
        layers=layers,
        ids=np.asarray(ids),
    )
