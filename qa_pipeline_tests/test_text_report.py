"""Hostile text in the report: HTML escaped once by Jinja, Markdown escaped once for Markdown, no
link of a scheme other than http(s), no spreadsheet formula, no personal data."""

from __future__ import annotations

import html
import re

import pandas as pd
import pytest

from qa_pipeline.reports import content
from qa_pipeline.reports.render import md, md_inline, render

MONTH = pd.Timestamp("2026-04-01")
LINK = "[x](javascript:alert(1))"
SITE = "Site *A*|B [x](javascript:alert(1))"  # a segment: pipe, emphasis, a link
FORMULA = "=cmd|' /C calc'!A0"
HYPERLINK = '=HYPERLINK("http://x","y")'
REASON = "SRM at p < 0.001; see <b>log</b> & jane dot doe at example dot com, tel 555-1234"


def _inputs() -> content.ReportInputs:
    months = pd.date_range("2025-04-01", MONTH, freq="MS")
    history = []
    for m in months:
        for dimension, segment in [("overall", "all"), ("team_type", "in_house"), ("site", SITE),
                                   ("site×queue", f"{SITE}|hate_speech")]:
            history.append({"month": m, "dimension": dimension, "segment": segment, "audits": 1000, "errors": 40,
                            "accuracy": 0.96, "accuracy_ci_low": 0.95, "accuracy_ci_high": 0.97,
                            "weighted_accuracy": 0.96, "critical_errors": 2, "critical_error_rate": 0.002,
                            "over_enforcement_rate": 0.01, "under_enforcement_rate": 0.01})
    trends = pd.DataFrame([{"dimension": "site", "segment": SITE, "alert": True, "improved": False, "prev_audits": 900,
                            "audits": 1000, "prev_error_rate": 0.02, "error_rate": 0.04, "delta": 0.02,
                            "q_value": 0.0001, "out_of_control": True}])
    pareto = pd.DataFrame([{"scope": "overall", "root_cause": LINK, "errors": 30, "share": 0.75,
                            "cumulative_share": 0.75, "vital_few": True, "rank": 1},
                           {"scope": "overall", "root_cause": "tooling", "errors": 10, "share": 0.25,
                            "cumulative_share": 1.0, "vital_few": False, "rank": 2}])
    drivers = pd.DataFrame([{"dimension": "site×queue", "segment": f"{FORMULA}|hate_speech", "overall_change": 0.01,
                             "rate_prev": 0.02, "rate": 0.04, "share_prev": 0.5, "share": 0.5, "rate_effect": 0.01,
                             "mix_effect": 0.0, "contribution": 0.01, "contribution_share": 1.0}])
    themes = pd.DataFrame([{"month": MONTH, "scope": "overall", "term": LINK, "errors_with_term": 5,
                            "errors_with_comment": 40, "share": 0.125, "z_score": 3.0, "rank": 1}])
    calibration = pd.DataFrame([{"session_id": "S-1", "month": MONTH, "queue": "q", "label": "action", "raters": 3,
                                 "cases": 10, "percent_agreement": 0.9, "fleiss_kappa": 0.5, "krippendorff_alpha": 0.5,
                                 "gwet_ac1": 0.8, "gold_accuracy": 0.9, "note": "+SUM(A1)"}])
    rater_scores = pd.DataFrame([{"rater_id": "+1+1", "below_threshold": True}])
    disputes = pd.DataFrame([{"month": MONTH, "dimension": "overall", "segment": "all", "audits": 1000, "disputed": 10,
                              "overturned": 2, "dispute_rate": 0.01, "overturn_rate": 0.2, "restated_audits": 0}])
    policy = pd.DataFrame([{"change_id": "PC-1", "policy": "-2+3", "effective_date": pd.Timestamp("2026-04-03"),
                            "status": "complete", "n_before": 100, "n_after": 100, "error_rate_before": 0.02,
                            "error_rate_after": 0.03, "delta": 0.01, "ci_low": 0.0, "ci_high": 0.02, "p_value": 0.0004,
                            "did": 0.01, "flagged": True, "note": None}])
    experiments = pd.DataFrame([{"experiment_id": "EXP-1", "name": HYPERLINK, "status": "complete", "metric": "accuracy",
                                 "n_control": 10, "n_treatment": 10, "diff": 0.01, "ci_low": -0.01, "ci_high": 0.03,
                                 "p_value": 0.5, "srm_p_value": 0.0001, "decision": "invalid_srm", "reason": REASON}])
    recommendations = pd.DataFrame([{"owner": "Training", "priority": "P1", "impact": 25.0,
                                     "finding": f"Error rate at {SITE} rose", "evidence": "q < 0.001 & **n** = 1,000",
                                     "action": f"Coach {LINK} now"}])
    ingest = pd.DataFrame([{"input": "audits", "source_file": "audits/2026-04/<img src=x>.csv", "rows_read": 10,
                            "rows_clean": 10, "rows_quarantined": 0}])
    consistency = pd.DataFrame([{"auditor_id": "# AUD-99", "audits": 200, "flag_rate": 0.2, "expected_rate": 0.1,
                                 "z_score": 4.0, "drift": True, "disputed": 3, "overturned": 1}])
    return content.ReportInputs(
        month=MONTH, target=0.95, history=pd.DataFrame(history), trends=trends, pareto=pareto, drivers=drivers,
        themes=themes, calibration=calibration, rater_scores=rater_scores, disputes=disputes, policy_impact=policy,
        experiments=experiments, recommendations=recommendations, ingest_log=ingest,
        quarantine_by_rule=pd.DataFrame(columns=["input", "rule", "rows"]), consistency=consistency,
        data_docs_path="../data_docs/index.html")


@pytest.fixture(scope="module")
def reports() -> dict[str, str]:
    ctx, _ = content.build(_inputs())
    return {"md": render("quality_report.md.j2", generated_at="2026-05-01 00:00 UTC", **ctx),
            "html": render("quality_report.html.j2", generated_at="2026-05-01 00:00 UTC", **ctx)}


def test_markdown_is_escaped_once_for_markdown(reports):
    text = reports["md"]
    assert "&amp;" not in text and "&lt; 0.001" not in text  # no HTML escaping at all …
    assert "| < 0.001 |" in text  # … a p-value reads as written
    assert "SRM at p < 0.001; see &lt;b>log&lt;/b> & \\[email\\], tel \\[phone\\]" in text
    assert "q < 0.001 & \\*\\*n\\*\\* = 1,000" in text
    assert "| Site \\*A\\*\\|B \\[x\\](javascript:alert(1)) |" in text  # the alert's segment cell
    assert "| \\[x\\](javascript:alert(1)) | 30 |" in text  # a root cause
    assert "*Action:* Coach \\[x\\](javascript:alert(1)) now." in text
    assert "- \\# AUD-99: flag rate" in text  # no heading from an id
    assert "audits/2026-04/&lt;img src=x>.csv" in text


def test_markdown_keeps_no_link_and_no_markup_from_the_data(reports):
    text = reports["md"]
    assert "](javascript:" not in text.replace("\\](javascript:", "")
    assert not re.search(r"<(?!\s)", text)  # no raw HTML tag, comment or autolink
    markdown_it = pytest.importorskip("markdown_it")
    rendered = markdown_it.MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(text)
    assert "<a " not in rendered and "<img" not in rendered and "<b>" not in rendered
    # the template's own emphasis only
    assert re.findall(r"<em>(.*?)</em>", rendered) == ["Action:"]
    assert set(re.findall(r"<strong>(.*?)</strong>", rendered)) == {"P1", "EXP-1 '=HYPERLINK(&quot;[url]&quot;,&quot;y&quot;)"}
    assert "<h1>AUD" not in rendered and "<blockquote>" not in rendered
    shown = html.unescape(re.sub(r"<[^>]+>", "", rendered))
    for value in ("[x](javascript:alert(1))", "Site *A*|B", "'=cmd|' /C calc'!A0", "SRM at p < 0.001; see <b>log</b>",
                  "# AUD-99"):
        assert value in shown, value  # shown as the data says


def test_html_is_escaped_once_by_jinja(reports):
    text = reports["html"]
    assert "&amp;lt;" not in text and "&amp;amp;" not in text
    assert "SRM at p &lt; 0.001; see &lt;b&gt;log&lt;/b&gt; &amp; [email], tel [phone]" in text
    assert "<img src=x>" not in text and "&lt;img src=x&gt;" in text
    assert not re.search(r"href=\"(?!\.\./|mbr\.html|quality_report\.md|#)", text)  # no link from the data


def test_formulas_are_neutralised_in_both_reports(reports):
    md_text, html_text = reports["md"], reports["html"]
    assert "'=HYPERLINK(\"\\[url\\]\",\"y\")" in md_text  # redacted, neutralised, then escaped
    assert "'=cmd\\|' /C calc'!A0\\|hate_speech" in md_text
    assert "| '-2+3 |" in md_text
    assert "&#39;=HYPERLINK(&#34;[url]&#34;,&#34;y&#34;)" in html_text
    assert "&#39;=cmd|&#39; /C calc&#39;!A0|hate_speech" in html_text
    assert "&#39;+SUM(A1)" in html_text and "&#39;+1+1" in html_text
    for text in (md_text, html_text):
        for formula in (r"=HYPERLINK", r"=cmd", r"\+SUM", r"\+1\+1", r"-2\+3"):
            assert not re.search(rf"(?<!')(?<!&#39;){formula}", text), formula  # never without its apostrophe


def test_personal_data_never_reaches_a_report(reports):
    for text in reports.values():
        assert "jane" not in text and "555-1234" not in text and "example dot com" not in text


@pytest.mark.parametrize(("value", "expected"), [
    ("p < 0.001", "p < 0.001"),
    ("<0.001", "&lt;0.001"),
    ("a &lt; b", "a \\&lt; b"),
    ("R&D", "R&D"),
    ("hate_speech", "hate_speech"),
    ("_x_", "\\_x\\_"),
    ("BPO-B Kuala Lumpur|hate_speech", "BPO-B Kuala Lumpur\\|hate_speech"),
    ("![i](javascript:alert(1))", "!\\[i\\](javascript:alert(1))"),
    ("<javascript:alert(1)>", "&lt;javascript:alert(1)>"),
    ("x@y.z", "x\\@y.z"),
    ("ftp://host/x", "ftp:\\//host/x"),
    ("see http://host/x", "see http://host/x"),
    ("> quote", "\\> quote"),
    ("1. first", "1\\. first"),
    ("- item", "\\- item"),
    ("-0.5", "-0.5"),
    ("two\nlines\r\n", "two lines"),
    ("`code`", "\\`code\\`"),
    ("~~x~~", "\\~\\~x\\~\\~"),
])
def test_md_inline(value, expected):
    assert md_inline(value) == expected and md(value) == expected


def test_md_shows_missing_values_as_a_dash():
    assert md(None) == "–" and md(float("nan")) == "–"


def test_a_dollar_in_a_segment_is_drawn_as_text_not_mathtext():
    inputs = _inputs()
    history = inputs.history.replace({"segment": {SITE: "Site $\\frac{1}{$", f"{SITE}|hate_speech": "Site $x$|hate_speech"}})
    pareto = inputs.pareto.assign(root_cause=["$\\sqrt{$", "tooling"])
    from dataclasses import replace

    _, pngs = content.build(replace(inputs, history=history, pareto=pareto))  # a malformed expression would raise
    assert {"trend_site.png", "heatmap_site_queue.png", "pareto_root_causes.png"} <= set(pngs)
