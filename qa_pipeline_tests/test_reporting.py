"""The last mile: recommendations, the report, the MBR, the site — and what must never leak."""

from __future__ import annotations

import csv
import hashlib
import os
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from qa_pipeline.domain.recommendations import OWNERS, RULES, priority
from qa_pipeline.resources.warehouse import dispose_engines
from qa_pipeline_tests.conftest import Pipeline
from qa_pipeline_tests.test_person_identifiers import (
    identifiers_in,
    person_ids,
    schema_tables,
)

HOSTILE_NAME = "<script>alert('x')</script> nudges for ops.lead@example.com"
FORMULA_NAME = '=HYPERLINK("http://x","y") layout'
PLANTED_NAME = "escalated to sergei ivanov, call jane dot doe at example dot com or 555-1234"
PII = [r"[\w.+-]+@example\.(?:com|net)", r"\+1 415 555 \d{4}", r"@victim_\d+", r"203\.0\.\d+\.\d+",
       r"https?://spam\d+"]


@pytest.fixture(scope="module")
def published(tmp_path_factory, sample_raw):
    """Four months through the whole pipeline, with hostile text planted in a raw input."""
    root = tmp_path_factory.mktemp("reporting")
    raw = root / "raw"
    shutil.copytree(sample_raw, raw)
    path = raw / "experiments" / "experiments.csv"
    rows = list(csv.DictReader(path.open()))
    rows[0]["name"] = HOSTILE_NAME
    rows[1]["name"] = FORMULA_NAME
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    # a person's name in the April error comments of two auditors, with obfuscated contact details
    for audits in sorted((raw / "audits" / "2026-04").glob("*.csv")):
        frame = pd.read_csv(audits, dtype=str, keep_default_na=False)
        error = (frame.action_moderator != frame.action_auditor) | (frame.policy_moderator != frame.policy_auditor)
        planted = error & frame.auditor_id.isin(["AUD-07", "AUD-17"])
        frame.loc[planted, "auditor_comment"] = (frame.loc[planted, "auditor_comment"] + " " + PLANTED_NAME).str.strip()
        frame.to_csv(audits, index=False)
    p = Pipeline(root, raw)
    for month in ("2026-01", "2026-02", "2026-03", "2026-04"):
        result = p.run(month)
        assert result.success, month
    yield p
    dispose_engines()


def _report(p: Pipeline, month: str, name: str = "quality_report.html") -> str:
    return (p.tmp / "reports" / month / name).read_text(encoding="utf-8")


def test_the_report_names_the_planted_spike_policy_change_and_drifting_auditor(published):
    html = _report(published, "2026-04")
    alerts = html[html.index('id="alerts"'):html.index('id="trend"')]
    assert "BPO-B Kuala Lumpur|hate_speech" in alerts and "→" in alerts and "%" in alerts
    policy = html[html.index('id="policy"'):html.index('id="experiments"')]
    assert "PC-HS2-UPDATE" in policy and "errors rose" in policy
    graders = html[html.index('id="graders"'):html.index('id="calibration"')]
    assert "AUD-07" in graders
    md = _report(published, "2026-04", "quality_report.md")
    assert "BPO-B Kuala Lumpur\\|hate_speech" in md  # a pipe is escaped inside Markdown tables
    assert "PC-HS2-UPDATE" in md and "AUD-07" in md


def test_recommendations_send_each_finding_to_its_owner(published):
    recs = published.table("qa_reporting.recommendations")
    april = recs[pd.to_datetime(recs.month) == pd.Timestamp("2026-04-01")]
    by_rule = {(r.rule, r.owner, r.subject) for r in april.itertuples()}
    assert ("segment_error_spike", "Training", "BPO-B Kuala Lumpur|hate_speech") in by_rule
    assert ("quality_drop_with_handle_time_drop", "Workforce Management", "BPO-B Kuala Lumpur|hate_speech") in by_rule
    assert ("policy_refresher", "Training", "PC-HS2-UPDATE") in by_rule
    people = published.table("qa_core.person_recommendations")  # findings about a person: restricted
    people = people[pd.to_datetime(people.month) == pd.Timestamp("2026-04-01")]
    assert ("auditor_drift", "Quality", "auditor", "AUD-07") in {
        (r.rule, r.owner, r.person_role, r.person_id) for r in people.itertuples()}
    assert not {r.rule for r in RULES if r.person} & set(april.rule)
    assert set(april.owner) <= set(OWNERS)
    assert not april.duplicated(["owner", "rule", "subject"]).any()
    spike = april[(april.rule == "segment_error_spike")].iloc[0]
    assert re.search(r"q = [\d.e-]+", spike.evidence) and "audits" in spike.evidence
    drift = people[people.rule == "auditor_drift"].iloc[0]
    assert "z = +" in drift.evidence
    # priority follows impact, highest first within a priority
    for _, g in april.groupby("priority"):
        assert g.impact.is_monotonic_decreasing


def test_rules_are_data_with_an_owner_threshold_and_templates():
    assert len(RULES) >= 10
    assert {r.owner for r in RULES} == set(OWNERS)
    for r in RULES:
        assert r.threshold and "{" in r.finding and r.action
    assert priority(25, "P3") == "P1" and priority(6, "P3") == "P2" and priority(1, "P3") == "P3"
    assert priority(1, "P1") == "P1"  # a floor lifts a low-impact finding


def test_text_from_the_data_is_escaped_and_personal_data_redacted_everywhere(published):
    files = list((published.tmp / "reports").glob("2026-*/*.html")) + list((published.tmp / "reports").glob("2026-*/*.md"))
    files.append(published.tmp / "reports" / "index.html")
    assert len(files) == 4 * 3 + 1
    april = _report(published, "2026-04")
    assert "&lt;script&gt;alert(" in april  # shown as text
    for f in files:
        text = f.read_text(encoding="utf-8")
        assert "<script" not in text.lower(), f
        for pattern in PII:
            assert not re.search(pattern, text), (f, pattern)
    assert "ops.lead@example.com" not in april and "[email]" in april


def test_a_name_in_many_comments_of_two_auditors_never_becomes_a_theme(published):
    from qa_pipeline.domain.themes import comment_themes

    themes = published.table("qa_reporting.comment_themes")
    words = set(" ".join(themes.term).split())
    assert len(themes) and not words & {"sergei", "ivanov", "escalated", "jane", "doe", "example", "dot"}
    audits = published.table("qa_core.audits_clean")
    april = audits[pd.to_datetime(audits.month) == pd.Timestamp("2026-04-01")]
    assert april.auditor_comment.str.contains("sergei ivanov", regex=False).sum() >= 40
    off = comment_themes(april, pd.Timestamp("2026-04-01"), min_people=1)  # the planted name is a theme without the rule
    assert off.term.str.contains("ivanov").any()
    for f in (published.tmp / "reports" / "2026-04").glob("*.*"):
        if f.suffix in {".html", ".md"}:
            text = f.read_text(encoding="utf-8")
            assert "ivanov" not in text and "555-1234" not in text and "jane dot doe" not in text, f


def test_formulas_never_reach_qa_reporting_or_a_report(published):
    readout = published.table("qa_reporting.experiment_readout")
    assert "'" + FORMULA_NAME in set(readout.name)
    for name in readout.columns:
        if pd.api.types.is_string_dtype(readout[name].dtype):
            assert not readout[name].dropna().astype(str).str.match(r"\s*[=+@]|\s*-(?![\d.])").any(), name
    md = _report(published, "2026-04", "quality_report.md")
    html = _report(published, "2026-04")
    assert "'=HYPERLINK(\"\\[url\\]\",\"y\") layout" in md
    assert "&#39;=HYPERLINK(&#34;[url]&#34;,&#34;y&#34;) layout" in html
    assert "&amp;lt;" not in md and "&amp;" not in md and "&amp;lt;" not in html


def test_no_qa_reporting_table_holds_a_person_identifier(published):
    """Contract §5, on a real run: no value of any `qa_reporting` table is (or names) a moderator,
    auditor or rater id of the raw inputs; the same scan finds them in `qa_core`, where the
    per-auditor dispute figures and the findings about a person are."""
    ids = person_ids(published.raw_dir)
    assert {"AUD-07", "MOD-1001"} <= ids and len(ids) > 100
    reporting = schema_tables(published.warehouse, "qa_reporting")
    assert {"qa_reporting.dispute_metrics", "qa_reporting.recommendations", "qa_reporting.calibration_agreement",
            "qa_reporting.comment_themes", "qa_reporting.experiment_readout"} <= set(reporting)
    assert all(len(reporting[t]) for t in ("qa_reporting.dispute_metrics", "qa_reporting.recommendations"))
    assert identifiers_in(reporting, ids) == []
    core = schema_tables(published.warehouse, "qa_core")
    found = identifiers_in({t: core[t] for t in ("qa_core.auditor_dispute_metrics", "qa_core.person_recommendations")},
                           ids)
    assert any(".auditor_dispute_metrics.auditor_id: 'AUD-07'" in f for f in found)
    assert any(".person_recommendations.finding: 'AUD-07 flags more" in f for f in found)


def test_the_mbr_names_no_individual_and_the_quality_report_may(published):
    """The MBR (business leaders) and the site index name no person; the Monthly Quality Report
    (quality team) names the drifting auditor and the moderators below target, read from qa_core."""
    ids = person_ids(published.raw_dir)
    pages = {"index.html": (published.tmp / "reports" / "index.html").read_text(encoding="utf-8")}
    pages |= {f"{m}/mbr.html": _report(published, m, "mbr.html") for m in ("2026-01", "2026-02", "2026-03", "2026-04")}
    assert all("Top actions" in page for name, page in pages.items() if name != "index.html")
    assert identifiers_in({name: pd.DataFrame({"page": [page]}) for name, page in pages.items()}, ids) == []
    april_mbr = _report(published, "2026-04", "mbr.html")
    assert april_mbr.count("<tr>") >= 8 + 2  # the scorecard and at least one top action: the scan read something
    people = published.table("qa_core.person_recommendations")
    april = people[pd.to_datetime(people.month) == pd.Timestamp("2026-04-01")]
    moderators = set(april[april.person_role == "moderator"].person_id)
    assert moderators
    for name in ("quality_report.html", "quality_report.md"):
        report = _report(published, "2026-04", name)
        recs = report[report.index("ecommendations by owner"):]
        assert "AUD-07" in recs and "about one auditor: for the quality team" in recs
        assert all(m in recs for m in moderators)


def test_report_runs_record_path_hash_and_status(published):
    runs = published.table("qa_reporting.report_runs").sort_values("month")
    assert [str(m)[:7] for m in runs.month] == ["2026-01", "2026-02", "2026-03", "2026-04"]
    for r in runs.itertuples():
        data = Path(r.report_path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == r.sha256
        assert r.status in {"published", "restated"}
    index = (published.tmp / "reports" / "index.html").read_text()
    for month in ("2026-01", "2026-04"):
        assert f'href="{month}/quality_report.html"' in index and f'href="{month}/mbr.html"' in index


def test_the_mbr_is_a_one_page_scorecard_with_targets_deltas_and_sparklines(published):
    mbr = _report(published, "2026-04", "mbr.html")
    for kpi in ("Accuracy", "Critical error rate", "Dispute overturn rate", "Calibration agreement"):
        assert kpi in mbr
    assert mbr.count("<svg") >= 6
    assert ("on target" in mbr) or ("off target" in mbr)
    assert "pp" in mbr


def _chromium() -> str | None:
    for path in ("/usr/bin/chromium", "/usr/bin/chromium-browser"):
        if os.path.exists(path):
            return path
    return None


def test_the_report_loads_in_headless_chromium_with_no_failed_request_or_console_error(published):
    playwright = pytest.importorskip("playwright.sync_api") if not os.environ.get("CI") else __import__(
        "playwright.sync_api", fromlist=["sync_playwright"])
    browser_path = _chromium()
    if browser_path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed under CI (.ci/run installs Debian's chromium)")
        pytest.skip("no chromium on this machine")
    failures, console_errors, requests = [], [], []
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=browser_path, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        page = browser.new_page()
        page.on("requestfailed", lambda r: failures.append(r.url))
        page.on("request", lambda r: requests.append(r.url))
        page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: console_errors.append(str(e)))
        for name in ("quality_report.html", "mbr.html"):
            page.goto((published.tmp / "reports" / "2026-04" / name).as_uri(), wait_until="load")
        page.goto((published.tmp / "reports" / "index.html").as_uri(), wait_until="load")
        page.goto((published.tmp / "reports" / "2026-04" / "quality_report.html").as_uri(), wait_until="load")
        images = page.evaluate("Array.from(document.images).map(i => [i.complete, i.naturalWidth])")
        browser.close()
    assert failures == [] and console_errors == []
    assert all(not u.startswith("http") for u in requests), requests  # nothing from the network
    assert len(images) >= 4 and all(ok and width > 0 for ok, width in images)


def test_the_report_shows_when_each_early_warning_first_signalled(published):
    warnings = published.table("qa_reporting.early_warnings")
    april = warnings[(pd.to_datetime(warnings.month) == pd.Timestamp("2026-04-01")) & warnings.signalled.astype(bool)]
    spike = april[(april.dimension == "site×queue") & (april.segment == "BPO-B Kuala Lumpur|hate_speech")]
    assert len(spike) == 1 and april["final"].all()
    html = _report(published, "2026-04")
    section = html[html.index('id="early-warning"'):html.index('id="trend"')]
    md = _report(published, "2026-04", "quality_report.md")
    md_section = md[md.index("## Early warning"):md.index("## Root causes")]
    for r in april.itertuples():  # every signalled segment, with the day it first signalled
        day = f"{pd.Timestamp(r.first_signal_date):%Y-%m-%d}"
        assert f"<td>{day}</td><td>{r.dimension}</td><td>{r.segment}</td>" in section
        assert f"| {day} | {r.dimension} | {r.segment.replace('|', chr(92) + '|')} |" in md_section
    assert section.count("<tr>") == len(april) + 1
