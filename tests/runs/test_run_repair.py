"""Run folders left by crashes or by two runs at once are repaired, not abandoned: items written
twice under the same settings are kept once (the first copy), half-written files are removed, and
copies from other settings stay an error. Small hand-made parts, no model."""

import json
import shutil

import pandas as pd
import pytest

from mmlens.errors import ConfigError
from mmlens.runs import RunStore
from mmlens.runs.parts import RECORD
from mmlens.runs.repair import repair_duplicates, tidy_run_folder

IDENTITY = {"benchmark": "shapes", "max_new_tokens": 4}


def _tables(ids, output="a red square"):
    items = pd.DataFrame(
        {
            "order": ids,
            "id": ids,
            "output": [output] * len(ids),
            "n_tokens": [2] * len(ids),
            "status": ["ok"] * len(ids),
        }
    )
    tokens = pd.DataFrame(
        {
            "order": [i for i in ids for _ in range(2)],
            "id": [i for i in ids for _ in range(2)],
            "step": [0, 1] * len(ids),
            "layer": [0, 0] * len(ids),
            "logprob": [-0.5, -0.25] * len(ids),
        }
    )
    return items, tokens


def _store(folder, ids_per_part, identity=IDENTITY):
    store = RunStore.open(folder, identity)
    for ids in ids_per_part:
        store.write_part(*_tables(ids))
    return store


def test_a_copied_part_is_dropped_and_the_merge_holds_each_item_once(tmp_path):
    store = _store(tmp_path / "run", [[0, 1], [2, 3], [4]])
    clean_items, clean_tokens = store.merge()
    shutil.copytree(store.parts[1], store.out / "parts" / "000-000003")  # as two runs at once left
    with pytest.warns(RuntimeWarning, match=r"2 item\(s\) \[2, 3\] were written twice"):
        items, tokens = store.merge()
    pd.testing.assert_frame_equal(items, clean_items)
    pd.testing.assert_frame_equal(tokens, clean_tokens)
    assert [p.name for p in store.parts] == ["000-000000", "000-000001", "000-000002"]
    assert repair_duplicates(store.out) is None  # nothing left to repair


def test_a_part_with_some_items_of_its_own_is_trimmed(tmp_path):
    store = _store(tmp_path / "run", [[0, 1, 2], [2, 3]])  # item 2 in both, item 3 only later
    line = repair_duplicates(store.out)
    assert "item(s) [2] were written twice" in line and "trimmed 1" in line
    items, tokens = store.merge()
    assert list(items.id) == [0, 1, 2, 3] and list(tokens.id) == [0, 0, 1, 1, 2, 2, 3, 3]
    last = pd.read_parquet(store.parts[-1] / "items.parquet")
    assert list(last.id) == [3]
    assert json.loads((store.parts[-1] / RECORD).read_text())["run"]["max_new_tokens"] == 4


def test_copies_from_other_settings_stay_an_error(tmp_path):
    store = _store(tmp_path / "run", [[0, 1]])
    other = RunStore(store.out, 0, {"format": 1, **IDENTITY, "max_new_tokens": 8})
    other.write_part(*_tables([1, 2]))  # as an unlocked run with other settings could have
    with pytest.raises(ConfigError, match=r"max_new_tokens: 4 in 000-000000, 8 in 000-000001"):
        repair_duplicates(store.out)
    assert len(store.parts) == 2  # nothing was removed


def test_old_parts_without_a_record_must_agree(tmp_path):
    store = _store(tmp_path / "run", [[0, 1], [1, 2]])
    for part in store.parts:
        (part / RECORD).unlink()  # parts written before part.json existed
    assert "[1] were written twice" in repair_duplicates(store.out)

    store = _store(tmp_path / "mixed", [[0, 1]])
    store.write_part(*_tables([1, 2], output="a blue circle"))
    for part in store.parts:
        (part / RECORD).unlink()
    with pytest.raises(ConfigError, match="item 1 was written twice with other results"):
        repair_duplicates(store.out)


def test_half_written_files_of_any_rank_are_removed(tmp_path):
    store = _store(tmp_path / "run", [[0, 1]])
    skip = _store(store.out / "skips" / "late", [[0]], {**IDENTITY, "skip_layers": [6, 7]})
    stale = [
        store.out / "parts" / ".partial-000-dead",
        store.out / "parts" / ".partial-003-beef",  # a rank of a larger launch
        skip.out / "parts" / ".partial-001-cafe",
    ]
    for folder in stale:
        folder.mkdir()
        (folder / "items.parquet").write_bytes(b"half")
    (store.out / ".items.parquet.partial").write_bytes(b"half")
    lines = tidy_run_folder(store.out)
    assert lines == [
        f"removed 3 half-written file(s) a stopped run left in {store.out}",
        f"removed 1 half-written file(s) a stopped run left in {skip.out}",
    ]
    assert not any(path.exists() for path in stale)
    assert not (store.out / ".items.parquet.partial").exists()
    assert len(store.parts) == 1 and len(skip.parts) == 1
