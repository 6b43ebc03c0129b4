"""Adapters are found from the checkpoint's config; third parties register entry points."""

from mmlens.adapters import LlavaAdapter
from mmlens.registry import (
    ENTRY_POINT_GROUP,
    adapter_for,
    registered_adapters,
    supported_architectures,
)


def test_llava_checkpoint_selects_llava_adapter(checkpoints):
    assert adapter_for(checkpoints["gqa"]) is LlavaAdapter
    assert "LlavaForConditionalGeneration" in supported_architectures()


def test_entry_point_adapters_are_registered(monkeypatch):
    import mmlens.registry as registry

    class FakeAdapter(LlavaAdapter):
        architectures = ("FakeVLM",)

    class Entry:
        def load(self):
            return FakeAdapter

    monkeypatch.setattr(
        registry, "entry_points", lambda group: [Entry()] if group == ENTRY_POINT_GROUP else []
    )
    assert FakeAdapter in registered_adapters()
    assert "FakeVLM" in supported_architectures()
