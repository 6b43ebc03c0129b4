"""Nothing is pip-installed or downloaded at run time."""

import shutil
import subprocess

import pytest

import mmlens
from mmlens.errors import CheckpointNotFoundError


def test_transformer_lens_cannot_pip_install(monkeypatch):
    from transformer_lens.model_bridge.sources.transformers import helpers

    calls = []
    monkeypatch.setattr(subprocess, "check_call", lambda *a, **k: calls.append(a))
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: calls.append(a))
    monkeypatch.setitem(__import__("sys").modules, "torchvision", None)  # as if not installed
    assert helpers._ensure_torchvision() is False
    assert calls == []


def test_broken_processor_fails_cleanly_without_installing(checkpoints, tmp_path, monkeypatch):
    broken = tmp_path / "broken"
    shutil.copytree(checkpoints["gqa"], broken)
    (broken / "processor_config.json").write_text("{ not json")
    calls = []
    monkeypatch.setattr(subprocess, "check_call", lambda *a, **k: calls.append(a))
    with pytest.raises(CheckpointNotFoundError, match="processor"):
        mmlens.load(broken)
    assert calls == []


def test_weights_must_be_safetensors(checkpoints, tmp_path):
    copy = tmp_path / "no_weights"
    shutil.copytree(checkpoints["gqa"], copy, ignore=shutil.ignore_patterns("*.safetensors"))
    with pytest.raises(CheckpointNotFoundError, match="safetensors"):
        mmlens.load(copy)
