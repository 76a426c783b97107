"""The artifact store: content-addressed keys, atomic publication, crash and race safety, safe loading.

Every test works on real files under ``tmp_path``; the crash and race tests use real processes, because
atomicity claims are about what another process can observe.
"""

from __future__ import annotations

import json
import os
import pickle
import platform
import shlex
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from dimple_stats.atomic import write_bytes_atomic as atomic_write_bytes
from dimple_stats.atomic import write_text_atomic as atomic_write_text
from runners.store import (
    ArtifactError,
    ArtifactKey,
    ArtifactNotFoundError,
    ArtifactStore,
    UnsafeArtifactError,
    default_store_root,
)

REPO = Path(__file__).resolve().parents[2]
posix_only = pytest.mark.skipif(os.name != "posix", reason="needs POSIX signals and rename semantics")


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


def _script(tmp_path: Path, name: str, source: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    return path


def _wait_for(path: Path, proc: subprocess.Popen, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"child exited early ({proc.returncode}): {proc.stderr.read()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"child never created {path}")
        time.sleep(0.01)


def _entries(directory: Path) -> list[str]:
    return sorted(os.listdir(directory)) if directory.is_dir() else []


# ------------------------------------------------------------------------------------ keys
def test_key_is_stable_across_order_and_changes_with_every_value(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    data = store.key("dataset", {"name": "digits"})
    config = {"arch": "mlp", "epochs": 3, "opt": {"lr": 0.1, "momentum": 0.9}, "layers": [64, 32]}
    key = store.key("train_classifier", config, inputs=[data])

    reordered = {"layers": (64, 32), "opt": {"momentum": 0.9, "lr": 0.1}, "epochs": 3, "arch": "mlp"}
    assert store.key("train_classifier", reordered, inputs=[str(data)]) == key
    assert ArtifactStore(tmp_path / "elsewhere").key("train_classifier", config, inputs=[data]) == key

    changed = [
        store.key("train_classifier", {**config, "arch": "cnn"}, inputs=[data]),
        store.key("train_classifier", {**config, "epochs": 4}, inputs=[data]),
        store.key("train_classifier", {**config, "opt": {"lr": 0.01, "momentum": 0.9}}, inputs=[data]),
        store.key("train_classifier", {**config, "layers": [64, 33]}, inputs=[data]),
        store.key("train_classifier", {**config, "seed": 0}, inputs=[data]),
        store.key("train_classifier", config, inputs=[store.key("dataset", {"name": "mnist"})]),
        store.key("train_classifier", config, inputs=[]),
        store.key("train_autoencoder", config, inputs=[data]),
    ]
    assert len({k.digest for k in [key, *changed]}) == len(changed) + 1

    a, b = store.key("s", {"i": 1}), store.key("s", {"i": 2})
    assert store.key("m", {}, inputs=[a, b]) != store.key("m", {}, inputs=[b, a])  # position is a role
    assert store.key("m", {}, inputs={"clf": a, "ae": b}) == store.key("m", {}, inputs={"ae": b, "clf": a})
    assert str(key) == f"train_classifier/{key.digest}"
    assert store.path(key) == tmp_path / "train_classifier" / key.digest


def test_key_accepts_pydantic_models_and_rejects_bad_input(tmp_path: Path) -> None:
    pydantic = pytest.importorskip("pydantic")

    class Config(pydantic.BaseModel):
        arch: str
        epochs: int = 3

    store = ArtifactStore(tmp_path)
    assert store.key("t", Config(arch="mlp")) == store.key("t", {"epochs": 3, "arch": "mlp"})
    with pytest.raises(ValueError, match="stage name"):
        store.key("../escape", {})
    with pytest.raises(ValueError, match="stage"):
        store.key("t", {}, inputs=["not-a-key"])
    with pytest.raises(ValueError):
        store.key("t", {"loss": float("nan")})  # NaN has no canonical JSON spelling


def test_default_store_root_follows_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DIMPLE_STATS_STORE", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_store_root() == tmp_path / "explicit"
    monkeypatch.delenv("DIMPLE_STATS_STORE")
    assert default_store_root() == tmp_path / "xdg" / "dimple-stats" / "store"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_store_root() == tmp_path / "home" / ".cache" / "dimple-stats" / "store"


# ------------------------------------------------------------------------------ round trip
def test_round_trip_of_json_tensors_and_table(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    pd = pytest.importorskip("pandas")
    store = ArtifactStore(tmp_path)
    key = store.key("train_classifier", {"arch": "mlp"}, inputs=[ArtifactKey("dataset", "0123456789abcdef")])

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.BatchNorm1d(4))
    state = model.state_dict()
    big = torch.randn(1000, dtype=torch.float64)
    extra = {
        "with_nan": torch.tensor([1.0, float("nan"), -0.0, float("inf")]),
        "view": big[10:13],
        "ints": torch.arange(7, dtype=torch.int64),
        "half": torch.randn(3, 2).half(),
    }
    metrics = {"accuracy": 0.975, "loss": [0.5, 0.25], "epochs": 3, "note": "ünïcode"}
    table = pd.DataFrame(
        {"seed": [0, 0, 1], "sample": [3, 8, 3], "ratio": [0.1, float("nan"), 2.5], "ok": [True, False, True]}
    ).astype({"seed": "int32"})

    assert not store.has(key)
    with store.writer(key) as w:
        w.save_json("metrics.json", metrics)
        w.save_tensors("model.pt", state)
        w.save_tensors("extra.pt", extra)
        w.save_table("shards/seed0.parquet", table)
        (w.dir / "tool_output.txt").write_text("written by a tool")
        assert not store.has(key)  # nothing is visible before the block exits
    assert w.published is True
    assert store.has(key)

    assert store.load_json(key, "metrics.json") == metrics
    loaded = store.load_tensors(key, "model.pt")
    assert list(loaded) == list(state)
    assert loaded._metadata == state._metadata  # load_state_dict needs the module versions
    model.load_state_dict(loaded)
    for name, original in (("model.pt", state), ("extra.pt", extra)):
        back = store.load_tensors(key, name)
        for tensor_name, tensor in original.items():
            assert back[tensor_name].dtype == tensor.dtype and back[tensor_name].shape == tensor.shape
            assert back[tensor_name].numpy().tobytes() == tensor.contiguous().numpy().tobytes()
    # The view was saved without its 1000-element base storage.
    assert os.path.getsize(store.path(key) / "extra.pt") < 8 * 1000
    pd.testing.assert_frame_equal(store.load_table(key, "shards/seed0.parquet"), table)

    assert store.files(key) == [
        "extra.pt", "metrics.json", "model.pt", "shards/seed0.parquet", "tool_output.txt"
    ]
    meta = store.meta(key)
    assert (meta["stage"], meta["digest"], meta["key"]) == ("train_classifier", key.digest, str(key))
    assert meta["config"] == {"arch": "mlp"}
    assert meta["inputs"] == ["dataset/0123456789abcdef"]
    assert meta["versions"]["python"] == platform.python_version()
    assert torch.__version__.startswith(meta["versions"]["torch"].split("+")[0])
    assert meta["versions"]["dimple-stats"]
    assert meta["created"].endswith("+00:00")
    assert set(meta["files"]) == set(store.files(key))
    assert list(store.keys()) == [key] and list(store.keys("train_classifier")) == [key]
    assert list(store.keys("other_stage")) == []

    with pytest.raises(ArtifactNotFoundError, match="metrics.json"):
        store.load_json(key, "missing.json")
    with pytest.raises(ArtifactNotFoundError):
        store.load_json(store.key("train_classifier", {"arch": "cnn"}), "metrics.json")
    with pytest.raises(ArtifactError, match="closed"):
        w.save_json("late.json", {})

    assert store.remove(key) and not store.has(key) and not store.remove(key)
    assert _entries(tmp_path / "train_classifier") == []


def test_writer_rejects_unsafe_names_and_non_tensors(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    store = ArtifactStore(tmp_path)
    key = store.key("s", {})
    with pytest.raises(TypeError, match="tensors only"):
        with store.writer(key) as w:
            w.save_tensors("bad.pt", {"w": torch.zeros(2), "step": 3})
    for bad in ("../x.json", "/abs.json", "a//b.json", "_meta.json", ""):
        with pytest.raises(ValueError):
            with store.writer(key) as w:
                w.save_json(bad, {})
    with pytest.raises(ArtifactError, match="already written"):
        with store.writer(key) as w:
            w.save_json("a.json", {})
            w.save_json("a.json", {})
    assert not store.has(key) and _entries(tmp_path / "s") == []


# ---------------------------------------------------------------------------------- failure
def test_exception_inside_writer_leaves_no_trace(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    key = store.key("measure", {"seed": 0})
    with pytest.raises(RuntimeError, match="boom"):
        with store.writer(key) as w:
            w.save_bytes("part.bin", b"x" * 100_000)
            raise RuntimeError("boom")
    assert not store.has(key)
    assert not store.path(key).exists()
    assert _entries(tmp_path / "measure") == []  # the temp dir is gone too
    assert list(store.keys()) == []

    with store.writer(key) as w:  # and the key is still writable
        w.save_bytes("part.bin", b"ok")
    assert store.load_bytes(key, "part.bin") == b"ok"


@posix_only
def test_writer_killed_mid_write_leaves_key_absent_and_resumable(tmp_path: Path) -> None:
    root, ready = tmp_path / "store", tmp_path / "ready"
    child = _script(
        tmp_path,
        "killed_writer.py",
        """
        import os, sys, time
        from pathlib import Path
        from runners.store import ArtifactStore

        store = ArtifactStore(sys.argv[1])
        key = store.key("train_classifier", {"arch": "mlp", "epochs": 3})
        with store.writer(key) as w:
            w.save_bytes("part0.bin", os.urandom(4 << 20))
            Path(sys.argv[2]).touch()
            time.sleep(60)
            w.save_bytes("part1.bin", b"never written")
        """,
    )
    proc = subprocess.Popen(
        [sys.executable, str(child), str(root), str(ready)],
        env=_child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        _wait_for(ready, proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    store = ArtifactStore(root)
    key = store.key("train_classifier", {"epochs": 3, "arch": "mlp"})
    leftovers = _entries(root / "train_classifier")
    assert len(leftovers) == 1 and leftovers[0].startswith(f".tmp-{key.digest}-")  # same key in the child
    assert (root / "train_classifier" / leftovers[0] / "part0.bin").stat().st_size == 4 << 20
    assert not store.has(key) and not store.path(key).exists() and list(store.keys()) == []
    with pytest.raises(ArtifactNotFoundError):
        store.files(key)

    assert store.clean_stale() == []  # a fresh temp dir may belong to a live writer: kept by default
    with store.writer(key) as w:
        w.save_json("metrics.json", {"resumed": True})
    assert w.published and store.load_json(key, "metrics.json") == {"resumed": True}

    removed = store.clean_stale(older_than_s=0)
    assert [p.name for p in removed] == leftovers
    assert _entries(root / "train_classifier") == [key.digest]
    assert store.has(key) and list(store.keys()) == [key]


@posix_only
def test_concurrent_writers_of_one_key_publish_exactly_once(tmp_path: Path) -> None:
    root, sync, rounds = tmp_path / "store", tmp_path / "sync", 5
    sync.mkdir()
    child = _script(
        tmp_path,
        "racing_writer.py",
        """
        import json, sys, time
        from pathlib import Path
        from runners.store import ArtifactStore

        root, sync, me, other, rounds = sys.argv[1:6]
        store, sync = ArtifactStore(root), Path(sync)

        def barrier(tag):
            (sync / f"{tag}-{me}").touch()
            deadline = time.monotonic() + 30
            while not (sync / f"{tag}-{other}").exists():
                if time.monotonic() > deadline:
                    raise TimeoutError(tag)
                time.sleep(0.001)

        payload = bytes(range(256)) * 4096
        published = []
        for r in range(int(rounds)):
            key = store.key("race", {"round": r})
            barrier(f"start{r}")
            with store.writer(key) as w:
                w.save_bytes("payload.bin", payload)
                w.save_json("summary.json", {"round": r, "size": len(payload)})
                w.save_bytes("writer.txt", me.encode())
                barrier(f"publish{r}")  # both temp dirs are complete: the renames really race
            published.append(w.published)
        print(json.dumps(published))
        """,
    )
    procs = {
        me: subprocess.Popen(
            [sys.executable, str(child), str(root), str(sync), me, other, str(rounds)],
            env=_child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for me, other in (("a", "b"), ("b", "a"))
    }
    outcomes = {}
    for me, proc in procs.items():
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0 and err == "", err
        outcomes[me] = json.loads(out)

    store = ArtifactStore(root)
    for r in range(rounds):
        key = store.key("race", {"round": r})
        winners = [me for me in outcomes if outcomes[me][r]]
        assert len(winners) == 1, (r, outcomes)
        assert store.load_bytes(key, "writer.txt").decode() == winners[0]
        assert store.load_bytes(key, "payload.bin") == bytes(range(256)) * 4096
        assert store.load_json(key, "summary.json") == {"round": r, "size": 256 * 4096}
    # exactly one directory per key, and no temp dir of the loser left behind
    assert _entries(root / "race") == sorted(store.key("race", {"round": r}).digest for r in range(rounds))


# ------------------------------------------------------------------------------- safe load
class _RunsCode:
    """Pickles to a call that creates ``marker``: stands in for a malicious checkpoint."""

    def __init__(self, marker: Path, via: str) -> None:
        self.marker, self.via = str(marker), via

    def __reduce__(self):  # noqa: ANN204
        if self.via == "os.system":
            return (os.system, (f"touch {shlex.quote(self.marker)}",))
        return (exec, (f"open({self.marker!r}, 'w').close()",))


@posix_only
@pytest.mark.parametrize("via", ["os.system", "exec"])
@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_load_tensors_refuses_pickled_code(tmp_path: Path, via: str, writer: str) -> None:
    torch = pytest.importorskip("torch")
    import io

    control = tmp_path / "control-marker"
    pickle.loads(pickle.dumps(_RunsCode(control, via)))
    assert control.exists(), "the payload must really run code when unpickled, or this test proves nothing"

    marker = tmp_path / "marker"
    buffer = io.BytesIO()
    if writer == "torch.save":
        torch.save({"weight": torch.zeros(3), "evil": _RunsCode(marker, via)}, buffer)
    else:
        pickle.dump(_RunsCode(marker, via), buffer, protocol=2)
    store = ArtifactStore(tmp_path / "store")
    key = store.key("train_classifier", {"downloaded": True})
    with store.writer(key) as w:
        w.save_bytes("model.pt", buffer.getvalue())

    with pytest.raises(UnsafeArtifactError, match="arbitrary code"):
        store.load_tensors(key, "model.pt")
    assert not marker.exists()


def test_load_tensors_refuses_safe_non_tensor_content(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    store = ArtifactStore(tmp_path)
    key = store.key("s", {})
    with store.writer(key) as w:
        torch.save([1, 2, 3], w.dir / "list.pt")
        torch.save({"w": torch.zeros(1), "step": 3}, w.dir / "mixed.pt")
    for name in ("list.pt", "mixed.pt"):
        with pytest.raises(ArtifactError, match="mapping of names to tensors"):
            store.load_tensors(key, name)


# ----------------------------------------------------------------------------- single files
def test_atomic_write_text_replaces_and_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "reports" / "results.md"
    atomic_write_text(target, "old\n")
    atomic_write_text(target, "new — ünïcode\n")
    assert target.read_text(encoding="utf-8") == "new — ünïcode\n"
    assert target.read_bytes() == "new — ünïcode\n".encode()
    assert _entries(target.parent) == ["results.md"]


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_atomic_write_failure_keeps_old_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    target = tmp_path / "results.csv"
    atomic_write_text(target, "a,b\n1,2\n")

    def fail(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, failing, fail)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(target, "a,b\n3,4\n" * 1000)
    monkeypatch.undo()
    assert target.read_text() == "a,b\n1,2\n"
    assert _entries(tmp_path) == ["results.csv"]


def test_atomic_write_readers_never_see_a_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "results.csv"
    versions = (b"A" * 300_000, b"B" * 600_000)
    atomic_write_bytes(target, versions[0])
    seen, errors, done = set(), [], threading.Event()

    def read_continuously() -> None:
        while not done.is_set():
            try:
                data = target.read_bytes()
            except OSError as exc:  # the target must never be missing either
                errors.append(exc)
                return
            if data not in versions:
                errors.append(len(data))
                return
            seen.add(data[:1])

    reader = threading.Thread(target=read_continuously)
    reader.start()
    try:
        for i in range(60):
            atomic_write_bytes(target, versions[i % 2])
    finally:
        done.set()
        reader.join()
    assert errors == []
    assert seen <= {b"A", b"B"}
    assert _entries(tmp_path) == ["results.csv"]


# ------------------------------------------------------------------------------ dependencies
def test_store_module_imports_without_torch() -> None:
    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['pandas'] = None\n"
        "import tempfile, runners.store as s\n"
        "st = s.ArtifactStore(tempfile.mkdtemp()); k = st.key('t', {'a': 1})\n"
        "with st.writer(k) as w: w.save_json('m.json', {'x': 1})\n"
        "assert st.load_json(k, 'm.json') == {'x': 1}\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=_child_env(), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
