"""Faults a hostile or unlucky user meets, each through the real command line in a subprocess:
the exit code, a one-line message that says what to do, no traceback, and nothing stored
before the fault lost.

Exit codes: 2 for input the tool cannot use (checked before any compute), 1 for a run that
cannot reach a trustworthy result (a damaged store, a model that outputs NaN, nothing to
attack).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

TINY = """\
name: tiny
dataset: {name: digits, eval_samples: 12, pixel_range: [-1, 1]}
classifier: {arch: mlp, hidden: [32], epochs: 2}
autoencoders:
  plain: {arch: mlp, latent_dim: 6, hidden: [64], epochs: 10}
attack:
  eps: {plain: 4, on: 8, off: 8}
  step: {plain: 0.2, on: 0.4, off: 0.4}
  steps: {plain: 20, on: 20, off: 20}
tangent: {method: dense, dtype: float64}
defense: {threat: off_manifold, steps: 10}
claims:
  - dmm.perpendicular: {null: random_subspace}
  - iso.defense: {eps: [0.5]}
seeds: [0]
report: {formats: [csv], figures: false}
"""


def cli(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``dimple-stats ARGS`` in a fresh interpreter (stdin not a TTY, as in CI or nohup)."""
    return subprocess.run([sys.executable, "-m", "dimple_stats", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=600,
                          stdin=subprocess.DEVNULL)


def one_line_error(result: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    """The run's ``error``/message line, after checking the exit code and that no traceback
    was printed."""
    text = result.stdout + result.stderr
    assert result.returncode == code, text
    assert "Traceback" not in text, text
    lines = [ln for ln in result.stderr.splitlines()  # less the protocol's warnings and
             if ln.strip() and not ln.startswith("warning:")  # the progress log
             and not re.match(r"\[\d\d:\d\d:\d\d\] ", ln)]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def stored(store: Path) -> dict[str, set[str]]:
    """``{stage: {digest, ...}}`` of the published artifacts."""
    return {stage.name: {d.name for d in stage.iterdir() if (d / "_meta.json").is_file()}
            for stage in store.iterdir() if stage.is_dir()}


def flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 16):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny run: protocol, store and report in one folder (copied per test)."""
    work = tmp_path_factory.mktemp("first")
    (work / "tiny.yaml").write_text(TINY)
    result = cli("run", "tiny.yaml", "--store", "store", "--out", "report", cwd=work)
    assert result.returncode == 0, result.stdout + result.stderr
    (work / "stderr.txt").write_text(result.stderr)
    return work


@pytest.fixture
def work(first_run: Path, tmp_path: Path) -> Path:
    shutil.copytree(first_run, tmp_path / "w")
    return tmp_path / "w"


def test_a_run_without_a_terminal_logs_every_stage(first_run: Path) -> None:
    """No TTY (CI, nohup): a line per stage, with times; no third-party warnings."""
    log = (first_run / "stderr.txt").read_text()
    for line in ["seed 0: digits, 1785 train and 12 eval images", "seed 0: classifier trained",
                 "seed 0: autoencoder plain trained", "measure plain (seed 0): 1/1",
                 "seed 0: measurements done", "seed 0: defense done"]:
        assert line in log, log
    # No third-party warning (torch's jit FutureWarning, scipy's small-sample RuntimeWarnings)
    # reaches a user: only the protocol's own "warning:" lines.
    assert not re.search(r"\w+Warning: ", log), log


def test_process_pool_workers_report_progress(work: Path) -> None:
    result = cli("run", "tiny.yaml", "--store", "store", "--out", "report", "--seeds", "0-1",
                 "--executor", "processes", cwd=work)
    assert result.returncode == 0, result.stderr
    assert "seed 0: classifier loaded from the store" in result.stderr  # the worker's line
    assert "seed 1: classifier trained" in result.stderr
    quiet = cli("run", "tiny.yaml", "--store", "store", "--out", "report", "--quiet", cwd=work)
    assert quiet.returncode == 0
    assert not re.search(r"^\[\d\d:\d\d:\d\d\] ", quiet.stderr, re.M), quiet.stderr


def test_each_kind_of_stored_artifact_is_verified_and_recomputed_after_rm(work: Path) -> None:
    before = stored(work / "store")
    assert set(before) >= {"train_classifier", "train_autoencoder", "measure", "defense"}
    damage = [("train_classifier", "weights.pt", flip),
              ("train_autoencoder", "weights.pt", flip),
              ("measure", "measurements.parquet", flip),
              ("defense", "table.parquet", flip),
              ("train_autoencoder", "weights.pt", truncate)]
    for stage, name, how in damage:
        digest = sorted(stored(work / "store")[stage])[0]
        how(work / "store" / stage / digest / name)
        present = stored(work / "store")
        result = cli("run", "tiny.yaml", "--store", "store", "--out", "report", cwd=work)
        one_line_error(result, 1, f"{stage}/{digest}", "is damaged", "dimple-stats store rm")
        after = stored(work / "store")  # the failed run lost nothing (it may have added)
        assert all(present[k] <= after.get(k, set()) for k in present), (present, after)
        verify = cli("store", "verify", "--store", "store", cwd=work)
        assert verify.returncode == 1 and f"damaged {stage}/{digest}: {name}" in verify.stdout
        assert cli("store", "rm", "--damaged", "--store", "store", cwd=work).returncode == 0
        assert digest not in stored(work / "store")[stage]
    again = cli("run", "tiny.yaml", "--store", "store", "--out", "report", cwd=work)
    assert again.returncode == 0, again.stderr
    manifest = json.loads((work / "report" / "manifest.json").read_text())
    assert manifest["shards"]["0"]["computed"] >= 1  # the removed defense table at least
    assert cli("store", "verify", "--store", "store", cwd=work).returncode == 0


def test_a_deleted_record_is_recomputed_not_a_dead_end(work: Path) -> None:
    stage = work / "store" / "train_autoencoder"
    (next(stage.iterdir()) / "_meta.json").unlink()
    for _ in range(2):  # it used to fail the same way on every rerun
        result = cli("run", "tiny.yaml", "--store", "store", "--out", "report", cwd=work)
        assert result.returncode == 0, result.stderr


def test_out_refuses_files_and_foreign_folders_before_compute(work: Path) -> None:
    (work / "mine").mkdir()
    (work / "mine" / "results.csv").write_text("my,own\n1,2\n")
    (work / "mine" / "notes.txt").write_text("keep me")
    (work / "afile").write_text("x")
    (work / "link").symlink_to(work / "report")
    shutil.rmtree(work / "store")
    for target, store, needle in [("mine", "store", "not a dimple-stats report"),
                                  ("afile", "store", "is a file"),
                                  ("link", "store", "symbolic link"),
                                  (".", "store", "holds the current directory"),
                                  ("report", "report/store", "holds the artifact store")]:
        result = cli("run", "tiny.yaml", "--store", store, "--out", target, cwd=work)
        one_line_error(result, 2, "--out", needle)
    assert (work / "mine" / "results.csv").read_text() == "my,own\n1,2\n"
    assert not (work / "store").exists()  # refused before anything was computed
    assert (work / "report" / "manifest.json").is_file()


def test_out_refuses_folders_that_only_look_like_reports(work: Path) -> None:
    # Someone else's manifest.json (a browser extension's) beside their own files.
    ext = work / "extension"
    ext.mkdir()
    (ext / "manifest.json").write_text('{"manifest_version": 3, "name": "x"}')
    (ext / "background.js").write_text("keep me")
    # A folder with only the user's own results.csv: names a report writes, no marker.
    own = work / "own"
    own.mkdir()
    (own / "results.csv").write_text("my,own\n1,2\n")
    # A manifest.json that is not ours, and nothing else.
    alone = work / "alone"
    alone.mkdir()
    (alone / "manifest.json").write_text('{"name": "not ours"}')
    for target, needle in [("extension", "background.js, which no report writes"),
                           ("own", "no manifest.json or rendered.json"),
                           ("alone", "its manifest.json was not written by dimple-stats")]:
        result = cli("run", "tiny.yaml", "--store", "store", "--out", target, cwd=work)
        one_line_error(result, 2, "--out", "not a dimple-stats report", needle)
    assert (ext / "background.js").read_text() == "keep me"
    assert (own / "results.csv").read_text() == "my,own\n1,2\n"
    assert (alone / "manifest.json").read_text() == '{"name": "not ours"}'


def test_a_store_linked_into_the_report_is_refused_not_deleted(work: Path) -> None:
    # --store names a symbolic link to a folder inside the report that --out would replace.
    (work / "report" / "figures").mkdir(exist_ok=True)
    shutil.copytree(work / "store", work / "report" / "figures" / "store")
    (work / "storelink").symlink_to(work / "report" / "figures" / "store")
    before = stored(work / "storelink")
    result = cli("run", "tiny.yaml", "--store", "storelink", "--out", "report", cwd=work)
    one_line_error(result, 2, "--out", "holds the artifact store")
    assert stored(work / "storelink") == before and before


def test_report_out_marks_its_folder_and_replaces_only_its_own(work: Path) -> None:
    result = cli("report", "report", "--out", "rendered", cwd=work)
    assert result.returncode == 0, result.stderr
    marker = json.loads((work / "rendered" / "rendered.json").read_text())
    assert "dimple-stats" in marker["versions"]
    again = cli("report", "report", "--out", "rendered", cwd=work)  # its own folder: fine
    assert again.returncode == 0, again.stderr
    (work / "rendered" / "rendered.json").unlink()  # now just files with a report's names
    refused = cli("report", "report", "--out", "rendered", cwd=work)
    one_line_error(refused, 2, "not a dimple-stats report")


def test_out_replaces_an_earlier_report_as_a_whole(work: Path) -> None:
    stale = work / "report" / "figures" / "from_an_older_version.png"
    stale.parent.mkdir(exist_ok=True)
    stale.write_bytes(b"old")
    result = cli("run", "tiny.yaml", "--store", "store", "--out", "report", cwd=work)
    assert result.returncode == 0, result.stderr
    assert not stale.exists() and (work / "report" / "results.csv").is_file()
    assert not [p for p in work.iterdir() if p.name.startswith(".report.")]


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def test_out_keeps_the_run_of_another_protocol_unless_told_to_replace_it(work: Path) -> None:
    """The folder of another protocol's run holds measurements only its store can re-derive:
    ``run --out`` and ``report --out`` refuse it (exit 2, the run's files byte-identical),
    ``--replace`` replaces it; a run of the same protocol replaces its own folder."""
    (work / "other.yaml").write_text(TINY.replace("name: tiny", "name: other"))
    before = _files(work / "report")
    assert "measurements.parquet" in before
    result = cli("run", "other.yaml", "--store", "store", "--out", "report", cwd=work)
    one_line_error(result, 2, "--out", "holds the run of protocol 'tiny'", "--replace")
    rendered = cli("report", "report", "--out", "report2", cwd=work)  # a render: no measurements
    assert rendered.returncode == 0, rendered.stderr
    shutil.copytree(work / "report", work / "copy")
    again = cli("report", "copy", "--out", "report", cwd=work)  # a render over a run's folder
    one_line_error(again, 2, "--out", "holds the run of protocol 'tiny'", "--replace")
    assert _files(work / "report") == before
    replaced = cli("run", "other.yaml", "--store", "store", "--out", "report", "--replace",
                   cwd=work)
    assert replaced.returncode == 0, replaced.stderr
    manifest = json.loads((work / "report" / "manifest.json").read_text())
    assert manifest["protocol"]["name"] == "other"
    forced = cli("report", "copy", "--out", "report", "--replace", cwd=work)
    assert forced.returncode == 0, forced.stderr
    assert not (work / "report" / "measurements.parquet").exists()


def test_another_checkpoint_at_the_same_path_is_another_model(tmp_path: Path) -> None:
    """A user checkpoint is named by its path in the config: its content hash enters the keys,
    so swapping the file recomputes every measurement instead of reusing the old ones."""
    import torch

    from dimple_stats.protocol import load_protocol_text
    from runners.datasets import load_dataset
    from runners.training import train_classifier

    text = TINY.replace("epochs: 2}", "epochs: 2, checkpoint: clf.pt}", 1)
    protocol = load_protocol_text(text)
    data = load_dataset(protocol.dataset, seed=0)
    states = [train_classifier(protocol.classifier.model_copy(update={"checkpoint": None}),
                               data, data_config=protocol.dataset, seed=s).model.state_dict()
              for s in (0, 1)]
    (tmp_path / "tiny.yaml").write_text(text)
    shards = []
    for state in states:
        torch.save(state, tmp_path / "clf.pt")
        result = cli("run", "tiny.yaml", "--store", "store", "--out", "report", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        shards.append(json.loads((tmp_path / "report" / "manifest.json").read_text())["shards"])
    assert shards[0]["0"]["loaded"] == 0 and shards[1]["0"]["loaded"] == 0


def test_a_reduced_run_uses_the_evaluation_images_there_are(work: Path) -> None:
    """--limit on data with fewer evaluation images than eval_samples selects from those (a
    warning says so); the full run is still refused, before any compute."""
    (work / "big.yaml").write_text(TINY.replace("eval_samples: 12", "eval_samples: 100000"))
    full = cli("run", "big.yaml", "--store", "store", "--out", "full", cwd=work)
    one_line_error(full, 2, "eval_samples=100000")
    reduced = cli("run", "big.yaml", "--store", "store", "--out", "reduced", "--limit", "5",
                  cwd=work)
    assert reduced.returncode == 0, reduced.stderr
    assert "--limit 5: the data has only 1797 evaluation images" in reduced.stderr
    manifest = json.loads((work / "reduced" / "manifest.json").read_text())
    assert manifest["limit"] == 5 and manifest["data"]["0"]["eval"] == 5
    assert manifest["data"]["0"]["train"] == 1797 - 5


# ------------------------------------------------------------------------- data and models

MNIST = """\
name: m
dataset: {{name: mnist, root: {root}, train_samples: {n}, eval_samples: 10{extra}}}
classifier: {{arch: mlp, hidden: [64], epochs: 3{checkpoint}}}
autoencoders:
  plain: {{arch: mlp, latent_dim: 8, hidden: [128], epochs: 10, lr: 0.003}}
attack: {{steps: {{plain: 10, on: 10, off: 10}}}}
tangent: {{method: dense}}
claims: [dmm.perpendicular]
seeds: [0]
report: {{formats: [csv], figures: false}}
"""


def _copy_mnist(src: Path, dst: Path) -> Path:
    shutil.copytree(src / "MNIST", dst / "MNIST")
    return dst


def _idx(path: Path) -> tuple[bytes, np.ndarray]:
    data = path.read_bytes()
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return data[:header], np.frombuffer(data[header:], dtype=np.uint8).reshape(shape)


def test_replaced_dataset_files_are_other_data(mnist_sample: Path, tmp_path: Path) -> None:
    """Same dataset.root and config, other files: nothing trained on the old files is reused
    (the data fingerprint is in every key) and the manifest records the fingerprint."""
    root = _copy_mnist(mnist_sample, tmp_path / "data")
    (tmp_path / "m.yaml").write_text(MNIST.format(root=root, n=2000, extra="", checkpoint=""))
    first = cli("run", "m.yaml", "--store", "store", "--out", "a", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    raw = root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    header, images = _idx(raw)
    raw.write_bytes(header + np.ascontiguousarray(images[:, :, ::-1]).tobytes())  # mirrored
    second = cli("run", "m.yaml", "--store", "store", "--out", "b", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    a, b = (json.loads((tmp_path / d / "manifest.json").read_text()) for d in "ab")
    assert a["data"]["0"]["fingerprint"] != b["data"]["0"]["fingerprint"]
    assert a["data"]["0"]["train"] == 2000
    assert not any(m["loaded"] for m in b["models"])  # retrained, not the old models
    assert b["shards"]["0"]["loaded"] == 0


def test_no_correctly_classified_image_is_a_clear_error(mnist_sample: Path,
                                                        tmp_path: Path) -> None:
    root = _copy_mnist(mnist_sample, tmp_path / "data")
    labels = root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    header, y = _idx(labels)
    swapped = np.where(y == 0, 1, np.where(y == 1, 0, y)).astype(np.uint8)  # 0 <-> 1
    labels.write_bytes(header + swapped.tobytes())
    (tmp_path / "m.yaml").write_text(MNIST.format(root=root, n=600, extra=", classes: [0, 1]",
                                                  checkpoint=""))
    result = cli("run", "m.yaml", "--store", "store", cwd=tmp_path)
    one_line_error(result, 1, "none of the 10 evaluation images", "dataset.eval_samples")
    assert {"train_classifier", "train_autoencoder"} <= set(stored(tmp_path / "store"))


def test_a_classifier_that_outputs_nan_is_a_clear_error(mnist_sample: Path,
                                                        tmp_path: Path) -> None:
    import torch

    from dimple_stats.protocol import load_protocol_text
    from runners.models import build_classifier

    text = MNIST.format(root=mnist_sample, n=600, extra="", checkpoint="")
    model = build_classifier(load_protocol_text(text).classifier, image_shape=(1, 28, 28),
                             num_classes=10)
    state = model.state_dict()
    # Finite weights whose products overflow: inf in the first layer, inf - inf = NaN in the
    # next. (A NaN weight itself is refused as bad input before any compute: test_training.)
    next(iter(state.values())).fill_(3e38)
    torch.save(state, tmp_path / "clf.pt")
    (tmp_path / "m.yaml").write_text(MNIST.format(root=mnist_sample, n=600, extra="",
                                                  checkpoint=", checkpoint: clf.pt"))
    result = cli("run", "m.yaml", "--store", "store", cwd=tmp_path)
    one_line_error(result, 1, "the classifier (seed 0) outputs", "NaN")


def test_a_dataset_smaller_than_asked_is_bad_input(mnist_sample: Path, tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text(
        MNIST.format(root=mnist_sample, n=9000, extra="", checkpoint=""))
    result = cli("run", "m.yaml", "--store", "store", cwd=tmp_path)
    one_line_error(result, 2, "train_samples")


# ------------------------------------------------------------------------------- bad input

def _bomb() -> str:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    lines += [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]"
              for i in range(8)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(("case", "content", "args", "needles"), [
    ("alias bomb", _bomb(), (), ("p.yaml", "alias")),
    ("random bytes", None, (), ("p.yaml", "not UTF-8")),
    ("nan eps", TINY.replace("eps: {plain: 4,", "eps: {plain: .nan,"), (),
     ("p.yaml", "attack.eps.plain", "finite")),
    ("deep nesting", "x: " + "[" * 5000 + "]" * 5000 + "\n", (), ("p.yaml", "nest")),
    ("huge seed range", TINY, ("--seeds", "0-99999999"), ("--seeds",)),
    ("empty seeds", TINY, ("--seeds", ""), ("--seeds",)),
    ("empty seed item", TINY, ("--seeds", "0,,1"), ("--seeds",)),
    ("address without ray", TINY, ("--executor", "local", "--address", "1.2.3.4:6379"),
     ("--address",)),
])
def test_bad_input_exits_2_in_one_line_before_compute(tmp_path: Path, case: str,
                                                       content: str | None, args: tuple,
                                                       needles: tuple) -> None:
    path = tmp_path / "p.yaml"
    if content is None:
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 2048, dtype=np.uint8)
                         .tobytes())
    else:
        path.write_text(content)
    commands = [["run", "p.yaml", "--store", "store", *args]]
    if not args:  # a file problem: validate says it too
        commands.append(["validate", "p.yaml"])
    for command in commands:
        one_line_error(cli(*command, cwd=tmp_path), 2, *needles)
    assert not (tmp_path / "store").exists()


def test_set_reads_on_off_keys_as_the_file_loader_does(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(TINY)
    result = cli("validate", "p.yaml", "--set", "attack.eps={plain: 1, on: 2, off: 3}",
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr


def _children(pid: int) -> list[int]:
    """Live processes whose parent is ``pid`` (from /proc: no psutil dependency)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
def test_sigterm_stops_the_process_pool_workers_and_leaves_no_staging(work: Path) -> None:
    import signal
    import time

    shutil.rmtree(work / "store")
    proc = subprocess.Popen([sys.executable, "-m", "dimple_stats", "run", "tiny.yaml",
                             "--seeds", "0,1", "--executor", "processes", "--store", "store",
                             "--out", "report", "-q"], cwd=work, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    workers: list[int] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        # the spawned workers (the resource tracker is a child too, and stops by itself)
        workers = [p for p in _children(proc.pid)
                   if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]
        if workers and (work / "store").is_dir():
            break
        time.sleep(0.2)
    assert workers, "no pool worker started"
    time.sleep(2)  # let them start computing
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM and "Traceback" not in err, err
    # one line says what happened and what to do (a bare 143 once said nothing)
    assert err.rstrip().splitlines()[-1] == (
        "dimple-stats: stopped by SIGTERM; nothing finished was lost (the store's stages, a "
        "whole report at --out): run the same command again to resume"), err
    time.sleep(1)
    assert not [p for p in workers if _alive(p)], "pool workers kept computing after SIGTERM"
    assert not [p for p in work.iterdir() if p.name.startswith(".report.")]
    again = cli("run", "tiny.yaml", "--seeds", "0,1", "--store", "store", "--out", "report",
                cwd=work)
    assert again.returncode == 0, again.stderr


def _limited(limit: int) -> Callable[[], None]:
    import resource

    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_FSIZE semantics")
def test_a_file_size_limit_is_one_line_and_loses_nothing(work: Path) -> None:
    # ulimit -f while the store is written (torch's writer) and while the report is written.
    before = {p.name: p.read_bytes() for p in (work / "report").iterdir() if p.is_file()}
    shutil.rmtree(work / "store")
    for limit, where in [(8 * 1024, "cannot write to the artifact store"),
                         (10 * 1024, "cannot write")]:
        if where == "cannot write":  # the store is complete: only the report is written
            ok = cli("run", "tiny.yaml", "--store", "store", "--out", "elsewhere", cwd=work)
            assert ok.returncode == 0, ok.stderr
        result = subprocess.run(
            [sys.executable, "-m", "dimple_stats", "run", "tiny.yaml", "--store", "store",
             "--out", "report"], cwd=work, capture_output=True, text=True, timeout=600,
            stdin=subprocess.DEVNULL, preexec_fn=_limited(limit))
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1 and where in errors[0] and "nothing" in errors[0], errors
        after = {p.name: p.read_bytes() for p in (work / "report").iterdir() if p.is_file()}
        assert after == before  # the earlier report is untouched
        assert not [p for p in work.iterdir() if p.name.startswith(".report.")]
    again = cli("run", "tiny.yaml", "--store", "store", "--out", "report", cwd=work)
    assert again.returncode == 0, again.stderr


def test_a_device_or_store_this_machine_cannot_use_is_refused_before_compute(
        work: Path) -> None:
    import torch

    (work / "afile").write_text("x")
    cases = [(["--store", "afile"], "--store", "is a file, not a folder")]
    if not torch.cuda.is_available():
        cases.append((["--device", "cuda:99"], "--device", "no CUDA GPU"))
    # a path below a file (issue 32 F11): refused before training, not after it
    cases.append((["--store", "afile/sub"], "--store", "is a file, so no folder can be made"))
    for extra, section, needle in cases:
        result = cli("run", "tiny.yaml", "--store", "store2", "--out", "r2", *extra, cwd=work)
        one_line_error(result, 2, section, needle)
    for store, needle in (("afile", "is a file, not a folder"),
                          ("afile/sub", "is a file, so no folder can be made")):
        result = cli("train", "tiny.yaml", "--store", store, cwd=work)
        one_line_error(result, 2, "--store", needle)
        assert "epoch" not in result.stderr  # refused before any training
    assert not (work / "store2").exists() and not (work / "r2").exists()
    assert (work / "afile").read_text() == "x"


@pytest.mark.skipif(shutil.which("chattr") is None, reason="needs chattr (e2fsprogs)")
def test_an_out_folder_nobody_can_write_is_refused_before_compute(work: Path) -> None:
    """An immutable folder (as a read-only mount, unwritable even for root): the run once
    trained and measured, then failed to rename the report in."""
    locked = work / "locked"
    locked.mkdir()
    if subprocess.run(["chattr", "+i", str(locked)], capture_output=True).returncode != 0:
        pytest.skip("this filesystem has no immutable attribute")
    try:
        result = cli("run", "tiny.yaml", "--store", "store2", "--out", "locked/report", cwd=work)
        one_line_error(result, 2, "--out", "locked is not writable", "name a folder you can write")
        rendered = cli("report", "report", "--out", "locked/r", cwd=work)
        one_line_error(rendered, 2, "--out", "locked is not writable")
        # the folder itself immutable (empty, or an earlier report): it cannot be renamed aside
        result = cli("run", "tiny.yaml", "--store", "store2", "--out", "locked", cwd=work)
        one_line_error(result, 2, "--out", "locked is not writable")
    finally:
        subprocess.run(["chattr", "-i", str(locked)], check=True)
    assert not (work / "store2").exists()  # nothing computed
    # A read-only store serves a run it holds whole, and refuses one stage short, before it
    # computes (it once refused both; issue 32's held list).
    subprocess.run(["chattr", "-R", "+i", str(work / "store")], check=True)
    try:
        cached = cli("run", "tiny.yaml", "--store", "store", "--out", "r3", cwd=work)
        assert cached.returncode == 0, cached.stderr
        more = cli("run", "tiny.yaml", "--store", "store", "--out", "r4", "--seeds", "1",
                   cwd=work)
        one_line_error(more, 2, "--store", "store is not writable", "lacks train_classifier",
                       "name a store you can write to")
        assert "epoch" not in more.stderr
    finally:
        subprocess.run(["chattr", "-R", "-i", str(work / "store")], check=True)


def test_train_classes_an_image_folder_lacks_are_refused_before_training(tmp_path: Path) -> None:
    """Issue 32 row 21: an image folder's class ids are known only once its folders are read,
    so ``validate`` passes ``train_classes: [42]``; the run then trained the autoencoder on no
    image and blamed its learning rate ("collapsed ... try a smaller lr"). Now exit 2 naming
    the key and the class ids the data has, before any model is trained."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", 20), ("val", 6)):
        for cls in ("ant", "bee"):
            folder = tmp_path / "imgs" / split / cls
            folder.mkdir(parents=True)
            for i in range(count):
                Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(
                    folder / f"{i}.png")
    text = TINY.replace("{name: digits, eval_samples: 12, pixel_range: [-1, 1]}",
                        f"{{name: imagefolder, root: {tmp_path / 'imgs'}, image_size: 8, "
                        "eval_samples: 6}").replace("epochs: 10}", "epochs: 10, train_classes: [42]}")
    (tmp_path / "p.yaml").write_text(text)
    assert cli("validate", "p.yaml", cwd=tmp_path).returncode == 0
    line = one_line_error(cli("run", "p.yaml", "--store", "store", "--out", "out", "-q",
                              cwd=tmp_path), 2, "autoencoders.plain.train_classes [42]",
                          "class ids [0, 1]")
    assert "lr" not in line
    assert not any((tmp_path / "store").glob("train_*/*/_meta.json"))  # nothing trained


def test_a_checkpoint_of_the_wrong_model_is_refused_by_validate_and_before_training(
        tmp_path: Path) -> None:
    """Issue 32 rows 12/16 (``validate`` passed a checkpoint that is not the model's weights;
    ``run`` refused it only after training the classifier): both now load every checkpoint
    into its model first. The right weights still pass."""
    import torch

    from dimple_stats.protocol import load_protocol_text
    from runners.models import build_autoencoder

    torch.save({"w": torch.zeros(3)}, tmp_path / "wrong.pt")
    text = TINY.replace("epochs: 10}", "epochs: 10, checkpoint: wrong.pt}")
    (tmp_path / "p.yaml").write_text(text)
    line = one_line_error(cli("validate", "p.yaml", cwd=tmp_path), 2,
                          "autoencoders.plain.checkpoint: wrong.pt: not weights of this")
    assert "p.yaml" in line
    one_line_error(cli("run", "p.yaml", "--store", "store", "--out", "out", "-q", cwd=tmp_path),
                   2, "autoencoders.plain.checkpoint: wrong.pt")
    assert not any((tmp_path / "store").glob("train_*/*/_meta.json"))  # no classifier trained
    protocol = load_protocol_text(text)
    config = protocol.autoencoders["plain"]
    right = build_autoencoder(config, image_shape=(1, 8, 8),
                              pixel_range=protocol.dataset.pixel_range, manifold=None)
    torch.save(right.state_dict(), tmp_path / "wrong.pt")
    ok = cli("validate", "p.yaml", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr


def test_missing_data_under_the_process_executor_is_one_line(tmp_path: Path) -> None:
    """An error raised in a process-pool worker is pickled back to the parent; an error whose
    ``__init__`` takes more than its message (``DatasetNotFoundError``) could not be unpickled,
    so the parent printed a broken-pool traceback (found recording isometric_defense without
    ``dataset.root``). Now the worker's one-line message and exit 2, as with the serial run."""
    text = TINY.replace("{name: digits, eval_samples: 12, pixel_range: [-1, 1]}",
                        f"{{name: mnist, root: {tmp_path / 'nowhere'}, download: false, "
                        "eval_samples: 12}").replace("seeds: [0]", "seeds: [0, 1]")
    (tmp_path / "p.yaml").write_text(text)
    one_line_error(cli("run", "p.yaml", "--store", "store", "--out", "out", "-q",
                       "--executor", "processes", cwd=tmp_path), 2,
                   "dataset 'mnist' not found", str(tmp_path / "nowhere"))
