"""Protocol loading: strict keys, duplicate keys, file/line/key errors, overrides, hashing."""

from __future__ import annotations

import math
from pathlib import Path

import pydantic
import pytest

from dimple_stats.protocol import Protocol, ProtocolError, load_protocol, load_protocol_text

ROOT = Path(__file__).resolve().parents[2]
PROTOCOLS = sorted((ROOT / "protocols").glob("*.yaml"))

MINIMAL = """\
name: t
dataset: {name: digits}
autoencoders:
  plain: {arch: mlp, latent_dim: 8}
claims:
  - dmm.perpendicular: {null: beta}
"""


def issues_of(text: str, overrides: tuple[str, ...] = ()) -> list:
    with pytest.raises(ProtocolError) as info:
        load_protocol_text(text, file="p.yaml", overrides=overrides)
    return info.value.issues


def test_shipped_protocols_are_all_present() -> None:
    names = {p.stem for p in PROTOCOLS}
    assert {
        "quickstart", "synthetic_known_manifold", "mnist_offmanifold", "cifar10_offmanifold",
        "imagenet_offmanifold", "plain_vs_isometric", "zhao_pushpita",
    } <= names


def _shipped(path: Path) -> Protocol:
    """A shipped protocol, its checkpoint files not required (the weights are the user's)."""
    return load_protocol_text(path.read_text(encoding="utf-8"), file=str(path))


@pytest.mark.parametrize("path", PROTOCOLS, ids=lambda p: p.stem)
def test_shipped_protocol_validates(path: Path) -> None:
    protocol = _shipped(path)
    assert protocol.name == path.stem
    assert protocol.claims and protocol.autoencoders
    if protocol.classifier.checkpoint is None and not any(
            ae.checkpoint for ae in protocol.autoencoders.values()):
        assert load_protocol(path) == protocol  # and as `validate` reads it


def test_a_missing_checkpoint_is_refused_where_the_file_is_read(tmp_path: Path) -> None:
    # `validate` and `run` read the file: a run would fail only after loading the data.
    with pytest.raises(ProtocolError) as info:
        load_protocol(ROOT / "protocols" / "imagenet_offmanifold.yaml")
    (issue,) = info.value.issues
    assert issue.path == "classifier.checkpoint" and "does not exist" in issue.message
    (tmp_path / "w.pt").write_bytes(b"weights")
    (tmp_path / "p.yaml").write_text(MINIMAL.replace("claims:", "classifier: {checkpoint: "
                                                     f"{tmp_path / 'w.pt'}}}\nclaims:"))
    assert load_protocol(tmp_path / "p.yaml").classifier.checkpoint == str(tmp_path / "w.pt")


def test_reference_hyperparameters_in_mnist_protocol() -> None:
    # docs/references.md (reproduction): MNIST L2 eps 2/10/10, steps 0.02/0.2/0.02, k = 16, range [-1, 1].
    # The plain attack deliberately gets the on/off budget (eps 10, 1000 steps): the
    # reproduction's eps 2 with 50 steps of 0.02 cannot travel past L2 = 1 and censored 91% of
    # plain attacks on the MNIST sample (see the protocol's comment).
    p = load_protocol(ROOT / "protocols" / "mnist_offmanifold.yaml")
    assert (p.attack.eps.plain, p.attack.eps.on, p.attack.eps.off) == (10.0, 10.0, 10.0)
    # The on step is the latent attack's (attack.on_manifold latent, the default): image-space
    # steps of 0.02 like the others; the reproduction's 0.2 was for its tangent-plane attack.
    assert p.attack.on_manifold == "latent" and p.attack.base == "manifold"
    assert (p.attack.step.plain, p.attack.step.on, p.attack.step.off) == (0.02, 0.02, 0.02)
    assert (p.attack.steps.plain, p.attack.steps.on, p.attack.steps.off) == (1000, 1000, 1000)
    assert p.autoencoders["plain"].latent_dim == 16
    assert p.dataset.pixel_range == (-1.0, 1.0)
    assert p.classifier.hidden == (256, 256) and p.classifier.dropout == 0.2


def test_minimal_protocol_fills_defaults_and_reads_option_names_as_written() -> None:
    p = load_protocol_text(MINIMAL)
    # `null`, `on` and `off` are YAML 1.1 null/booleans; as keys they must stay names.
    assert p.claims[0].id == "dmm.perpendicular"
    assert p.claims[0].options.null == "beta"
    q = load_protocol_text(MINIMAL + "attack: {eps: {plain: 1, on: 5, off: 6}, step: 1e-3}\n")
    assert (q.attack.eps.on, q.attack.eps.off) == (5.0, 6.0)
    assert q.attack.step.plain == q.attack.step.off == 1e-3


def test_bare_claim_id_and_null_options_mean_defaults() -> None:
    p = load_protocol_text(MINIMAL + "  - dmm.norm_asymmetry\n  - dmm.off_equals_unrestricted:\n")
    assert p.claim_ids == ("dmm.perpendicular", "dmm.norm_asymmetry", "dmm.off_equals_unrestricted")
    assert math.isclose(p.claims[2].options.margin, math.log(1.1))


def test_misspelt_key_names_line_path_and_suggestion() -> None:
    text = MINIMAL.replace("latent_dim: 8", "latnet_dim: 8")
    (issue,) = issues_of(text)
    assert issue.line == 4
    assert issue.path == "autoencoders.plain.latnet_dim"
    assert issue.suggestion == "latent_dim"
    assert "latent_dim" in issue.allowed
    assert issue.format().startswith("p.yaml:4: autoencoders.plain.latnet_dim: unknown key")


def test_duplicate_key_is_an_error_naming_both_lines() -> None:
    text = MINIMAL.replace("  plain: {arch: mlp, latent_dim: 8}\n",
                           "  plain: {arch: mlp, latent_dim: 8}\n  plain: {arch: conv, latent_dim: 4}\n")
    (issue,) = issues_of(text)
    assert issue.line == 5 and issue.path == "autoencoders.plain"
    assert "duplicate key" in issue.message and "line 4" in issue.message


def test_duplicate_key_inside_flow_mapping() -> None:
    (issue,) = issues_of(MINIMAL.replace("{name: digits}", "{name: digits, name: mnist}"))
    assert issue.line == 2 and issue.path == "dataset.name"


def test_unknown_dataset_lists_allowed_and_suggests() -> None:
    (issue,) = issues_of(MINIMAL.replace("digits", "digts"))
    assert issue.line == 2 and issue.path == "dataset.name"
    assert issue.suggestion == "digits"
    assert {"synthetic", "mnist", "cifar10", "imagefolder"} <= set(issue.allowed)


@pytest.mark.parametrize(("line", "path", "suggestion"), [
    ("executor: proceses", "executor", "processes"),
    ("report: {formats: [csv, latx]}", "report.formats.1", "latex"),
    ("attack: {method: pdg}", "attack.method", "pgd"),
])
def test_registered_names_are_checked_with_did_you_mean(line: str, path: str,
                                                        suggestion: str) -> None:
    (issue,) = issues_of(MINIMAL + line + "\n")
    assert issue.line == 7 and issue.path == path
    assert f"did you mean '{suggestion}'" in issue.message


def test_unknown_claim_id_suggests_nearest() -> None:
    (issue,) = issues_of(MINIMAL.replace("dmm.perpendicular", "dmm.perpendiculr"))
    assert issue.line == 6 and issue.suggestion == "dmm.perpendicular"
    assert "zp.not_below_random" in issue.allowed


def test_bad_claim_option_value_lists_allowed() -> None:
    (issue,) = issues_of(MINIMAL.replace("null: beta", "null: bta"))
    assert issue.path == "claims.0.dmm.perpendicular.null"
    assert issue.allowed == ("random_subspace", "other_image", "beta", "pca", "data_random")
    assert issue.suggestion == "beta"


def test_wrong_regulariser_kind_inside_dict_of_models() -> None:
    text = MINIMAL.replace("latent_dim: 8}", "latent_dim: 8, regulariser: {kind: isometrc}}")
    (issue,) = issues_of(text)
    assert issue.path == "autoencoders.plain.regulariser.kind"
    assert issue.suggestion == "isometric" and issue.line == 4


def test_every_error_is_reported_in_line_order() -> None:
    text = (MINIMAL.replace("digits", "digts").replace("latent_dim", "latnet_dim")
            + "seeds: [0, 0]\nattack: {norm: l3}\n")
    issues = issues_of(text)
    paths = [i.path for i in issues]
    assert paths == ["dataset.name", "autoencoders.plain.latnet_dim", "seeds", "attack.norm"]
    assert [i.line for i in issues] == [2, 4, 7, 8]


def test_yaml_syntax_error_has_a_line() -> None:
    (issue,) = issues_of(MINIMAL + "seeds: [0, 1\n")
    assert "invalid YAML" in issue.message and issue.line is not None and issue.line >= 7


@pytest.mark.parametrize("text, fragment", [
    ("", "empty"),
    ("- 1\n- 2\n", "mapping"),
])
def test_empty_or_non_mapping_protocol(text: str, fragment: str) -> None:
    (issue,) = issues_of(text)
    assert fragment in issue.message


def test_cross_section_checks_point_at_the_key() -> None:
    text = MINIMAL.replace("{arch: mlp, latent_dim: 8}", "{arch: oracle}")
    (issue,) = issues_of(text)
    assert issue.path == "autoencoders.plain.arch" and issue.line == 4
    assert "synthetic" in issue.message
    text = MINIMAL + "  - iso.plain_vs_isometric: {plain: plian}\n"
    issues = issues_of(text)
    assert {i.path for i in issues} == {"claims.1.iso.plain_vs_isometric.plain",
                                        "claims.1.iso.plain_vs_isometric.isometric"}
    assert any("did you mean 'plain'" in i.message for i in issues)


def test_value_constraints() -> None:
    assert issues_of(MINIMAL.replace("{name: digits}", "{name: digits, pixel_range: [1, -1]}"))
    assert issues_of(MINIMAL + "attack: {eps: -1}\n")
    assert issues_of(MINIMAL + "device: gpu\n")
    assert issues_of(MINIMAL.replace("{name: digits}", "{name: digits, classes: [0, 1], "
                                     "eval_classes: [2]}"))


def test_overrides_apply_before_validation() -> None:
    p = load_protocol_text(MINIMAL, overrides=[
        "attack.eps=0.5", "seeds=[3, 4]", "claims.0.dmm.perpendicular.null=other_image",
        "autoencoders.plain.latent_dim=3",
    ])
    assert (p.attack.eps.plain, p.attack.eps.on, p.attack.eps.off) == (0.5, 0.5, 0.5)
    assert p.seeds == (3, 4)
    assert p.claims[0].options.null == "other_image"
    assert p.autoencoders["plain"].latent_dim == 3


def test_bad_override_is_attributed_to_the_override() -> None:
    (issue,) = issues_of(MINIMAL, overrides=("autoencoders.plain.latnet_dim=3",))
    assert issue.line is None and issue.origin == "--set autoencoders.plain.latnet_dim"
    assert issue.suggestion == "latent_dim"
    (issue,) = issues_of(MINIMAL, overrides=("no_equals_sign",))
    assert "key.path=value" in issue.message


def test_hash_ignores_key_order_and_stated_defaults_but_not_values() -> None:
    base = load_protocol_text(MINIMAL).hash
    reordered = load_protocol_text(
        "claims:\n  - dmm.perpendicular: {null: beta}\nautoencoders:\n"
        "  plain: {latent_dim: 8, arch: mlp}\ndataset: {name: digits}\nname: t\n"
    ).hash
    explicit_default = load_protocol_text(MINIMAL + "stats: {alpha: 0.05, correction: holm}\n").hash
    changed = load_protocol_text(MINIMAL, overrides=["stats.alpha=0.01"]).hash
    assert base == reordered == explicit_default
    assert changed != base
    assert len(base) == 16 and int(base, 16) >= 0


def test_protocol_is_frozen() -> None:
    p = load_protocol_text(MINIMAL)
    with pytest.raises(pydantic.ValidationError):
        p.seeds = (9,)  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        p.attack.norm = "linf"  # type: ignore[misc]


def test_json_schema_covers_datasets_and_claims() -> None:
    schema = Protocol.model_json_schema(by_alias=True)
    text = str(schema)
    for name in ("synthetic", "linear_subspace", "cifar10", "imagefolder", "dmm.perpendicular",
                 "iso.defense", "latent_dim"):
        assert name in text
    assert schema["additionalProperties"] is False


@pytest.mark.parametrize("path", PROTOCOLS, ids=lambda p: p.stem)
def test_protocol_dump_reads_back_to_the_same_protocol(path: Path) -> None:
    # Manifests store the validated protocol as JSON; it must validate back to itself.
    p = _shipped(path)
    dumped = p.model_dump(mode="json", by_alias=True)
    assert all(len(item) == 1 for item in dumped["claims"])
    again = Protocol.model_validate(dumped)
    assert again == p and again.hash == p.hash


def test_data_shaped_nulls_of_the_gradient_claim_are_refused_at_their_key() -> None:
    (issue,) = issues_of(MINIMAL.replace("dmm.perpendicular: {null: beta}",
                                         "dmm.gradient_perpendicular: {null: pca}"))
    assert issue.path == "claims.0.dmm.gradient_perpendicular.null"
    assert "attack perturbation only" in issue.message


@pytest.mark.parametrize("override, key", [
    ("dataset.eval_samples=true", "eval_samples"),        # lax pydantic read it as 1 image
    ("autoencoders.plain.hidden=[64, false]", "hidden"),  # a zero-width layer
    ("seeds=[true]", "seeds"),
])
def test_a_boolean_where_a_number_belongs_is_refused(override: str, key: str) -> None:
    (issue,) = issues_of(MINIMAL, overrides=(override,))
    assert "a boolean" in issue.message and issue.path.endswith(key)
    assert issue.origin is not None and issue.line is None  # the --set, not a line of the file
    # where a boolean belongs it is still read
    assert load_protocol_text(MINIMAL, overrides=("attack.early_stop=false",)).attack.early_stop \
        is False


@pytest.mark.parametrize("name", ["x\n", "a" * 101, "a/b", "../up"])
def test_names_that_are_not_folder_safe_identifiers_are_refused(name: str) -> None:
    (issue,) = issues_of(MINIMAL.replace("name: t", f"name: {name!r}".replace("'", '"')
                                         .replace("\n", "\\n")))
    assert issue.line == 1 and "name must be" in issue.message
    load_protocol_text(MINIMAL.replace("name: t", "name: " + "a" * 100))  # 100 is fine


def test_a_claim_listed_twice_is_an_error_not_deduplicated() -> None:
    (issue,) = issues_of(MINIMAL + "  - dmm.norm_asymmetry\n  - dmm.perpendicular: {null: beta}\n")
    assert "listed twice" in issue.message and "items 1 and 3" in issue.message
    # the same claim against another null is another test
    load_protocol_text(MINIMAL + "  - dmm.perpendicular: {null: random_subspace}\n")


@pytest.mark.parametrize("override, needle", [
    ("dataset.classes=[11]", "[11] are not classes of digits (ids 0-9)"),
    ("dataset.classes=[-1, 2]", "class ids are 0 or more"),
    ("dataset.classes=[]", "an empty class list"),
    ("autoencoders.plain.hidden=[-5]", "greater than or equal to 1"),
    ("autoencoders.plain.hidden=[0]", "greater than or equal to 1"),
    ("autoencoders.plain.hidden=[1000000000000]", "less than or equal to 65536"),
    # each width allowed, together 34 GB of weights (the first layer reads 64 pixels)
    ("classifier.hidden=[65536, 65536, 65536]", "make at least 8,594,128,896 weights"),
    ("autoencoders.plain.hidden=[16384, 16384]", "make at least 269,484,032 weights"),
    ("classifier.hidden=[0, 8]", "greater than or equal to 1"),
    ("autoencoders.plain.latent_dim=65", "must be smaller than the digits image dimension 64"),
    ("dataset.train_samples=1", "greater than or equal to 2"),
    ("dataset.train_samples=5", "cannot cover the 10 classes in use"),
    ("autoencoders.plain.train_classes=[12]", "[12] are not classes of digits"),
])
def test_what_a_run_would_refuse_late_validate_refuses_at_once(override: str,
                                                                  needle: str) -> None:
    issues = issues_of(MINIMAL, overrides=(override,))
    assert any(needle in issue.message for issue in issues), [i.message for i in issues]
