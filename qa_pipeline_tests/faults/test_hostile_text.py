"""Hostile text end to end: comments with markup, formulas and personal data, ids carrying quotes
and SQL. A month is run twice on the same rows, once with hostile text and once with benign text in
the same places: nothing unescaped or unredacted reaches `qa_reporting` or the report files, every
table still exists, and the figures (`qa_reporting.quality_metrics`) are the same."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from qa_pipeline.resources.warehouse import dispose_engines
from qa_pipeline_tests.conftest import Pipeline
from qa_pipeline_tests.faults import corpus, summary, tables
from qa_pipeline_tests.faults.tables import copy_warehouse

PERSONAL = ["zelda.quux@example.com", "zelda dot quux at example dot com", "555-1234", "+44 20 7946 0958",
            "203.0.113.77", "@zquux_handle"]
# pieces of the personal data that must not survive anywhere outside qa_core (whole words, any case)
PERSONAL_TOKENS = [r"\bzelda\b", r"\bquux\b", r"\b555-1234\b", r"\b7946\b", r"\b0958\b", r"\b203\.0\.113\.77\b",
                   r"zquux_handle"]
DATA_URI = re.compile(r"data:[\w/+.-]+;base64,[A-Za-z0-9+/=]+")  # embedded charts: not text
MARKUP = ["<script>alert('xss')</script> wrong call", "<img src=x onerror=alert(1)> wrong call",
          "[click here](javascript:alert(1)) wrong call", '=HYPERLINK("http://evil.example/x","click")',
          "=cmd|' /C calc'!A0", "@SUM(1)", "+1+1 formula", "-2+3 formula"]
COMMENTS = [f"Wrong call, see {p} for details" for p in PERSONAL] + MARKUP  # 14 comments
# hostile id → its benign twin in the control run
SITES = {"x'); DROP TABLE qa_core.audits_clean;--": "SiteSQL", "=cmd|' /C calc'!A0": "SiteCmd",
         "<img src=x onerror=alert(1)>": "SiteImg", "@SUM(1)": "SiteAt", '"quoted" site': "SiteQuoted"}
MARKETS = {"<b>GB</b>": "GBX", "-US": "USX"}
MODERATOR = ('MOD-"quoted"', "MOD-QUOTED")
AUDITOR = ("AUD-'; DROP TABLE qa_reporting.quality_metrics;--", "AUD-SQL")
CONTENT = ("C-'; DELETE FROM qa_core.audits_clean WHERE ''='", "C-BENIGN")
ROWS = 70  # each comment by 5 distinct auditors about 5 distinct moderators: above the k = 3 of themes
FORMULA_START = ("=", "+", "-", "@")


def _rows(hostile: bool) -> list[dict]:
    pick = (lambda h, b: h) if hostile else (lambda h, b: b)
    auditors = ["AUD-01", "AUD-02", "AUD-03", "AUD-04", pick(*AUDITOR)]
    moderators = [f"MOD-10{n:02d}" for n in range(1, 9)] + [pick(*MODERATOR)]
    sites, markets = list(SITES.items()), list(MARKETS.items())
    rows = []
    for i in range(ROWS):
        day = 1 + i % 27
        rows.append(corpus.A(
            "hostile", i, audited_at=f"{corpus.MONTH}-{day:02d}T10:00:00Z", decision_at=f"{corpus.MONTH}-{day:02d}T08:00:00Z",
            auditor_id=auditors[i % 5], moderator_id=moderators[i % 9], site=pick(*sites[i % 5]),
            market=pick(*markets[i % 2]), content_id=pick(*CONTENT) + f"-{i}",
            action_auditor="restrict", error_severity="major", root_cause="policy_knowledge",
            auditor_comment=COMMENTS[i % len(COMMENTS)] if hostile else f"Wrong call, benign note number {i % len(COMMENTS)}"))
    return rows


def _run(base: Path, template: Path, folder: Path, hostile: bool) -> tuple[dict, Path]:
    raw = folder / "raw"
    shutil.copytree(base, raw)
    corpus.write_rows(raw / "audits" / corpus.MONTH / "zz_text.csv", _rows(hostile), columns=corpus.AUDIT_COLUMNS)
    # three of the hostile auditor's audits disputed, so that per-auditor dispute figures exist
    disputes = [{"dispute_id": f"HD-{i}", "audit_id": f"hostile-{i}", "disputed_at": f"{corpus.MONTH}-{2 + i % 27:02d}T09:00:00Z",
                 "resolved_at": f"{corpus.MONTH}-{3 + i % 27:02d}T09:00:00Z", "reason": "Context was missing",
                 "outcome": "overturned" if i == 4 else "upheld"} for i in (4, 9, 14)]
    corpus.write_rows(raw / "disputes" / corpus.MONTH / "zz_text_disputes.csv", disputes, columns=corpus.DISPUTE_COLUMNS)
    corpus.append_rows(raw / "roster" / "roster.csv", [{"moderator_id": MODERATOR[0] if hostile else MODERATOR[1],
                                                         "site": "Dublin", "team_type": "in_house", "hire_date": "2024-01-15",
                                                         "language": "en", "status": "active"}])
    pipeline = Pipeline(folder, raw, warehouse_url=copy_warehouse(template, folder / "wh"))
    result = pipeline.run(corpus.MONTH)
    dispose_engines()
    assert result.success, f"the {'hostile' if hostile else 'control'} month did not publish"
    return tables.snapshot(folder / "wh" / template.name), folder / "reports"


def _normalise(segment: str) -> str:
    """A hostile segment as its benign twin: without the formula guard, ids mapped."""
    if isinstance(segment, str) and len(segment) > 1 and segment[0] == "'" and segment[1] in FORMULA_START:
        segment = segment[1:]
    for hostile, benign in sorted({**SITES, **MARKETS}.items(), key=lambda kv: -len(kv[0])):
        segment = segment.replace(hostile, benign)
    return segment


def _text_values(frame: pd.DataFrame):
    for col in frame.columns:
        if frame[col].dtype == object or pd.api.types.is_string_dtype(frame[col]):
            for v in frame[col].dropna().unique():
                if isinstance(v, str):
                    yield col, v


def _report_files(reports: Path) -> list[Path]:
    files = [p for p in (reports / corpus.MONTH).rglob("*") if p.suffix in (".html", ".md", ".svg")]
    return files + [p for p in [reports / "index.html"] if p.exists()]


@pytest.fixture(scope="module")
def runs(fault_base, fault_template, tmp_path_factory):
    """The month run twice: benign text (control), hostile text; the second's report folder."""
    folder = tmp_path_factory.mktemp("hostile")
    control, _ = _run(fault_base, fault_template, folder / "control", hostile=False)
    hostile, reports = _run(fault_base, fault_template, folder / "hostile", hostile=True)
    return control, hostile, reports


def test_no_person_identifier_reaches_qa_reporting(runs):
    """Contract §5: `qa_reporting` holds no moderator, auditor, rater or reviewer id (the hostile
    auditor's audits are disputed, so per-auditor dispute figures exist: in `qa_core`, where the
    same scan finds the hostile auditor, so it reads the right values)."""
    _, hostile, _ = runs
    found = [f"{name}.{col}: {value[:80]!r}" for name, frame in hostile.items() if name.startswith("qa_reporting.")
             for col, value in _text_values(frame) if AUDITOR[0] in value or MODERATOR[0] in value]
    in_core = [name for name, frame in hostile.items() if name.startswith("qa_core.")
               for _, value in _text_values(frame) if AUDITOR[0] in value]
    summary.record("hostile", "no person identifier in qa_reporting", ok=not found, detail="; ".join(found)[:1000])
    assert not found, f"person identifiers reach qa_reporting: {found}"
    assert "qa_core.auditor_dispute_metrics" in in_core, "the scan did not see the hostile auditor in qa_core"


def test_hostile_text_is_escaped_redacted_and_changes_no_figure(runs):
    problems: list[str] = []
    try:
        control, hostile, reports = runs

        # every table still exists, and the hostile rows were read as data
        missing = sorted(set(control) - set(hostile))
        if missing:
            problems.append(f"tables gone after the hostile run: {missing}")
        clean = hostile["qa_core.audits_clean"]
        if int(clean.audit_id.astype(str).str.startswith("hostile-").sum()) != ROWS:
            problems.append("the hostile audits are not all in qa_core.audits_clean")

        # qa_reporting: no personal data, nothing a spreadsheet would run as a formula
        reached = False
        for name, frame in hostile.items():
            if not name.startswith("qa_reporting."):
                continue
            for col, value in _text_values(frame):
                low = value.lower()
                leaked = [t for t in PERSONAL_TOKENS if re.search(t, low)]
                if leaked:
                    problems.append(f"{name}.{col}: personal data {leaked} in {value[:120]!r}")
                if value.startswith(FORMULA_START):
                    problems.append(f"{name}.{col}: a formula reaches qa_reporting: {value[:120]!r}")
                reached = reached or "cmd|" in value
        if not reached:
            problems.append("no hostile site reached qa_reporting: the test checked nothing")

        # the report files: escaped once, no script, no javascript: link, no personal data
        files = _report_files(reports)
        if not any(p.suffix == ".md" for p in files) or not any(p.suffix == ".html" for p in files):
            problems.append(f"report files missing: {[p.name for p in files]}")
        for path in files:
            text = DATA_URI.sub("data:…", path.read_text(encoding="utf-8", errors="replace"))
            low = text.lower()
            rel = path.relative_to(reports).as_posix()
            problems += [f"{rel}: personal data {m[0]!r}" for t in PERSONAL_TOKENS if (m := re.search(t, low))]
            for raw in ("<script>alert", "<img src=x", "<b>gb</b>"):
                if raw in low:
                    problems.append(f"{rel}: unescaped markup {raw!r}")
            if re.search(r"(href|src|action)\s*=\s*[\"']?\s*javascript:", low):
                problems.append(f"{rel}: a javascript: link")
            if path.suffix == ".md":
                if re.search(r"(?<!\\)\]\(\s*javascript:", low):
                    problems.append(f"{rel}: a Markdown link to javascript:")
                if re.search(r"&amp;(lt|gt|amp|quot|#\d+);", text):
                    problems.append(f"{rel}: escaped twice ({re.search(r'&amp;(lt|gt|amp|quot|#[0-9]+);', text)[0]})")
                if re.search(r"(?<![\\`])<(script|img|b)\b", low):
                    problems.append(f"{rel}: raw HTML in the Markdown report")

        # the figures: quality_metrics equal to the control run's, segment for segment
        def figures(snap):
            qm = snap["qa_reporting.quality_metrics"].copy()
            qm = qm[qm.month.astype(str).str[:7] == corpus.MONTH]
            qm["segment"] = qm["segment"].map(_normalise)
            return qm.sort_values(["dimension", "segment"], ignore_index=True)

        a, b = figures(control), figures(hostile)
        try:
            pd.testing.assert_frame_equal(a, b, check_dtype=False, obj="quality_metrics (control vs hostile)")
        except AssertionError as exc:
            only = sorted(set(zip(a.dimension, a.segment, strict=True)) ^ set(zip(b.dimension, b.segment, strict=True)))
            problems.append(f"the hostile text changed the figures: {str(exc)[:600]}; segments not shared: {only[:10]}")
    finally:
        summary.record("hostile", "hostile text end to end", ok=not problems, detail="; ".join(problems)[:3000])
    if problems:
        pytest.fail("\n".join(problems))
