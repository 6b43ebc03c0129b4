"""`--device-map`, `--max-memory` and `--offload-folder` on the command line: a run on the
shipped model with blocks offloaded to disk writes what the whole model writes."""

import json

import numpy as np
import pandas as pd
from PIL import Image

import mmlens.loading
from mmlens.cli import main

SHAPES_MAP = {
    "model.vision_tower": "cpu",
    "model.multi_modal_projector": "cpu",
    "model.language_model.embed_tokens": "cpu",
    "model.language_model.norm": "cpu",
    "model.language_model.rotary_emb": "cpu",
    **{f"model.language_model.layers.{b}": "disk" if b % 2 else "cpu" for b in range(8)},
    "lm_head": "disk",
}


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_a_run_with_offloaded_blocks_writes_what_the_whole_model_writes(
    tmp_path, capsys, monkeypatch
):
    loaded = []
    load = mmlens.loading.load
    monkeypatch.setattr(
        mmlens.loading, "load", lambda *a, **k: loaded.append(load(*a, **k)) or loaded[-1]
    )
    placement = tmp_path / "map.json"
    placement.write_text(json.dumps(SHAPES_MAP))
    run = ["run", "shapes", "--limit", "4", "--max-new-tokens", "3", "--quiet"]
    assert main([*run, "--out", str(tmp_path / "whole")]) == 0
    spread = ["--device-map", str(placement), "--offload-folder", str(tmp_path / "offload")]
    assert main([*run, "--out", str(tmp_path / "spread"), *spread]) == 0
    spread_model = loaded[-1].adapter.hf_model
    assert spread_model.hf_device_map["model.language_model.layers.1"] == "disk"
    assert spread_model.lm_head.weight.device.type == "meta"  # loaded from disk at each call
    whole = pd.read_parquet(tmp_path / "whole" / "tokens.parquet")
    mine = pd.read_parquet(tmp_path / "spread" / "tokens.parquet")
    assert mine.token_id.tolist() == whole.token_id.tolist()
    assert mine.layer.tolist() == whole.layer.tolist() and len(mine) > 0
    for column in ("logprob", "jsd", "entropy"):
        np.testing.assert_allclose(mine[column], whole[column], atol=1e-5, err_msg=column)


def test_device_map_options_refused_with_one_line(tmp_path, capsys, monkeypatch):
    picture = tmp_path / "scene.png"
    Image.fromarray(np.zeros((20, 30, 3), dtype=np.uint8)).save(picture)
    image = ["trace", str(picture), "--out", str(tmp_path / "t")]
    assert main([*image, "--device-map", "auto", "--device", "cuda"]) == 2
    assert "--device cuda and --device-map auto: pass one" in _error(capsys)
    assert main([*image, "--device-map", "auto", "--max-memory", "cpu:20GB"]) == 2
    assert "--max-memory 'cpu:20GB': write DEVICE=SIZE pairs" in _error(capsys)
    assert main([*image, "--device-map", str(tmp_path / "none.json")]) == 2
    assert "none.json: cannot read it" in _error(capsys)
    assert main([*image, "--offload-folder", str(tmp_path)]) == 2
    assert "--max-memory and --offload-folder go with --device-map" in _error(capsys)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    run = ["run", "shapes", "--out", str(tmp_path / "r"), "--device-map", "auto"]
    assert main(run) == 2
    assert "--device-map with 2 processes" in _error(capsys)
    assert not (tmp_path / "r").exists()
