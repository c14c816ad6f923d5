"""Text a spreadsheet would run as a formula never reaches `qa_reporting` (OWASP CSV injection)."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from qa_pipeline.domain.redaction import (
    neutralise_formula,
    neutralise_formulas,
    runs_as_formula,
)

ATTACKS = ['=HYPERLINK("http://x","y")', "=cmd|' /C calc'!A0", "+1+1", "@SUM(A1)", "-2+3",
           "  =1+1", "\t=1+1", "\r=1+1", "\n@x", "＝1+1", "－2+3", "-x", "+Plus Ops", "- note", "=", "@"]
KEPT = ["BPO-B Kuala Lumpur", "hate_speech", "A-1234", "HS.1", "-0.5", "+3", "-12 %", "1e-3", "0.95", "",
        "'=already neutralised", "x = 1", "a-b", "  plain", "email: [email]", "→ 5 %"]


@pytest.mark.parametrize("value", ATTACKS)
def test_a_formula_gets_a_leading_apostrophe(value):
    assert runs_as_formula(value)
    assert neutralise_formula(value) == "'" + value
    assert neutralise_formula(neutralise_formula(value)) == "'" + value  # idempotent


@pytest.mark.parametrize("value", KEPT)
def test_ordinary_text_and_plain_numbers_are_kept(value):
    assert not runs_as_formula(value)
    assert neutralise_formula(value) == value


@pytest.mark.parametrize("value", [None, np.nan, -2, -0.5, 3, True, pd.Timestamp("2026-04-01")])
def test_values_that_are_not_text_are_kept(value):
    assert neutralise_formula(value) is value


def test_a_frame_changes_only_its_text_values_that_would_run():
    frame = pd.DataFrame({
        "segment": pd.Series(["=HYPERLINK(\"http://x\",\"y\")", "BPO-B Kuala Lumpur", None, "-0.5"], dtype="str"),
        "note": pd.Series(["@SUM(A1)", 12, None, "ok"], dtype=object),  # mixed object column
        "delta": [-0.5, 0.1, np.nan, -2.0],
        "audits": [-1, 2, 3, 4],
        "month": pd.to_datetime(["2026-04-01"] * 4),
        "flag": [True, False, True, False],
    })
    before = frame.copy()
    out = neutralise_formulas(frame)
    pd.testing.assert_frame_equal(frame, before)  # the input is not modified
    assert out["segment"].tolist()[:2] == ["'=HYPERLINK(\"http://x\",\"y\")", "BPO-B Kuala Lumpur"]
    assert pd.isna(out["segment"].iloc[2]) and out["segment"].iloc[3] == "-0.5"
    assert out["note"].tolist()[:2] == ["'@SUM(A1)", 12] and out["note"].iloc[3] == "ok"
    assert out.dtypes.equals(frame.dtypes)
    for column in ("delta", "audits", "month", "flag"):
        pd.testing.assert_series_equal(out[column], frame[column])
    plain = frame.iloc[[1]]
    assert neutralise_formulas(plain) is plain  # nothing to do: the same frame


def _frame(table: sa.Table, text: str) -> pd.DataFrame:
    """One row of `table` whose every text column holds `text`."""
    row = {}
    for c in table.columns:
        if isinstance(c.type, sa.Text | sa.String):
            row[c.name] = text
        elif isinstance(c.type, sa.Boolean):
            row[c.name] = False
        elif isinstance(c.type, sa.DateTime):
            row[c.name] = pd.Timestamp("2026-04-02T00:00:00Z")
        elif isinstance(c.type, sa.Date):
            row[c.name] = pd.Timestamp("2026-04-01")
        else:
            row[c.name] = -1
    return pd.DataFrame([row])


def test_attempt_write_neutralises_qa_reporting_tables_and_leaves_qa_core_as_it_is(tmp_path):
    from qa_pipeline.resources.staging import Attempt
    from qa_pipeline.resources.warehouse import Warehouse, dispose_engines
    from qa_pipeline.schemas import warehouse as wh

    warehouse = Warehouse(url=f"duckdb:///{tmp_path}/wh.duckdb")
    attempt = Attempt(warehouse, date(2026, 4, 1), "formula-run-1")
    formula = "=cmd|' /C calc'!A0"
    try:
        attempt.write("qa_reporting.rca_pareto", _frame(wh.table("qa_reporting.rca_pareto"), formula))
        attempt.write("qa_core.calibration_rater_scores",
                      _frame(wh.table("qa_core.calibration_rater_scores"), formula))
        reporting = warehouse.execute(attempt.staged("qa_reporting.rca_pareto"))
        core = warehouse.execute(attempt.staged("qa_core.calibration_rater_scores"))
    finally:
        dispose_engines()
    assert reporting["root_cause"].tolist() == ["'" + formula] and reporting["scope"].tolist() == ["'" + formula]
    assert reporting["errors"].tolist() == [-1]  # numbers are not text
    assert core["rater_id"].tolist() == [formula]  # qa_core: row-level data, kept as delivered


def test_categorical_text_is_neutralised_too():
    frame = pd.DataFrame({"segment": pd.Categorical(["+Plus Ops", "Austin", "+Plus Ops"])})
    assert neutralise_formulas(frame)["segment"].tolist() == ["'+Plus Ops", "Austin", "'+Plus Ops"]
