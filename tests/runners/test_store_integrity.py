"""The store never serves wrong bytes: every file is hashed when published and checked when
loaded; damage is an error naming the artifact and the command that removes it, and
``dimple-stats store`` lists, verifies, removes and garbage-collects."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from dimple_stats.cli import app
from dimple_stats.errors import RunFailure
from runners.store import ArtifactStore, DamagedArtifactError

runner = CliRunner()


def _publish(store: ArtifactStore, stage: str, n: int = 1000) -> object:
    key = store.key(stage, {"n": n})
    with store.writer(key) as w:
        w.save_tensors("weights.pt", {"w": torch.arange(n, dtype=torch.float32)})
        w.save_table("table.parquet", pd.DataFrame({"a": range(n)}))
        w.save_json("metrics.json", {"accuracy": 0.5})
    return key


def _flip(path: Path, offset: int = 200, count: int = 40) -> None:
    """Overwrite bytes in place, size unchanged (what a bad disk or a stray write does)."""
    data = bytearray(path.read_bytes())
    for i in range(offset, min(offset + count, len(data))):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "store", origin={"protocol": "demo", "seed": 2})


def test_the_record_holds_each_file_size_and_sha256(store: ArtifactStore) -> None:
    import hashlib

    key = _publish(store, "train_classifier")
    meta = store.meta(key)
    assert meta["format"] == 2 and meta["origin"] == {"protocol": "demo", "seed": 2}
    for name, record in meta["files"].items():
        data = (store.path(key) / name).read_bytes()
        assert record == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert store.verify(key) == []


@pytest.mark.parametrize(("name", "load"), [
    ("weights.pt", lambda s, k: s.load_tensors(k, "weights.pt")),
    ("table.parquet", lambda s, k: s.load_table(k, "table.parquet")),
    ("metrics.json", lambda s, k: s.load_json(k, "metrics.json")),
])
def test_flipped_bytes_are_refused_naming_the_artifact_and_the_fix(
        store: ArtifactStore, name: str, load) -> None:
    key = _publish(store, "train_classifier")
    path = store.path(key) / name
    _flip(path, offset=min(200, path.stat().st_size // 3), count=4)
    with pytest.raises(DamagedArtifactError) as info:
        load(store, key)
    message = str(info.value)
    assert str(key) in message and "SHA-256 differs" in message and name in message
    assert f"dimple-stats store rm {key}" in message
    assert isinstance(info.value, RunFailure)  # exit 1 from the command line, not a traceback


def test_truncated_and_deleted_files_are_refused(store: ArtifactStore) -> None:
    key = _publish(store, "measure")
    path = store.path(key) / "table.parquet"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DamagedArtifactError, match=r"table.parquet: 100 bytes, \d+ when published"):
        store.load_table(key, "table.parquet")
    (store.path(key) / "weights.pt").unlink()
    with pytest.raises(DamagedArtifactError, match="weights.pt: missing"):
        store.load_tensors(key, "weights.pt")


def test_an_unreadable_record_is_damage_not_a_traceback(store: ArtifactStore) -> None:
    key = _publish(store, "measure")
    (store.path(key) / "_meta.json").write_text("{not json")
    with pytest.raises(DamagedArtifactError, match="_meta.json unreadable"):
        store.load_json(key, "metrics.json")


def test_a_deleted_record_is_recomputed_in_place(store: ArtifactStore) -> None:
    """The artifact without _meta.json is unpublished: the stage reruns and its new copy
    replaces the leftover (it used to fail on every rerun with 'cannot publish')."""
    key = _publish(store, "train_autoencoder")
    (store.path(key) / "_meta.json").unlink()
    assert not store.has(key) and store.leftovers() == [store.path(key)]
    key = _publish(store, "train_autoencoder")
    assert store.has(key) and store.verify(key) == [] and store.leftovers() == []


def test_store_commands_list_verify_remove(store: ArtifactStore) -> None:
    a = _publish(store, "train_classifier")
    b = _publish(store, "measure", n=500)
    root = str(store.root)
    listed = runner.invoke(app, ["store", "ls", "--store", root])
    assert listed.exit_code == 0, listed.output
    assert f"{a}" in listed.output and "demo seed 2" in listed.output
    assert "2 artifact(s)" in listed.output
    as_json = json.loads(runner.invoke(app, ["store", "ls", "--store", root, "--json"]).output)
    assert [e["key"] for e in as_json] == sorted([str(a), str(b)])
    ok = runner.invoke(app, ["store", "verify", "--store", root])
    assert ok.exit_code == 0 and "all 2 artifact(s) intact" in ok.output
    _flip(store.path(b) / "weights.pt", count=4)
    bad = runner.invoke(app, ["store", "verify", "--store", root])
    assert bad.exit_code == 1 and f"damaged {b}: weights.pt" in bad.output
    removed = runner.invoke(app, ["store", "rm", "--damaged", "--store", root])
    assert removed.exit_code == 0 and f"removed {b}" in removed.output
    assert [str(k) for k in store.keys()] == [str(a)]
    gone = runner.invoke(app, ["store", "rm", str(b), "--store", root])
    assert gone.exit_code == 2 and "no artifact" in gone.output
    assert runner.invoke(app, ["store", "rm", str(a), "--store", root]).exit_code == 0
    assert list(store.keys()) == []


def test_gc_keeps_what_report_manifests_use(store: ArtifactStore, tmp_path: Path) -> None:
    used = _publish(store, "train_classifier")
    unused = _publish(store, "measure", n=300)
    root = str(store.root)
    reports = tmp_path / "reports"
    (reports / "old").mkdir(parents=True)
    (reports / "old" / "manifest.json").write_text(json.dumps({"seeds": [0]}))
    refused = runner.invoke(app, ["store", "gc", "--reports", str(reports), "--store", root])
    assert refused.exit_code == 2 and "refusing to empty the store" in refused.output
    (reports / "new").mkdir()
    (reports / "new" / "manifest.json").write_text(json.dumps({"artifacts": [str(used)]}))
    gc = ["store", "gc", "--reports", str(reports), "--store", root]
    # One report predates artifact lists: what it used cannot be told apart.
    unsure = runner.invoke(app, [*gc, "--min-age", "0"])
    assert unsure.exit_code == 2 and "pass --force" in unsure.output
    (reports / "old" / "manifest.json").unlink()
    fresh = runner.invoke(app, gc)  # default: spare what was published in the last 6 hours
    assert fresh.exit_code == 0 and "freed 0 B (0 artifact(s))" in fresh.output
    dry = runner.invoke(app, [*gc, "--min-age", "0", "--dry-run"])
    assert dry.exit_code == 0 and f"would remove {unused}" in dry.output
    assert len(list(store.keys())) == 2
    done = runner.invoke(app, [*gc, "--min-age", "0"])
    assert done.exit_code == 0 and f"removed {unused}" in done.output
    assert [str(k) for k in store.keys()] == [str(used)]


def test_replacing_a_leftover_never_discards_what_another_writer_published(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """B finds a record-less leftover in its way; right after B's look, A publishes the same key
    completely. B must keep A's artifact (equivalent content, same key), not move it aside."""
    a, b = ArtifactStore(tmp_path), ArtifactStore(tmp_path)
    key = a.key("measure", {"x": 1})
    leftover = a.path(key)
    leftover.mkdir(parents=True)
    (leftover / "junk").write_text("old")
    has = ArtifactStore.has
    interleaved = []

    def has_then_a_publishes(self: ArtifactStore, k: object) -> bool:
        found = has(self, k)
        if self is b and not interleaved:
            interleaved.append(True)
            with a.writer(key) as w:
                w.save_json("v.json", {"by": "A"})
            assert w.published
        return found

    monkeypatch.setattr(ArtifactStore, "has", has_then_a_publishes)
    with b.writer(key) as w:
        w.save_json("v.json", {"by": "B"})
    monkeypatch.undo()
    assert interleaved and w.published is False
    assert a.load_json(key, "v.json") == {"by": "A"} and a.verify(key) == []
    assert sorted(p.name for p in (tmp_path / "measure").iterdir()) == [key.digest]
