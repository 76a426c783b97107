"""The command line: exit codes and messages of validate, schema and claims."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from dimple_stats.claims import CATALOGUE
from dimple_stats.cli import app

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()

BAD_KEY = """\
name: bad
dataset: {name: digits}
autoencoders:
  plain:
    arch: mlp
    latnet_dim: 8
claims: [dmm.norm_asymmetry]
"""


def _shipped(*, user_files: bool) -> list[str]:
    """Shipped protocols that name a user's checkpoint file (ImageNet's weights) or not."""
    return sorted(str(p) for p in (ROOT / "protocols").glob("*.yaml")
                  if ("checkpoint:" in p.read_text()) == user_files)


def test_validate_all_shipped_protocols_exits_0() -> None:
    files = _shipped(user_files=False)
    result = runner.invoke(app, ["validate", *files])
    assert result.exit_code == 0, result.output
    assert result.output.count("ok ") == len(files)
    # one that needs the user's weights says so until they are there (a run would fail late)
    (needs,) = _shipped(user_files=True)
    result = runner.invoke(app, ["validate", needs])
    assert result.exit_code == 2 and "checkpoint" in result.output and "does not exist" in \
        result.output


def test_shipped_protocols_can_reach_their_eps() -> None:
    # Every shipped attack budget can travel to its eps-ball's edge (MNIST's once could not:
    # 50 steps of 0.02 against eps 2 censored 91% of plain attacks).
    files = sorted(str(p) for p in (ROOT / "protocols").glob("*.yaml"))
    result = runner.invoke(app, ["validate", *files])
    assert "warning" not in result.output, result.output


def test_validate_warns_when_eps_is_out_of_the_steps_reach(tmp_path: Path) -> None:
    text = BAD_KEY.replace("latnet_dim: 8", "latent_dim: 8") + (
        "attack: {eps: {plain: 2, on: 10, off: 10}, step: {plain: 0.02, on: 0.2, off: 0.02},\n"
        "         steps: {plain: 50, on: 1000, off: 400}}\n")
    file = tmp_path / "short.yaml"
    file.write_text(text)
    proc = subprocess.run([sys.executable, "-m", "dimple_stats", "validate", str(file)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert f"warning: {file}: attack.steps.plain: 50 steps of 0.02 travel at most 1 < eps 2" \
        in proc.stderr
    assert "attack.steps.off: 400 steps of 0.02 travel at most 8 < eps 10" in proc.stderr
    assert "attack.steps.on" not in proc.stderr


def test_validate_misspelt_key_exits_2_with_line_and_suggestion(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD_KEY)
    # A real process: the exit code and stderr a user sees.
    proc = subprocess.run([sys.executable, "-m", "dimple_stats", "validate", str(bad)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert f"{bad}:6: autoencoders.plain.latnet_dim: unknown key" in proc.stderr
    assert "did you mean 'latent_dim'" in proc.stderr


def test_validate_duplicate_key_exits_2(tmp_path: Path) -> None:
    dup = tmp_path / "dup.yaml"
    dup.write_text(BAD_KEY.replace("latnet_dim: 8", "latent_dim: 8\n    latent_dim: 4"))
    result = runner.invoke(app, ["validate", str(dup)])
    assert result.exit_code == 2
    assert "dup.yaml:7: autoencoders.plain.latent_dim: duplicate key" in result.output


def test_validate_reports_every_file_and_fails_if_any_fails(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD_KEY)
    good = ROOT / "protocols" / "quickstart.yaml"
    result = runner.invoke(app, ["validate", str(bad), str(good)])
    assert result.exit_code == 2
    assert "ok " in result.output and "latnet_dim" in result.output


def test_validate_missing_file_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2 and "cannot read" in result.output


def test_validate_set_override(tmp_path: Path) -> None:
    good = str(ROOT / "protocols" / "quickstart.yaml")
    assert runner.invoke(app, ["validate", good, "--set", "attack.norm=linf"]).exit_code == 0
    result = runner.invoke(app, ["validate", good, "--set", "attack.norm=l3"])
    assert result.exit_code == 2 and "[from --set attack.norm]" in result.output


def test_an_option_or_override_error_names_its_source_not_a_file_line(tmp_path: Path) -> None:
    """A value from --set, --device or --executor is not on any line of the file: the error
    names the option (it once blamed the file's line of the section, or '--set device')."""
    protocol = tmp_path / "p.yaml"
    protocol.write_text("name: p\ndataset: {name: digits, eval_samples: 12}\nautoencoders:\n"
                        "  plain: {arch: mlp, latent_dim: 8}\nclaims:\n"
                        "  - dmm.perpendicular: {null: beta}\n")
    cases = [(["validate", str(protocol), "--set", "dataset.eval_samples=true"],
              "p.yaml: dataset.eval_samples: a boolean (true/false) where a number or name is "
              "expected [from --set dataset.eval_samples]"),
             (["validate", str(protocol), "--set", "dataset.classes=[11]"],
              "p.yaml: dataset.classes: [11] are not classes of digits (ids 0-9) "
              "[from --set dataset.classes]"),
             (["validate", str(protocol), "--set", "dataset.classes=[0, 1]", "--set",
               "dataset.eval_classes=[7]"],
              "p.yaml: dataset.eval_classes: [7] are not in classes [0, 1] "
              "[from --set dataset.eval_classes]"),
             (["run", str(protocol), "--device", "gpu0"],
              "got 'gpu0' [from --device]"),
             (["run", str(protocol), "--executor", "foo"],
              "unknown executor 'foo'; known: local, processes, ray [from --executor]")]
    for args, expected in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and expected in " ".join(result.output.split()), \
            result.output
        assert "p.yaml:2" not in result.output, result.output
    quoted = protocol.read_text().replace("eval_samples: 12", 'eval_samples: "12"')
    protocol.write_text(quoted)  # in the file: its line
    result = runner.invoke(app, ["validate", str(protocol)])
    assert result.exit_code == 2
    assert "p.yaml:2: dataset.eval_samples: a number, got the text '12'" in result.output


def test_schema_is_json_schema() -> None:
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.output)
    assert schema["title"] == "Protocol" and "dataset" in schema["properties"]


def test_claims_lists_catalogue_and_details() -> None:
    result = runner.invoke(app, ["claims", "--json"])
    assert result.exit_code == 0
    listed = json.loads(result.output)
    assert [c["id"] for c in listed] == list(CATALOGUE)
    detail = runner.invoke(app, ["claims", "dmm.norm_asymmetry"])
    assert detail.exit_code == 0 and "dimension" in detail.output
    unknown = runner.invoke(app, ["claims", "dmm.norm_asymmetri"])
    assert unknown.exit_code == 2 and "did you mean 'dmm.norm_asymmetry'" in unknown.output


def test_compute_commands_share_seeds_store_and_device() -> None:
    # `train` and `run` declared --seeds, --store and --device each on their own, and `train
    # --device` defaulted to "auto" where `run` took the protocol's device. One declaration now.
    import typer.main

    group = typer.main.get_command(app)
    train, run = group.commands["train"], group.commands["run"]  # type: ignore[attr-defined]
    for name in ("seeds", "store", "device"):
        a = next(p for p in train.params if p.name == name)
        b = next(p for p in run.params if p.name == name)
        assert (a.opts, a.help, a.default) == (b.opts, b.help, b.default), name
    device = next(p for p in train.params if p.name == "device")
    assert device.default is None and "protocol's" in device.help
