"""`qa_reporting` holds no person identifier (contract §5): moderator, auditor, rater and reviewer
ids live in `qa_core` only. The scan of a real pipeline run is in test_reporting.py (it reuses that
module's run of the sample); the scanner itself and the split of the figures and findings are here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from qa_pipeline.domain import disputes, recommendations
from qa_pipeline.resources.warehouse import Warehouse
from qa_pipeline.schemas import warehouse as wh

PERSON_COLUMNS = ("moderator_id", "auditor_id", "rater_id", "reviewer_id")
"""The raw inputs' columns that hold a person's id (roster, audits, calibration, experiments, …)."""


def person_ids(raw_dir: Path) -> set[str]:
    """Every person id of every raw input: the values of any column named in PERSON_COLUMNS, read
    with the csv module / pyarrow (no code of the pipeline)."""
    import csv

    import pyarrow.parquet as pq

    ids: set[str] = set()
    for path in sorted(Path(raw_dir).rglob("*")):
        if path.suffix == ".csv":
            with path.open(newline="", encoding="utf-8", errors="replace") as fh:
                for row in csv.DictReader(fh):
                    ids |= {(row.get(c) or "").strip() for c in PERSON_COLUMNS}
        elif path.suffix == ".parquet":
            table = pq.read_table(path)
            for c in PERSON_COLUMNS:
                if c in table.column_names:
                    ids |= {str(v).strip() for v in table.column(c).to_pylist() if v is not None}
    return ids - {""}


def schema_tables(warehouse: Warehouse, schema: str) -> dict[str, pd.DataFrame]:
    """Every table the warehouse has in `schema` (asked of the engine, not of our table list, so a
    table added later is scanned too), as DataFrames."""
    names = sa.inspect(warehouse.engine).get_table_names(schema=schema)
    with warehouse.engine.connect() as conn:
        return {f"{schema}.{n}": pd.read_sql(sa.select(sa.text("*")).select_from(sa.table(n, schema=schema)), conn)
                for n in sorted(names)}


def identifiers_in(tables: dict[str, pd.DataFrame], ids: set[str]) -> list[str]:
    """`table.column: value` for every text value that is a person id or contains one as a whole
    token (`AUD-07` in "AUD-07 flags more errors", not in "AUD-070")."""
    if not ids:
        raise ValueError("no person id to look for: the scan would check nothing")
    token = re.compile(r"(?<![\w-])(?:" + "|".join(re.escape(i) for i in sorted(ids, key=len, reverse=True))
                       + r")(?![\w-])")
    found = []
    for name, frame in tables.items():
        for col in frame.columns:
            values = frame[col].dropna()
            values = values[values.map(lambda v: isinstance(v, str))].unique()
            found += [f"{name}.{col}: {v[:100]!r}" for v in values if v in ids or token.search(v)]
    return found


def test_the_scan_finds_an_id_as_a_value_and_inside_text_but_not_a_longer_id():
    ids = {"AUD-07", "MOD-1001", "R'1"}
    tables = {
        "qa_reporting.a": pd.DataFrame({"segment": ["AUD-07", "all"], "n": [1, 2]}),
        "qa_reporting.b": pd.DataFrame({"finding": ["Pair MOD-1001 with a senior", "MOD-10010 and AUD-070 are other ids",
                                                    "R'1's ratings", None]}),
    }
    assert identifiers_in(tables, ids) == ["qa_reporting.a.segment: 'AUD-07'",
                                           "qa_reporting.b.finding: 'Pair MOD-1001 with a senior'",
                                           "qa_reporting.b.finding: \"R'1's ratings\""]
    with pytest.raises(ValueError, match="check nothing"):
        identifiers_in(tables, set())


def test_person_ids_are_read_from_every_raw_input(tmp_path):
    from qa_pipeline_tests.conftest import write_csv

    write_csv(tmp_path / "roster" / "roster.csv", [{"moderator_id": "MOD-1", "site": "Dublin"}])
    write_csv(tmp_path / "audits" / "2026-01" / "a.csv", [{"audit_id": "A-1", "moderator_id": "MOD-2",
                                                          "auditor_id": "AUD-1"}])
    write_csv(tmp_path / "calibration" / "2026-01" / "ratings.csv", [{"session_id": "S", "rater_id": "AUD-9"}])
    pd.DataFrame({"reviewer_id": ["REV-1", None]}).to_parquet(tmp_path / "reaudits.parquet")
    assert person_ids(tmp_path) == {"MOD-1", "MOD-2", "AUD-1", "AUD-9", "REV-1"}


def test_no_qa_reporting_table_has_a_person_column():
    """By construction: no column of a `qa_reporting` table is a person's id; person-level tables
    are in `qa_core`."""
    people = set(PERSON_COLUMNS) | {"person_id"}
    for table in wh.metadata.tables.values():
        if table.schema == wh.REPORTING:
            assert not people & {c.name for c in table.columns}, table.fullname
    for name in ("auditor_dispute_metrics", "person_recommendations", "auditor_consistency", "moderator_quality"):
        assert wh.metadata.tables[f"{wh.CORE}.{name}"].schema == wh.CORE


def test_dispute_figures_per_auditor_go_to_qa_core_and_the_rest_to_qa_reporting():
    counts = pd.DataFrame([
        ("overall", "all", 10, 4, 4, 2, 1), ("site", "Dublin", 10, 4, 4, 2, 1), ("queue", "spam", 10, 4, 4, 2, 1),
        ("auditor_id", "AUD-2", 3, 1, 1, 0, 0), ("auditor_id", "AUD-1", 7, 3, 2, 2, 1),
    ], columns=["dimension", "segment", "audits", "disputed", "resolved", "overturned", "restated_audits"])
    month = pd.Timestamp("2026-01-01")
    shared = disputes.dispute_metrics(counts, month)
    assert shared.dimension.tolist() == ["overall", "site", "queue"]
    assert not shared.isin(["AUD-1", "AUD-2"]).any().any()
    per = disputes.auditor_dispute_metrics(counts, month)
    assert list(per.columns) == [c.name for c in wh.auditor_dispute_metrics.columns]
    assert per.auditor_id.tolist() == ["AUD-1", "AUD-2"]
    one = per.iloc[0]
    assert (one.audits, one.disputed, one.resolved, one.overturned, one.restated_audits) == (7, 3, 2, 2, 1)
    assert one.dispute_rate == 3 / 7 and one.overturn_rate == 2 / 2  # overturned / resolved (contract §4)


def _person_tables(month) -> recommendations.PersonTables:
    return recommendations.PersonTables(
        month=month,
        moderator_quality=pd.DataFrame([{"moderator_id": "MOD-9", "site": "Dublin", "audits": 200, "errors": 30,
                                         "accuracy": 0.85, "accuracy_ci_low": 0.8, "accuracy_ci_high": 0.89,
                                         "below_target": True}]),
        auditor_consistency=pd.DataFrame([{"auditor_id": "AUD-7", "audits": 300, "flags": 60, "flag_rate": 0.2,
                                           "expected_rate": 0.1, "z_score": 5.8, "drift": True, "disputed": 8,
                                           "overturned": 6}]),
        calibration_rater_scores=pd.DataFrame([{"session_id": "S1", "rater_id": "AUD-3", "cases_rated": 20,
                                                "accuracy_vs_gold": 0.5}]),
        auditor_dispute_metrics=pd.DataFrame([{"auditor_id": "AUD-7", "resolved": 8, "overturned": 6,
                                               "overturn_rate": 0.75}]),
    )


def test_findings_about_a_person_go_to_qa_core_and_never_to_qa_reporting():
    month = pd.Timestamp("2026-01-01")
    th = recommendations.RuleThresholds(target_accuracy=0.95, min_gold_accuracy=0.8)
    people = recommendations.person_recommendations(_person_tables(month), th)
    assert list(people.columns) == [c.name for c in wh.person_recommendations.columns]
    got = {(r.rule, r.owner, r.person_role, r.person_id) for r in people.itertuples()}
    assert got == {("moderator_below_target", "Training", "moderator", "MOD-9"),
                   ("auditor_drift", "Quality", "auditor", "AUD-7"),
                   ("high_overturn_rate", "Quality", "auditor", "AUD-7"),
                   ("rater_below_gold", "Training", "rater", "AUD-3")}
    assert people.set_index("rule").loc["high_overturn_rate", "finding"] == \
        "AUD-7's audits are often overturned on dispute: 75.0%"
    # every rule is either about a person or not, and the two functions refuse the other kind
    assert {r.rule for r in recommendations.PERSON_RULES} == {r for r, *_ in got}
    assert set(recommendations.SEGMENT_RULES) | set(recommendations.PERSON_RULES) == set(recommendations.RULES)
    with pytest.raises(ValueError, match="qa_core.person_recommendations"):
        recommendations.recommendations(None, th, rules=recommendations.RULES)
    with pytest.raises(ValueError, match="about a person only"):
        recommendations.person_recommendations(_person_tables(month), th, rules=recommendations.RULES)
    # the segment rules read MonthTables, which has no person-level table at all
    person_tables = {"moderator_quality", "auditor_consistency", "calibration_rater_scores", "auditor_dispute_metrics"}
    assert not person_tables & set(recommendations.MonthTables.__dataclass_fields__)
