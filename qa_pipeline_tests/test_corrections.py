"""The corrections log (issue 11, part 4): publication history, fingerprints, corrections, report.

The expected corrections are recomputed here from the published `quality_metrics` versions the
test reads between runs (its own melt and comparison in pandas), never from the pipeline's
history or its `domain/corrections.py` functions.
"""

from __future__ import annotations

import csv
import itertools
import json
import uuid
from datetime import date

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from qa_pipeline.domain import corrections as logic
from qa_pipeline.sample_data import SampleSpec, generate
from qa_pipeline.settings import Thresholds
from qa_pipeline_tests.conftest import Pipeline, write_csv

FEB = "2026-02"
TOL = 1e-12  # the documented default relative tolerance, written out


# -- an independent recomputation of what should have been recorded --------------------------------

def expected_figures(qm: pd.DataFrame) -> pd.DataFrame:
    """quality_metrics → (dimension, segment, metric) → value, written out for the test."""
    rows = []
    for r in qm.itertuples():
        values = {"audits": r.audits, "errors": r.errors, "critical_errors": r.critical_errors,
                  "accuracy": r.accuracy, "error_rate": r.errors / r.audits,
                  "critical_error_rate": r.critical_error_rate, "weighted_accuracy": r.weighted_accuracy}
        rows += [(r.dimension, r.segment, k, float(v)) for k, v in values.items()]
    return pd.DataFrame(rows, columns=["dimension", "segment", "metric", "value"])


def expected_changes(before: pd.DataFrame, after: pd.DataFrame) -> pd.DataFrame:
    a, b = expected_figures(before), expected_figures(after)
    m = a.merge(b, on=["dimension", "segment", "metric"], how="outer", suffixes=("_old", "_new"))
    old, new = m["value_old"], m["value_new"]
    moved = (old - new).abs() > TOL * np.maximum(old.abs(), new.abs())
    changed = (old.isna() != new.isna()) | (old.notna() & new.notna() & moved)
    return m[changed].sort_values(["dimension", "segment", "metric"], ignore_index=True)


def assert_log_matches(log: pd.DataFrame, expected: pd.DataFrame, cause: str) -> None:
    log = log.sort_values(["dimension", "segment", "metric"], ignore_index=True)
    assert len(expected) > 0
    assert list(zip(log.dimension, log.segment, log.metric, strict=True)) == \
        list(zip(expected.dimension, expected.segment, expected.metric, strict=True))
    np.testing.assert_array_equal(log.previous_value.to_numpy(float), expected.value_old.to_numpy(float))
    np.testing.assert_array_equal(log.new_value.to_numpy(float), expected.value_new.to_numpy(float))
    assert set(log.cause) == {cause} and set(log.causes) == {cause}


# -- end to end: one month published five times -----------------------------------------------------

def _publish_feb(pipeline: Pipeline) -> pd.DataFrame:
    """Run February's own figures through publication; its published quality_metrics."""
    from qa_pipeline.assets.publication import MONTH_ASSETS
    from qa_pipeline.definitions import all_assets

    selection = [a for a in all_assets if {k.to_user_string() for k in a.keys} & {*MONTH_ASSETS, "month_publication"}]
    result = dg.materialize(all_assets, selection=selection, partition_key=f"{FEB}-01", resources=pipeline.resources(),
                            instance=pipeline.instance, raise_on_error=True)
    check = [e for e in result.get_asset_check_evaluations() if e.check_name == "publication_history_matches"]
    assert len(check) == 1 and check[0].passed, check[0].description if check else "no check"
    qm = pipeline.table("qa_reporting.quality_metrics")
    return qm[qm.month.astype(str).str[:7] == FEB].reset_index(drop=True)


def _rows(path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture
def tiny(tmp_path):
    raw = tmp_path / "raw"
    generate(SampleSpec(months=["2026-01", FEB, "2026-03"], audits_per_month=300, seed=21, with_hatecheck=False), raw)
    # a row whose market is the text NULL: a null placeholder by default (quarantined), a market
    # when QA_NULL_LITERALS no longer lists it
    feb_file = min((raw / "audits" / FEB).glob("*.csv"))
    template = _rows(feb_file)[0]
    write_csv(raw / "audits" / FEB / "zz_extra.csv", [{**template, "audit_id": "EXTRA-1", "market": "NULL"}])
    return Pipeline(tmp_path, raw)


def test_each_publication_keeps_its_figures_and_the_corrections_say_what_changed_and_why(tiny, monkeypatch):
    pipeline = tiny
    versions = [_publish_feb(pipeline)]

    # 1. an unchanged re-run: a second version in the history, no correction
    versions.append(_publish_feb(pipeline))
    history = pipeline.table("qa_reporting.publication_history")
    assert history.published_at.nunique() == 2
    for at, snapshot in history.groupby("published_at"):
        got = snapshot.sort_values(["dimension", "segment", "metric"], ignore_index=True)
        want = expected_figures(versions[0]).sort_values(["dimension", "segment", "metric"], ignore_index=True)
        assert list(zip(got.dimension, got.segment, got.metric, strict=True)) == \
            list(zip(want.dimension, want.segment, want.metric, strict=True))
        np.testing.assert_array_equal(got.value.to_numpy(float), want.value.to_numpy(float))
    assert {"accuracy", "error_rate", "critical_error_rate"} <= set(history.metric)
    assert pipeline.table("qa_reporting.corrections").empty

    # 2. late disputes, resolved in March, overturn eight of February's errors
    clean = pipeline.table("qa_core.audits_clean")
    errors = clean[(clean.month.astype(str).str[:7] == FEB) & clean.is_error_final & clean.dispute_outcome.isna()]
    overturned = errors.audit_id.sort_values().head(8).tolist()
    assert len(overturned) == 8
    write_csv(pipeline.raw_dir / "disputes" / "2026-03" / "late_overturns.csv", [
        {"dispute_id": f"LATE-{i}", "audit_id": a, "disputed_at": "2026-03-02T09:00:00Z",
         "resolved_at": "2026-03-05T09:00:00Z", "reason": "late appeal", "outcome": "overturned"}
        for i, a in enumerate(overturned)])
    versions.append(_publish_feb(pipeline))
    log = pipeline.table("qa_reporting.corrections")
    assert log.published_at.nunique() == 1
    assert_log_matches(log, expected_changes(versions[1], versions[2]), "late_disputes")
    overall = log[(log.dimension == "overall") & (log.metric == "errors")].iloc[0]
    assert overall.new_value == overall.previous_value - 8
    assert "overturned" in overall.cause_detail

    # 3. a setting: NULL is no longer a null placeholder, the extra row's market is the text NULL
    monkeypatch.setenv("QA_NULL_LITERALS", "nan,NaN,None,N/A")
    versions.append(_publish_feb(pipeline))
    log = pipeline.table("qa_reporting.corrections")
    latest = log[log.published_at == log.published_at.max()]
    assert_log_matches(latest, expected_changes(versions[2], versions[3]), "settings_changed")
    assert set(latest.cause_detail) == {"settings null_literals"}
    assert latest[(latest.dimension == "market") & (latest.segment == "NULL")].previous_value.isna().all()

    # 4. a redelivered audits file: five rows fewer, and the extra file with a second row
    feb_file = min((pipeline.raw_dir / "audits" / FEB).glob("audits*.csv"))
    rows = _rows(feb_file)
    write_csv(feb_file, rows[:-5])
    extra = _rows(pipeline.raw_dir / "audits" / FEB / "zz_extra.csv")
    write_csv(pipeline.raw_dir / "audits" / FEB / "zz_extra.csv",
              [*extra, {**extra[0], "audit_id": "EXTRA-2", "market": "<b>M&A</b>"}])
    versions.append(_publish_feb(pipeline))
    log = pipeline.table("qa_reporting.corrections")
    latest = log[log.published_at == log.published_at.max()]
    assert_log_matches(latest, expected_changes(versions[3], versions[4]), "redelivered_files")
    detail = latest.cause_detail.iloc[0]
    assert feb_file.name in detail and "zz_extra.csv" in detail

    # the whole log: three corrections' worth, exactly what the history implies, five versions kept
    assert log.published_at.nunique() == 3
    assert pipeline.table("qa_reporting.publication_history").published_at.nunique() == 5
    prints = pipeline.table("qa_core.publication_fingerprints")
    assert len(prints) == 5 and prints.code_sha256.nunique() == 1
    assert len(log) == sum(len(expected_changes(a, b)) for a, b in itertools.pairwise(versions))

    # what March's report lists: every correction of February (all published after its first
    # publication, when February's report went out), the overall figures first
    from qa_pipeline.assets.corrections import report_corrections

    listed = report_corrections(pipeline.warehouse, date(2026, 3, 1))
    assert len(listed) == len(log)
    n_overall = int((log.dimension == "overall").sum())
    assert set(listed.dimension.head(n_overall)) == {"overall"}
    assert set(listed.cause.head(n_overall)) == {"late_disputes", "settings_changed", "redelivered_files"}
    assert report_corrections(pipeline.warehouse, date(2026, 2, 1)).empty  # nothing of a month before February


# -- the publication's transaction, on DuckDB and PostgreSQL ---------------------------------------

def _metrics_frame(month: date, errors: int, weights: float = 0.9) -> pd.DataFrame:
    from qa_pipeline.schemas import warehouse as wh

    row = {c.name: None for c in wh.quality_metrics.columns}
    rows = []
    for dim, seg, n, e in [("overall", "all", 200, errors), ("site", "Dublin", 120, errors - 2), ("site", "Austin", 80, 2)]:
        rows.append({**row, "month": pd.Timestamp(month), "dimension": dim, "segment": seg, "audits": n, "errors": e,
                     "critical_errors": 1, "accuracy": 1 - e / n, "critical_error_rate": 1 / n,
                     "weighted_accuracy": weights})
    frame = pd.DataFrame(rows)
    for c in wh.quality_metrics.columns:
        if c.name not in {"month", "dimension", "segment"}:
            frame[c.name] = pd.to_numeric(frame[c.name])
    return frame


def _fingerprint(disputes: str = "d0", code: str = "c0") -> logic.Fingerprint:
    return logic.Fingerprint(input_files=json.dumps([["audits", "audits/2026-02/a.csv", "f0"]]), disputes_sha256=disputes,
                             disputed_audits=3, overturned_audits=1, settings="{}", code_version="v", code_sha256=code)


def _publish(url: str, frame: pd.DataFrame, fingerprint: logic.Fingerprint, fail: bool = False):
    from qa_pipeline.assets.corrections import Recorded, recorder
    from qa_pipeline.resources.staging import Attempt
    from qa_pipeline.resources.warehouse import Warehouse

    attempt = Attempt(Warehouse(url=url), date(2026, 2, 1), str(uuid.uuid4()))
    attempt.write("qa_reporting.quality_metrics", frame)
    out = Recorded()
    record = recorder(attempt.month, attempt.run_id, fingerprint, TOL, out)

    def failing(conn, published_at):
        record(conn, published_at)
        raise RuntimeError("the history could not be written")

    attempt.publish(required=["qa_reporting.quality_metrics"], record=failing if fail else record)
    return out


@pytest.mark.postgres
def test_history_and_corrections_commit_with_the_publication_or_not_at_all(warehouse_url):
    from qa_pipeline.resources.warehouse import Warehouse

    month = date(2026, 2, 1)
    first = _publish(warehouse_url, _metrics_frame(month, errors=10), _fingerprint())
    assert first.figures == 3 * len(logic.HEADLINE_METRICS) and first.corrections.empty
    # noise below the tolerance is no correction; eight fewer errors after late disputes is
    second = _publish(warehouse_url, _metrics_frame(month, errors=8, weights=0.9 * (1 + 1e-15)), _fingerprint("d1"))
    w = Warehouse(url=warehouse_url)
    log = w.read_table("qa_reporting.corrections")
    assert sorted(zip(log.dimension, log.segment, log.metric, strict=True)) == [
        (d, s, m) for d, s in [("overall", "all"), ("site", "Dublin")] for m in ["accuracy", "error_rate", "errors"]]
    row = log[(log.dimension == "overall") & (log.metric == "error_rate")].iloc[0]
    assert (row.previous_value, row.new_value) == (10 / 200, 8 / 200)
    assert set(log.cause) == {"late_disputes"} and len(second.corrections) == 6
    assert logic.utc(row.previous_published_at) == logic.utc(first.published_at)
    assert logic.utc(row.published_at) == logic.utc(second.published_at)
    # a publication whose history fails is not published: figures, history and corrections stay
    with pytest.raises(RuntimeError, match="history could not be written"):
        _publish(warehouse_url, _metrics_frame(month, errors=2), _fingerprint("d2", "c1"), fail=True)
    qm = w.read_table("qa_reporting.quality_metrics")
    assert int(qm[qm.dimension == "overall"].errors.iloc[0]) == 8
    assert w.read_table("qa_reporting.publication_history").published_at.nunique() == 2
    assert len(w.read_table("qa_reporting.corrections")) == 6
    with w.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM qa_core.publication_fingerprints")).scalar_one() == 2


# -- the rules, one at a time ------------------------------------------------------------------------

def test_the_cause_is_the_first_fingerprint_that_changed_and_causes_lists_them_all():
    base = {"inputs_sha256": "i", "disputes_sha256": "d", "settings_sha256": "s", "code_sha256": "c",
            "input_files": "[]", "settings": "{}", "code_version": "v", "disputed_audits": 1, "overturned_audits": 0}
    assert logic.changed_causes(base, base) == []
    both = {**base, "code_sha256": "c2", "disputes_sha256": "d2", "disputed_audits": 4, "overturned_audits": 2}
    assert logic.changed_causes(base, both) == ["late_disputes", "code_changed"]
    every = {**both, "inputs_sha256": "i2", "settings_sha256": "s2",
             "input_files": json.dumps([["audits", "audits/2026-02/a.csv", "x"]]),
             "settings": json.dumps({"null_literals": ["nan"]})}
    assert logic.changed_causes(base, every) == ["redelivered_files", "late_disputes", "settings_changed", "code_changed"]
    assert logic.cause_detail(base, every) == ("files audits/2026-02/a.csv; disputed audits 1 → 4, overturned 0 → 2; "
                                               "settings null_literals; code source changed")


def test_a_change_is_a_correction_only_beyond_the_relative_tolerance(monkeypatch):
    old = pd.Series([0.9, 0.9, 0.0, 0.0, np.nan, 5.0, np.nan])
    new = pd.Series([0.9 * (1 + 1e-13), 0.9 * (1 + 1e-11), 0.0, 1e-300, 0.5, np.nan, np.nan])
    assert logic.differs(old, new, TOL).tolist() == [False, True, False, True, True, True, False]
    assert logic.tolerance() == TOL
    monkeypatch.setenv("QA_CORRECTION_TOLERANCE", "1e-9")
    assert logic.tolerance() == 1e-9
    monkeypatch.setenv("QA_CORRECTION_TOLERANCE", "-1")
    with pytest.raises(ValueError, match="QA_CORRECTION_TOLERANCE"):
        logic.tolerance()


def test_the_settings_fingerprint_sees_overrides_and_holds_no_location():
    a = json.loads(logic.settings_values(Thresholds(), ("nan",), TOL))
    b = json.loads(logic.settings_values(Thresholds(max_invalid_fraction=0.05), ("nan",), TOL))
    assert a["thresholds.max_invalid_fraction"] == 0.02 and b["thresholds.max_invalid_fraction"] == 0.05
    # a threshold no headline figure depends on does not explain a correction
    assert logic.settings_values(Thresholds(target_accuracy=0.9), ("nan",), TOL) == json.dumps(a, sort_keys=True,
                                                                                                ensure_ascii=False)
    assert not any(k.lower().endswith(("url", "dir", "password")) for k in a)


def test_the_disputes_fingerprint_ignores_row_order_and_sees_an_outcome():
    frame = pd.DataFrame({"audit_id": ["A-2", "A-1"], "dispute_outcome": ["upheld", "overturned"],
                          "dispute_resolved_at": pd.to_datetime(["2026-03-01T00:00:00Z", "2026-02-03T10:00:00Z"])})
    one = logic.disputes_fingerprint(frame)
    assert one == logic.disputes_fingerprint(frame.iloc[::-1])
    assert one[1:] == (2, 1)
    flipped = frame.assign(dispute_outcome=["overturned", "overturned"])
    assert logic.disputes_fingerprint(flipped)[0] != one[0]


def test_the_report_lists_corrections_escaped_and_the_mbr_counts_them():
    from dataclasses import replace

    from qa_pipeline.reports import content
    from qa_pipeline.reports.render import render
    from qa_pipeline_tests.test_text_report import _inputs

    at = pd.Timestamp("2026-04-03 10:00", tz="UTC")
    log = pd.DataFrame([
        {"month": pd.Timestamp("2026-03-01"), "dimension": "market", "segment": "<b>M&A</b> [x](javascript:alert(1))",
         "metric": "errors", "previous_value": np.nan, "new_value": 3.0, "published_at": at,
         "cause": "redelivered_files", "cause_detail": "files audits/2026-03/<img src=x>.csv"},
        {"month": pd.Timestamp("2026-03-01"), "dimension": "overall", "segment": "all", "metric": "accuracy",
         "previous_value": 0.93, "new_value": 0.9312, "published_at": at, "cause": "late_disputes",
         "cause_detail": "disputed audits 3 → 11, overturned 1 → 9"},
    ])
    ctx, _ = content.build(replace(_inputs(), corrections=log))
    html = render("quality_report.html.j2", generated_at="2026-05-01 00:00 UTC", **ctx)
    md = render("quality_report.md.j2", generated_at="2026-05-01 00:00 UTC", **ctx)
    mbr = render("mbr.html.j2", month="April 2026", kpis=[], top_actions=[], restated=False,
                 corrections=ctx["corrections"]["count"])
    assert "2 published figure(s) of earlier months (2026-03) changed since the previous report" in html
    assert '<td class="n">93.00 %</td><td class="n">93.12 %</td>' in html
    assert '<td class="n">–</td><td class="n">3</td>' in html
    assert "&lt;b&gt;M&amp;A&lt;/b&gt;" in html and "&lt;img src=x&gt;.csv" in html
    assert "<b>M&A" not in html and "<img src=x>" not in html
    assert "| 2026-03 | market | &lt;b>M&A&lt;/b> \\[x\\](javascript:alert(1)) | errors | – | 3 |" in md
    assert "audits/2026-03/&lt;img src=x>.csv" in md and "<img" not in md
    assert "Corrections: <strong>2</strong> published figure(s) of earlier months" in mbr
    # nothing corrected: the section says so, the MBR shows 0
    ctx, _ = content.build(_inputs())
    assert "No published figure of an earlier month changed since the previous report." in render(
        "quality_report.html.j2", generated_at="2026-05-01 00:00 UTC", **ctx)
    assert ctx["corrections"]["count"] == 0


def test_the_report_window_starts_at_the_previous_months_first_publication():
    def row(month, at, dimension="site", previous=0.5, new=0.6):
        return {"month": pd.Timestamp(month), "dimension": dimension, "segment": "x", "metric": "accuracy",
                "previous_value": previous, "new_value": new, "published_at": pd.Timestamp(at, tz="UTC")}

    log = pd.DataFrame([row("2026-02-01", "2026-03-02"), row("2026-02-01", "2026-03-20", previous=0.5, new=0.9),
                        row("2026-02-01", "2026-03-21", "overall"), row("2026-01-01", "2026-03-25", previous=None),
                        row("2026-04-01", "2026-04-02")])
    shown = logic.corrections_for_report(log, date(2026, 4, 1), pd.Timestamp("2026-03-05", tz="UTC"))
    # January first; February's overall figure, then the largest change; nothing before the window
    # or of the report's own month
    assert [(str(r.month)[:7], r.dimension, r.new_value) for r in shown.itertuples()] == [
        ("2026-01", "site", 0.6), ("2026-02", "overall", 0.6), ("2026-02", "site", 0.9)]
    assert len(logic.corrections_for_report(log, date(2026, 4, 1), None)) == 4


def test_a_code_change_names_the_versions_that_moved():
    base = {"inputs_sha256": "i", "disputes_sha256": "d", "settings_sha256": "s", "code_sha256": "c",
            "code_version": "qa-pipeline 0.1.0, pandas 3.1.1, numpy 2.4.6"}
    upgraded = {**base, "code_sha256": "c2", "code_version": "qa-pipeline 0.1.0, pandas 3.2.0, numpy 2.4.6"}
    assert logic.cause_detail(base, upgraded) == "code pandas 3.1.1 → 3.2.0"
    version, sha = logic.code_fingerprint()
    assert version.startswith("qa-pipeline ") and "pandas " in version and len(sha) == 64


def test_a_history_that_disagrees_with_the_publication_is_refused_before_it_commits(tmp_path, monkeypatch):
    """The history check runs inside the publication's transaction: when the recorded figures differ
    from the quality_metrics being published (here the recorder writes a wrong accuracy), the whole
    publication rolls back and the previous version stays visible."""
    from qa_pipeline.assets import corrections as recording
    from qa_pipeline.resources.warehouse import Warehouse

    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    month = date(2026, 2, 1)
    _publish(url, _metrics_frame(month, errors=10), _fingerprint())
    real = recording.history_select

    def wrong(month_, published_at, run_id):
        stmt = real(month_, published_at, run_id)
        return sa.select(*[(c + 0.5).label(c.name) if c.name == "value" else c for c in stmt.selected_columns])

    monkeypatch.setattr(recording, "history_select", wrong)
    with pytest.raises(RuntimeError, match="publication_history_matches failed"):
        _publish(url, _metrics_frame(month, errors=8), _fingerprint("d1"))
    w = Warehouse(url=url)
    qm = w.read_table("qa_reporting.quality_metrics")
    assert int(qm[qm.dimension == "overall"].errors.iloc[0]) == 10
    assert w.read_table("qa_reporting.publication_history").published_at.nunique() == 1
    assert w.read_table("qa_reporting.corrections").empty
