"""`import dimple_stats` and the torch-free commands work where torch cannot be imported."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def run_blocked(run_without_torch):
    return lambda body: run_without_torch(body, cwd=ROOT)


def test_the_block_really_blocks_torch(run_blocked) -> None:
    proc = run_blocked("import torch")
    assert proc.returncode != 0 and "blocked by test" in proc.stderr


def test_import_and_load_without_torch(run_blocked) -> None:
    proc = run_blocked(
        "import dimple_stats, dimple_stats.cli\n"
        "p = dimple_stats.load_protocol('protocols/quickstart.yaml')\n"
        "assert p.name == 'quickstart'\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in ('torch', 'runners')]\n"
        "print('ok')\n"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_cli_validate_schema_claims_without_torch(tmp_path: Path, run_blocked) -> None:
    # the shipped protocols, less those naming a user's checkpoint file (refused until it exists)
    files = sorted(str(p) for p in (ROOT / "protocols").glob("*.yaml")
                   if "checkpoint:" not in p.read_text())
    for argv, code in (
        (["validate", *files], 0),
        (["schema"], 0),
        (["claims"], 0),
    ):
        proc = run_blocked(f"import sys; sys.argv = ['dimple-stats', *{argv!r}]\n"
                           "from dimple_stats.cli import main\nmain()\n")
        assert proc.returncode == code, (argv, proc.stderr)
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ndataset: {name: digits}\nautoencoders: {a: {arch: mlp, latnet_dim: 2}}\n"
                   "claims: [dmm.norm_asymmetry]\n")
    proc = run_blocked(f"import sys; sys.argv = ['dimple-stats', 'validate', {str(bad)!r}]\n"
                       "from dimple_stats.cli import main\nmain()\n")
    assert proc.returncode == 2 and ":3: autoencoders.a.latnet_dim" in proc.stderr


def test_store_commands_without_torch(tmp_path: Path, run_without_torch) -> None:
    """`dimple-stats store` reads and repairs a store on a machine without torch (the store
    module of `runners` imports no torch)."""

    def run_blocked(body: str):
        return run_without_torch(body, cwd=ROOT, blocked=("torch", "torchvision"))

    store = tmp_path / "store"
    proc = run_blocked(
        "from runners.store import ArtifactStore\n"
        f"s = ArtifactStore({str(store)!r}, origin={{'protocol': 'p', 'seed': 0}})\n"
        "with s.writer(s.key('measure', {'x': 1})) as w:\n"
        "    w.save_json('metrics.json', {'a': 1})\n")
    assert proc.returncode == 0, proc.stderr
    for argv in (["store", "ls", "--store", str(store)], ["store", "verify", "--store", str(store)]):
        proc = run_blocked(f"import sys; sys.argv = ['dimple-stats', *{argv!r}]\n"
                           "from dimple_stats.cli import main\nmain()\n")
        assert proc.returncode == 0, (argv, proc.stderr)
    assert "p seed 0" in run_blocked(
        f"import sys; sys.argv = ['dimple-stats', 'store', 'ls', '--store', {str(store)!r}]\n"
        "from dimple_stats.cli import main\nmain()\n").stdout
