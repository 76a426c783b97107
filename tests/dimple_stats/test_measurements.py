"""The measurement-table contract: schema, validation messages, parquet round trips."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from dimple_stats.measurements import (
    KEYS,
    SCHEMAS,
    TABLE_FILES,
    MeasurementsError,
    check_ranges,
    describe,
    read_measurements,
    validate,
    write_measurements,
)


def test_schema_lists_the_contract_columns() -> None:
    assert list(SCHEMAS["measurements"]) == [
        "seed", "autoencoder", "sample", "image_id", "label", "n", "k", "recon_err", "base_err",
        "base_converged", "base_ok", "norm_plain", "success_plain", "eps_plain", "norm_on",
        "success_on", "eps_on", "norm_off", "success_off", "eps_off", "in_T_on", "in_T_off",
        "measurable_on", "reach_on", "path_on", "r_T", "r_R",
        "r_Tother", "r_PCA", "r_Rdata", "r_T_grad", "r_T_grad_other", "iso_cond"]
    assert list(SCHEMAS["defense"]) == ["seed", "defense", "eps", "sample", "robust_correct",
                                        "clean_correct"]
    assert set(SCHEMAS["training"]) == {"seed", "epoch", "sample", "norm_plain", "success_plain",
                                        "r_T", "r_R", "n", "k"}
    assert list(SCHEMAS["adv_training"]) == ["seed", "classifier", "sample", "r_T", "norm_plain",
                                             "success_plain"]
    assert SCHEMAS["classifier_pairs"] == {**SCHEMAS["measurements"],
                                           "classifier": SCHEMAS["classifier_pairs"]["classifier"]}
    assert TABLE_FILES["measurements"] == "measurements.parquet"
    text = describe()
    for kind, schema in SCHEMAS.items():
        assert TABLE_FILES[kind] in text and all(f"  {col} " in text for col in schema)


def test_full_table_validates(synthetic: SimpleNamespace) -> None:
    df = synthetic.measurements()
    out = validate(df)
    assert out.shape == df.shape
    assert out["success_plain"].dtype == bool and out["n"].dtype == "int64"


def test_every_problem_is_named_at_once(synthetic: SimpleNamespace) -> None:
    df = synthetic.measurements().drop(columns=["r_R", "iso_cond"]).rename(
        columns={"r_Tother": "r_T_other"})
    df["k"] = df["k"].astype(float) + 0.5
    df["success_on"] = df["success_on"].astype(float)
    with pytest.raises(MeasurementsError) as err:
        validate(df)
    msg = str(err.value)
    assert msg.startswith("measurements table: ")
    for part in ("missing column 'r_R'", "missing column 'iso_cond'",
                 "missing column 'r_Tother' (did you mean 'r_T_other'?)",
                 "column 'k' must be int, got float64",
                 "column 'success_on' must be bool, got float64"):
        assert part in msg


def test_lenient_where_unambiguous(synthetic: SimpleNamespace) -> None:
    df = synthetic.measurements()
    df["success_plain"] = df["success_plain"].astype(int)  # 0/1 integers are booleans
    df["r_T"] = 1  # an int column is a valid float column
    out = validate(df)
    assert out["success_plain"].dtype == bool and out["r_T"].dtype == "float64"
    df.loc[0, "success_plain"] = 2
    with pytest.raises(MeasurementsError, match="'success_plain' must be bool"):
        validate(df)


def test_repeated_keys_are_refused(synthetic: SimpleNamespace) -> None:
    df = synthetic.measurements()
    key = r"2 rows repeat the key \(seed, autoencoder, sample\)"
    with pytest.raises(MeasurementsError, match=key):
        validate(pd.concat([df, df.iloc[[5]]]))
    train = synthetic.training()
    both = pd.concat([train.assign(autoencoder="a"), train.assign(autoencoder="b")])
    assert len(validate(both, "training")) == 2 * len(train)  # autoencoder joins the key
    with pytest.raises(MeasurementsError, match="repeat the key"):
        validate(pd.concat([train, train]), "training")


def test_unknown_kind_and_non_frame() -> None:
    with pytest.raises(MeasurementsError, match="did you mean 'defense'"):
        validate(pd.DataFrame(), "defence")  # type: ignore[arg-type]
    with pytest.raises(MeasurementsError, match="expected a pandas DataFrame"):
        validate([1, 2])  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", list(SCHEMAS))
def test_parquet_round_trip(kind: str, tmp_path: Path, synthetic: SimpleNamespace) -> None:
    df = getattr(synthetic, kind)()
    path = write_measurements(df, tmp_path / TABLE_FILES[kind], kind)  # type: ignore[arg-type]
    back = read_measurements(path, kind)  # type: ignore[arg-type]
    pd.testing.assert_frame_equal(back, validate(df, kind), check_dtype=True)  # type: ignore[arg-type]
    assert set(KEYS[kind]) <= set(back.columns)
    assert not list(tmp_path.glob(".*.tmp"))


def test_read_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(MeasurementsError, match="no such file"):
        read_measurements(tmp_path / "nope.parquet")
    bad = tmp_path / "bad.parquet"
    bad.write_text("not parquet")
    with pytest.raises(MeasurementsError, match="cannot read .*bad.parquet"):
        read_measurements(bad)


@pytest.mark.parametrize("column, value, message", [
    ("r_T", 20.0, "column 'r_T' must be in [0, 1]"),    # shares are in [0, 1]
    ("r_T", -0.5, "column 'r_T' must be in [0, 1]"),
    ("r_T", float("inf"), "column 'r_T' must be in [0, 1]"),
    ("norm_plain", -1.0, "column 'norm_plain' must be >= 0"),
    ("norm_off", float("inf"), "column 'norm_off' must be >= 0"),
])
def test_impossible_values_are_refused_naming_column_and_row(
        column: str, value: float, message: str, synthetic: SimpleNamespace) -> None:
    table = synthetic.measurements()
    table.loc[3, column] = value
    validate(table)  # in memory (simulations) any float goes; read from a file it is damage
    with pytest.raises(MeasurementsError) as info:
        check_ranges(validate(table))
    text = str(info.value)
    assert message in text and "first at row 3" in text and "sample" in text


def test_nan_and_rounding_at_the_ends_stay_allowed(synthetic: SimpleNamespace) -> None:
    table = synthetic.measurements()
    table.loc[0, "r_T"] = float("nan")       # not measured
    table.loc[1, "r_T"] = 1.0 + 1e-7          # a float32 share at 1
    table.loc[2, "norm_on"] = float("nan")   # not measurable
    check_ranges(validate(table))


def test_a_table_read_from_a_file_is_range_checked_naming_the_file(
        synthetic: SimpleNamespace, tmp_path: Path) -> None:
    table = synthetic.measurements()
    table.loc[0, "r_T"] = 20.0
    path = tmp_path / "measurements.parquet"
    table.to_parquet(path)
    with pytest.raises(MeasurementsError) as info:
        read_measurements(path)
    assert str(path) in str(info.value) and "column 'r_T' must be in [0, 1]" in str(info.value)
