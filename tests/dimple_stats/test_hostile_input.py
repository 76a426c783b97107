"""Hostile input: alias bombs, deep nesting, non-UTF-8 bytes, NaN, `--set` keys, seed specs and
options the executor ignores each give one line per problem and exit 2, never a traceback or a
hang, in `validate` and in the compute commands."""

from __future__ import annotations

import random
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from dimple_stats.cli import app
from dimple_stats.cli.options import check_executor_options
from dimple_stats.protocol import Protocol, ProtocolError, load_protocol_text
from dimple_stats.protocol.loader import MAX_DEPTH, MAX_VALUES, parse_overrides
from dimple_stats.seeds import MAX_SEEDS, parse_seeds

runner = CliRunner()

MINIMAL = """\
name: t
dataset: {name: digits}
autoencoders:
  plain: {arch: mlp, latent_dim: 8}
claims:
  - dmm.perpendicular: {null: beta}
"""

# The "billion laughs": each line names the previous one nine times, 9^9 values in all.
BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]\n" for prev, name in zip("abcdefgh", "bcdefghi")
)

# Same size by merge keys: each mapping merges the previous one nine times.
MERGE_BOMB = "a: &a {k0: 1, k1: 1, k2: 1, k3: 1, k4: 1, k5: 1, k6: 1, k7: 1, k8: 1}\n" + "".join(
    f"{name}: &{name} {{<<: [{', '.join([f'*{prev}'] * 9)}]}}\n"
    for prev, name in zip("abcdefgh", "bcdefghi")
)


def issues_of(text: str, overrides: tuple[str, ...] = ()) -> list:
    with pytest.raises(ProtocolError) as info:
        load_protocol_text(text, file="p.yaml", overrides=overrides)
    return info.value.issues


def write(tmp_path: Path, content: str | bytes, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


class Reached(Exception):
    """Raised by the stand-in of the compute side: the command got past its input checks."""


@pytest.fixture(autouse=True)
def computed(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Stand in for ``runners`` (torch): `run` records the protocol it would run and stops;
    every other ``runners`` import fails. A test sees whether compute was reached, and a
    regression never starts training."""
    calls: list[Any] = []

    def run_protocol(protocol: Protocol, **kwargs: Any) -> None:
        calls.append((protocol, kwargs))
        raise Reached

    for name in [m for m in sys.modules if m.startswith("runners.")]:
        monkeypatch.setitem(sys.modules, name, None)
    package = types.ModuleType("runners")
    package.__path__ = []  # a package with no submodules but the one below
    pipeline = types.ModuleType("runners.pipeline")
    pipeline.run_protocol = run_protocol  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "runners", package)
    monkeypatch.setitem(sys.modules, "runners.pipeline", pipeline)
    yield calls


def refused(args: list[str], *expected: str) -> str:
    """Invoke the CLI; assert exit 2, no traceback and every ``expected`` text in the output."""
    result = runner.invoke(app, args)
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    for text in expected:
        assert text in result.output, (text, result.output)
    return result.output


COMMANDS = pytest.mark.parametrize("command", ["validate", "run"])


# --------------------------------------------------------------------------- 1. alias bombs

def test_alias_bomb_is_refused_at_once_naming_the_alias_line() -> None:
    start = time.perf_counter()
    (issue,) = issues_of(BOMB)
    elapsed = time.perf_counter() - start
    assert elapsed < 2.0, f"{elapsed:.1f} s: the aliases were expanded"
    assert issue.file == "p.yaml" and issue.line is not None
    assert BOMB.splitlines()[issue.line - 1].count("*") == 9  # a line of aliases
    assert f"more than {MAX_VALUES:,} values" in issue.message and "aliases" in issue.message


@COMMANDS
def test_alias_bomb_exits_2(command: str, tmp_path: Path, computed: list[Any]) -> None:
    path = write(tmp_path, MINIMAL + BOMB)
    start = time.perf_counter()
    out = refused([command, str(path)], f"{path}:", "aliases")
    assert time.perf_counter() - start < 2.0
    assert out.count("\n") <= 2 and not computed


def test_merge_keys_listing_a_mapping_nine_times_do_not_multiply() -> None:
    # PyYAML 6.0.4 merges a mapping's pairs once however often it is listed; earlier 6.0.x
    # copied them each time (9^9 pairs here), which the loader refuses past MAX_VALUES.
    start = time.perf_counter()
    issues = issues_of(MINIMAL + MERGE_BOMB)
    assert time.perf_counter() - start < 2.0
    assert [i.message for i in issues] == ["unknown key"] * 9 or \
        f"more than {MAX_VALUES:,} values" in issues[0].message


@pytest.mark.parametrize("text", ["a: &a [1, *a]\n", "a: &a {b: *a}\n", "a: &a {<<: *a}\n"],
                         ids=["list", "mapping", "merge"])
def test_alias_to_itself_is_an_error_not_a_recursion(text: str) -> None:
    (issue,) = issues_of(MINIMAL + text)
    assert issue.line == 7 and ("contains it" in issue.message or "into itself" in issue.message)


@pytest.mark.parametrize("tagged", [
    "classifier: {hidden: !!python/object/apply:os.system [32]}\n",
    "classifier: !!python/object:argparse.Namespace {hidden: [32]}\n",
    "classifier: {hidden: !!python/tuple [32]}\n",
    "classifier: {hidden: !custom [32]}\n",
    "description: !!python/object/apply:os.getcwd []\n",
], ids=["apply-on-list", "object-on-mapping", "tuple", "local-tag", "apply-on-scalar-field"])
def test_a_tag_on_a_list_or_mapping_is_refused_naming_its_line(tagged: str) -> None:
    """Issue 32's re-probe: PyYAML's safe constructors dropped a tag on a list or mapping and
    kept the value, so ``hidden: !!python/object/apply:os.system [32]`` validated as [32]
    (nothing ran). A protocol holds plain values: any tag is refused, in the file and in
    ``--set``, naming the line and key."""
    (issue,) = issues_of(MINIMAL + tagged)
    assert issue.line == 7 and "YAML tag" in issue.message and "not allowed" in issue.message
    (issue,) = issues_of(MINIMAL, overrides=("classifier.hidden=!!python/tuple [3]",))
    assert "YAML tag !!python/tuple is not allowed" in issue.message


def test_anchors_aliases_and_merge_keys_still_work() -> None:
    text = MINIMAL.replace("  plain: {arch: mlp, latent_dim: 8}\n", """\
  plain: &ae {arch: mlp, latent_dim: 8, epochs: 5}
  iso:
    <<: *ae
    regulariser: {kind: isometric, weight: 1.0}
  small: &small {<<: *ae, latent_dim: 4}
  small_again: *small
""") + "attack: {eps: &budget 3.0, step: {plain: 0.1, on: 0.1, off: 0.1}, steps: 100}\n" \
        "tangent: {tol: *budget}\n"
    p = load_protocol_text(text)
    assert p.autoencoders["iso"].epochs == 5 and p.autoencoders["iso"].regulariser.kind == "isometric"
    # A mapping that overrides a merged key, used twice: its second use is not a duplicate key.
    assert p.autoencoders["small"].latent_dim == p.autoencoders["small_again"].latent_dim == 4
    assert p.attack.eps.on == p.tangent.tol == 3.0


# --------------------------------------------------------------------------- 2. nesting depth

@COMMANDS
def test_deep_nesting_exits_2(command: str, tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "x: " + "[" * 5000 + "]" * 5000 + "\n")
    refused([command, str(path)], f"{path}:7:", f"nesting deeper than {MAX_DEPTH} levels")


def test_nesting_built_by_aliases_is_bounded_too() -> None:
    # Each anchor nests 60 deep as written; the second nests the first inside it.
    text = MINIMAL + "a: &a " + "[" * 60 + "1" + "]" * 60 + "\n" \
        + "b: " + "[" * 60 + "*a" + "]" * 60 + "\n"
    (issue,) = issues_of(text)
    assert issue.line == 8 and f"nesting deeper than {MAX_DEPTH} levels" in issue.message


# --------------------------------------------------------------------------- 3. bytes, characters

@COMMANDS
def test_random_bytes_exit_2_as_not_utf8(command: str, tmp_path: Path) -> None:
    noise = random.Random(0).randbytes(2048)
    path = write(tmp_path, noise)
    with pytest.raises(UnicodeDecodeError) as info:
        noise.decode("utf-8")
    out = refused([command, str(path)], f"{path}:",
                  f"not UTF-8 text (invalid byte 0x{noise[info.value.start]:02x} "
                  f"at offset {info.value.start})")
    assert "--seeds" not in out  # `run` blamed the seeds for any ValueError


def test_control_character_names_its_line() -> None:
    (issue,) = issues_of(MINIMAL + 'description: "bell \x07"\n')
    assert issue.line == 7 and "U+0007" in issue.message


def test_integer_too_long_to_read_names_its_line() -> None:
    (issue,) = issues_of(MINIMAL + "seeds: [" + "1" * 5000 + "]\n")
    assert (issue.line, issue.path) == (7, "seeds.0") and "cannot read the value" in issue.message


# --------------------------------------------------------------------------- 4. NaN and infinities

@pytest.mark.parametrize(("line", "path"), [
    ("attack: {eps: {plain: .nan, on: 1, off: 1}}", "attack.eps.plain"),
    ("stats: {alpha: .nan}", "stats.alpha"),
    ("tangent: {rank_tol: .inf}", "tangent.rank_tol"),
    ("defense: {step: .nan}", "defense.step"),
    ("claims: [zp.not_below_random: {margin: .inf}]", "claims.0.zp.not_below_random.margin"),
])
def test_nan_and_inf_are_validation_issues(line: str, path: str) -> None:
    # NaN compares false with everything, so range checks alone (`gt=0`) let it through.
    text = MINIMAL.replace("claims:\n  - dmm.perpendicular: {null: beta}\n", "") \
        if line.startswith("claims") else MINIMAL
    (issue,) = issues_of(text + line + "\n")
    assert "finite number" in issue.message and issue.path == path
    assert issue.line == len(text.splitlines()) + 1


def test_nan_in_dataset_pixel_range_is_an_issue() -> None:
    (issue,) = issues_of(MINIMAL.replace("{name: digits}", "{name: digits, pixel_range: [-.inf, 1]}"))
    assert (issue.line, issue.path) == (2, "dataset.pixel_range.0")


@COMMANDS
def test_nan_budget_exits_2(command: str, tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "attack: {eps: .nan}\n")
    out = refused([command, str(path)], f"{path}:7: attack.eps.on: Input should be a finite number")
    assert out.count(f"{path}:7:") == 3  # one line per mode


# --------------------------------------------------------------------------- 5. --set keys

def test_set_values_read_keys_as_written() -> None:
    assert parse_overrides(["attack.eps={plain: 1, on: 2, off: 3}", "x={null: 1}"]) == [
        ("attack.eps", {"plain": 1, "on": 2, "off": 3}), ("x", {"null": 1})]
    p = load_protocol_text(MINIMAL, overrides=("attack.eps={plain: 1, on: 2, off: 3}",))
    assert (p.attack.eps.plain, p.attack.eps.on, p.attack.eps.off) == (1.0, 2.0, 3.0)


def test_set_value_refused_like_a_file() -> None:
    with pytest.raises(ProtocolError) as info:
        parse_overrides(["attack.eps={on: 1, on: 2}"])
    (issue,) = info.value.issues
    assert issue.file == "--set" and issue.path == "attack.eps" and "duplicate key" in issue.message
    start = time.perf_counter()
    with pytest.raises(ProtocolError, match="aliases"):
        parse_overrides(["description=" + BOMB.replace("\n", ", ").join("{}")])
    assert time.perf_counter() - start < 2.0


def test_set_mapping_with_on_off_keys_validates(tmp_path: Path, computed: list[Any]) -> None:
    path = write(tmp_path, MINIMAL)
    override = ["--set", "attack.eps={plain: 1, on: 2, off: 3}"]
    result = runner.invoke(app, ["validate", str(path), *override])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["run", str(path), *override])
    assert isinstance(result.exception, Reached), result.output
    assert computed[0][0].attack.eps.on == 2.0


# --------------------------------------------------------------------------- 6. --seeds

def test_parse_seeds_is_linear_and_bounded() -> None:
    start = time.perf_counter()
    assert parse_seeds(f"0-{MAX_SEEDS - 1}") == tuple(range(MAX_SEEDS))
    with pytest.raises(ValueError, match=f"at most {MAX_SEEDS:,}"):
        parse_seeds("0-99999999")
    with pytest.raises(ValueError, match=f"at most {MAX_SEEDS:,}"):
        parse_seeds(f"0-{MAX_SEEDS - 1},{MAX_SEEDS}")
    with pytest.raises(ValueError, match=r"repeated .*\[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, \.\.\.\]"):
        parse_seeds("0-4999,0-4999")
    assert time.perf_counter() - start < 2.0


@pytest.mark.parametrize(("spec", "message"), [
    ("", "no seeds given"), ("  ", "no seeds given"), ("0,,1", "empty seed"), ("0,1,", "empty seed"),
    ("-1", "bad seed"), ("1" * 5000, "characters"),
])
def test_parse_seeds_refuses_empty_and_bad_parts(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        parse_seeds(spec)
    assert len(str(info.value)) < 200  # quotes the input cut short


@pytest.mark.parametrize("command", ["train", "run"])
@pytest.mark.parametrize(("spec", "message"), [
    ("", "no seeds given"), ("0,,1", "empty seed"), ("0-99999999", "too many seeds"),
])
def test_bad_seeds_exit_2_before_compute(command: str, spec: str, message: str, tmp_path: Path,
                                         computed: list[Any]) -> None:
    path = write(tmp_path, MINIMAL)
    start = time.perf_counter()
    refused([command, str(path), "--seeds", spec], f"--seeds: {message}")
    assert time.perf_counter() - start < 2.0 and not computed


def test_bad_seeds_and_bad_protocol_are_both_reported(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.replace("latent_dim", "latnet_dim"))
    refused(["run", str(path), "--seeds", "0,,1"], f"{path}:4:", "--seeds: empty seed")


def test_protocol_with_too_many_seeds_is_refused_at_once() -> None:
    start = time.perf_counter()
    # One more than allowed (a quadratic duplicate check took 20 s for 50,000).
    (issue,) = issues_of(MINIMAL + f"seeds: [{', '.join(map(str, range(MAX_SEEDS + 1)))}]\n")
    assert time.perf_counter() - start < 2.0
    assert (issue.line, issue.path) == (7, "seeds") and f"at most {MAX_SEEDS}" in issue.message


# --------------------------------------------------------------------------- 7. executor options

@pytest.mark.parametrize("executor", [["--executor", "local"], ["--executor", "processes"],
                                      ["--set", "executor=processes"], []])
def test_address_without_ray_exits_2_before_compute(executor: list[str], tmp_path: Path,
                                                    computed: list[Any]) -> None:
    path = write(tmp_path, MINIMAL)
    refused(["run", str(path), *executor, "--address", "1.2.3.4:6379"],
            "--address 1.2.3.4:6379", "ray")
    assert not computed


def test_address_with_ray_reaches_compute(tmp_path: Path, computed: list[Any]) -> None:
    path = write(tmp_path, MINIMAL + "executor: ray\n")
    result = runner.invoke(app, ["run", str(path), "--address", "1.2.3.4:6379"])
    assert isinstance(result.exception, Reached), result.output
    assert computed[0][1]["address"] == "1.2.3.4:6379"


def test_check_executor_options() -> None:
    check_executor_options("ray", "1.2.3.4:6379")
    check_executor_options("local", None)
    with pytest.raises(Exception) as info:  # typer.Exit(2)
        check_executor_options("local", "1.2.3.4:6379")
    assert getattr(info.value, "exit_code", None) == 2


@pytest.mark.parametrize("kind", ["device", "fifo", "folder", "too_large"])
def test_protocol_paths_that_are_not_small_regular_files_exit_2_at_once(
        kind: str, tmp_path: Path) -> None:
    import os

    from dimple_stats.protocol.loader import MAX_PROTOCOL_BYTES

    if kind == "device":
        path = Path("/dev/zero")  # read whole, it would fill the memory
        if not path.exists():
            pytest.skip("no /dev/zero")
    elif kind == "fifo":
        path = tmp_path / "p.yaml"
        os.mkfifo(path)  # no writer: a plain read blocks forever
    elif kind == "folder":
        path = tmp_path
    else:
        path = write(tmp_path, "# " + "x" * MAX_PROTOCOL_BYTES + "\n" + MINIMAL)
    result = runner.invoke(app, ["validate", str(path)])  # returns at all: no hang
    assert result.exit_code == 2, result.output
    assert ("not a regular file" if kind != "too_large" else "larger than") in result.output


# --- issue 32 F12: booleans and numbers as written -------------------------------------------

_SMALL = """
name: t
dataset: {name: digits}
autoencoders: {plain: {arch: mlp, latent_dim: 8}}
claims:
  - zp.not_below_random: {margin: 0.1}
seeds: [0]
"""


@pytest.mark.parametrize("override, needle", [
    ("claims.0.zp.not_below_random.margin=true", "a boolean (true/false) where a number"),
    ("stats.alpha=true", "a boolean (true/false) where a number"),
    ("dataset.download=1", "true or false, got 1"),
    ("attack.early_stop=0", "true or false, got 0"),
    ("report.figures=1", "true or false, got 1"),
    ("dataset.download='true'", "true or false, got 'true'"),
    # a quoted number was read as the number (pydantic's lax str -> int)
    ('dataset.eval_samples="12"', "a number, got the text '12'"),
    ("stats.alpha='0.05'", "a number, got the text '0.05'"),
    ('classifier.hidden=["8", 4]', "a number, got the text ['8', 4]"),
])
def test_a_boolean_for_a_number_or_a_number_for_a_boolean_is_refused(override: str,
                                                                     needle: str) -> None:
    found = issues_of(_SMALL, (override,))
    assert any(needle in str(issue) for issue in found), found


def test_booleans_and_numbers_as_written_still_load() -> None:
    protocol = load_protocol_text(_SMALL, overrides=(
        "claims.0.zp.not_below_random.margin=0.05", "dataset.download=false",
        "attack.early_stop=true", "report.figures=false"))
    assert protocol.report.figures is False and protocol.attack.early_stop is True
    written = load_protocol_text(_SMALL, overrides=("dataset.eval_samples=12",
                                                    "stats.alpha=1e-2"))
    assert written.dataset.eval_samples == 12 and written.stats.alpha == 0.01
