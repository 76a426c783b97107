"""Plugins from the ``dimple_stats.plugins`` entry-point group run under every executor.

A toy plugin package is "installed" the way pip leaves one on disk: a module and a
``*.dist-info`` folder with ``entry_points.txt``, on ``PYTHONPATH`` (importlib.metadata finds
distributions on sys.path). Its claim must go through ``dimple-stats run`` under ``local``,
``processes`` (spawned workers start with the built-in registries) and ``ray``; a plugin that
fails to import is one line, exit 2; a name registered at run time in the parent only is one
line from the worker, not a pydantic traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.slow

PLUGIN = '''\
"""A toy claim, registered when this module is imported (the entry point names the module)."""
from pydantic import BaseModel, ConfigDict, Field

from dimple_stats.claims import CATALOGUE, ClaimDefinition
from dimple_stats.claims.rows import column_values, descriptive_row, image_ids, needs


class ToyOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    scale: float = Field(1.0, gt=0)


@needs(("seed", "autoencoder", "sample", "recon_err"))
def toy_reconstruction(df, opts, stats, *, claim):
    return [descriptive_row(
        claim=claim, variant="median", autoencoder=str(ae), seed=int(seed),
        values=opts.scale * column_values(g, "recon_err"), estimate_meaning="scale x recon_err",
        n_censored=0, null="(descriptive)", stats=stats, ids=image_ids(g))
        for (ae, seed), g in df.groupby(["autoencoder", "seed"])]


CATALOGUE.register("toy.plugin_claim", ClaimDefinition(
    id="toy.plugin_claim", source="a plugin", hypothesis="Reconstructions are imperfect.",
    statistic="recon_err", test="none (descriptive)", nulls={}, censoring="none",
    options=ToyOptions, analysis=toy_reconstruction))
'''

PROTOCOL = """\
name: toy_plugin
dataset: {name: digits, eval_samples: 8, pixel_range: [-1, 1]}
classifier: {arch: mlp, hidden: [32], epochs: 2}
autoencoders:
  plain: {arch: mlp, latent_dim: 6, hidden: [64], epochs: 10}
attack:
  base: image  # every correctly classified image is measured (no D(z*) to misclassify)
  on_manifold: tangent
  eps: {plain: 4, on: 8, off: 8}
  step: {plain: 0.2, on: 0.4, off: 0.4}
  steps: {plain: 10, on: 10, off: 10}
tangent: {method: dense, dtype: float64}
claims:
  - toy.plugin_claim: {scale: 2.0}
seeds: [0, 1]
report: {formats: [csv], figures: false}
"""


def _install(site: Path, name: str, module: str, source: str) -> None:
    """A distribution ``name`` whose entry point ``name`` in dimple_stats.plugins is ``module``."""
    site.mkdir(exist_ok=True)
    (site / f"{module}.py").write_text(source)
    info = site / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[dimple_stats.plugins]\n{name} = {module}\n")


def _cli(*args: str, cwd: Path, site: Path | None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if site is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "dimple_stats", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    site = tmp_path_factory.mktemp("site")
    _install(site, "toy-plugin", "toy_plugin", PLUGIN)
    return site


@pytest.mark.parametrize("executor", ["local", "processes", "ray"])
def test_a_plugins_claim_runs_under_every_executor(executor: str, plugin_site: Path,
                                                    tmp_path: Path) -> None:
    if executor == "ray":
        pytest.importorskip("ray")
    (tmp_path / "p.yaml").write_text(PROTOCOL)
    result = _cli("run", "p.yaml", "--executor", executor, "--store", "store", "--out", "rep",
                  "-q", cwd=tmp_path, site=plugin_site)
    assert result.returncode == 0, result.stderr
    rows = pd.read_csv(tmp_path / "rep" / "results.csv")
    mine = rows[rows["claim"] == "toy.plugin_claim"]
    # one descriptive row per seed (and the pooled one), twice the median reconstruction error
    assert sorted(mine["seed"].astype(str).unique()) == ["0", "1", "pooled"]
    measured = pd.read_parquet(tmp_path / "rep" / "measurements.parquet")
    seed0 = measured.loc[measured["seed"] == 0, "recon_err"].median()
    got = float(mine.loc[mine["seed"].astype(str) == "0", "estimate"].iloc[0])
    assert got == pytest.approx(2.0 * seed0, rel=1e-9)


def test_without_the_plugin_its_claim_is_an_unknown_name(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(PROTOCOL)
    result = _cli("validate", "p.yaml", cwd=tmp_path, site=None)
    assert result.returncode == 2 and "toy.plugin_claim" in result.stderr, result.stderr


def test_a_plugin_that_fails_to_load_is_one_line(tmp_path: Path) -> None:
    site = tmp_path / "site"
    _install(site, "broken-plugin", "broken_plugin", "raise ImportError('no module named x')\n")
    (tmp_path / "p.yaml").write_text(PROTOCOL)
    result = _cli("validate", "p.yaml", cwd=tmp_path, site=site)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert lines == ["dimple-stats: plugin 'broken-plugin' (broken_plugin, from broken-plugin) "
                     "failed to load: ImportError: no module named x; fix or uninstall that "
                     "package"], result.stderr


def test_a_name_registered_in_the_parent_only_is_one_line_from_the_worker(
        tmp_path: Path) -> None:
    """Registered in this process (not as a plugin): the spawned workers do not know it."""
    from dimple_stats.claims import CATALOGUE
    from dimple_stats.plugins import PluginError
    from dimple_stats.protocol import load_protocol_text
    from runners.pipeline import run_protocol

    namespace: dict = {}
    exec(compile(PLUGIN.replace("CATALOGUE.register(", "DEFINITION = ("), "toy", "exec"),
         namespace)
    with CATALOGUE.registered("toy.plugin_claim", namespace["DEFINITION"][1]):
        protocol = load_protocol_text(PROTOCOL)
        with pytest.raises(PluginError, match=r"a worker cannot read the protocol \(claims.*"
                                              r"declare it as a plugin"):
            run_protocol(protocol, executor="processes", store_root=tmp_path / "store",
                         out_dir=tmp_path / "rep")
