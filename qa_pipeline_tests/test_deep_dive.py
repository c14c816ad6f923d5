"""Deep dive on demand: the planted spike's driver, figures against a recomputation in pandas,
bad input, the Dagster job with run config, hostile text."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from qa_pipeline import cli
from qa_pipeline.domain.months import month_start, previous_month
from qa_pipeline.resources.warehouse import dispose_engines
from qa_pipeline.sample_data import planted_effects
from qa_pipeline_tests.conftest import SAMPLE_MONTHS, Pipeline, wilson_closed_form

SPIKE = planted_effects(SAMPLE_MONTHS)["spike"]
MONTH = SPIKE["month"]
PREV = f"{previous_month(month_start(MONTH)):%Y-%m}"
WHERE = [f"site={SPIKE['site']}", f"queue={SPIKE['queue']}"]
HOSTILE_SITE = "<script>alert('x')</script> Ops ops.lead@example.com http://evil.example.net/x"
RENAMED_SITE = "Austin"  # a peer of the spike segment, renamed to hostile text in both months


def _month_assets():
    """The month's own assets and its publication: what a deep dive reads (no GX, no report)."""
    from qa_pipeline.assets.publication import MONTH_ASSETS
    from qa_pipeline.definitions import all_assets

    wanted = set(MONTH_ASSETS) | {"month_publication"}
    return [a for a in all_assets if {k.to_user_string() for k in a.keys} & wanted]


@pytest.fixture(scope="module")
def published(tmp_path_factory, sample_raw):
    """The spike month and the month before it, published; one peer site renamed to hostile text."""
    root = tmp_path_factory.mktemp("deep_dive")
    raw = root / "raw"
    shutil.copytree(sample_raw, raw)
    for month in (PREV, MONTH):
        for path in sorted((raw / "audits" / month).glob("*.csv")):
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
            frame.loc[frame["site"] == RENAMED_SITE, "site"] = HOSTILE_SITE
            frame.to_csv(path, index=False)
    p = Pipeline(root, raw)
    assets = _month_assets()
    for month in (PREV, MONTH):
        assert p.run(month, assets=assets).success, month
    yield p
    dispose_engines()


@pytest.fixture
def env(published, monkeypatch):
    monkeypatch.setenv("QA_WAREHOUSE_URL", published.url)
    monkeypatch.setenv("QA_REPORTS_DIR", str(published.tmp / "reports"))
    return published


@pytest.fixture(scope="module")
def dive(published):
    from qa_pipeline.reports import deep_dive as report

    segment = report.segment_for(published.warehouse, MONTH, WHERE)
    return report.read(published.warehouse, segment, min_people=3)


def _cli(args: list[str], capsys) -> tuple[int, str, str]:
    rc = cli.main(["deep-dive", *args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_the_deep_dive_of_the_planted_spike_names_its_main_driver(env, capsys):
    args = ["--month", MONTH]
    for w in WHERE:
        args += ["--where", w]
    rc, out, err = _cli(args, capsys)
    assert rc == 0, err
    path = out.strip().splitlines()[-1]
    assert path.endswith("/deep_dive.html") and f"/deep-dives/{MONTH}-site-" in path
    html = Path(path).read_text(encoding="utf-8")
    finding = html[html.index('id="finding"'):html.index('id="accuracy"')]
    # the planted cause: a new cohort at the site, i.e. the first tenure band
    assert "Main driver: tenure band 0-30" in finding
    assert re.search(r"up \d+\.\d percentage points from \d+\.\d % in", finding)
    md = Path(path).with_suffix(".md").read_text(encoding="utf-8")
    assert "Main driver: tenure band 0-30" in md
    charts = sorted(p.name for p in (env.tmp / "reports").glob("deep-dives/*/charts/*.png"))
    assert {"accuracy_12_months.png", "drivers.png", "root_causes.png"} <= set(charts)
    # the moderators of the cohort are named, for the quality team
    people = html[html.index('id="people"'):]
    assert "MOD-29" in people and "AUD-" in people


def _counts(frame: pd.DataFrame) -> tuple[int, int]:
    return len(frame), int(frame["is_error_final"].astype(bool).sum())


def test_figures_equal_an_independent_recomputation_from_audits_clean(published, dive):
    audits = published.table("qa_core.audits_clean")
    audits["month"] = pd.to_datetime(audits["month"]).dt.strftime("%Y-%m")
    in_queue = audits["queue"] == SPIKE["queue"]
    segment = audits[in_queue & (audits["site"] == SPIKE["site"])]
    peers = audits[in_queue & (audits["site"] != SPIKE["site"])]
    hist = dive.history.assign(key=pd.to_datetime(dive.history["month"]).dt.strftime("%Y-%m")).set_index("key")
    for month in (PREV, MONTH):
        for prefix, frame in (("", segment), ("peers_", peers), ("all_", audits)):
            n, e = _counts(frame[frame["month"] == month])
            row = hist.loc[month]
            assert (row[f"{prefix}audits"], row[f"{prefix}errors"]) == (n, e), (month, prefix)
            low, high = wilson_closed_form(n - e, n)
            assert row[f"{prefix}accuracy"] == pytest.approx(1 - e / n, abs=1e-12)
            assert row[f"{prefix}ci_low"] == pytest.approx(low, abs=1e-12)
            assert row[f"{prefix}ci_high"] == pytest.approx(high, abs=1e-12)
    n0, e0 = _counts(segment[segment["month"] == PREV])
    n1, e1 = _counts(segment[segment["month"] == MONTH])
    change = e1 / n1 - e0 / n0
    assert change > 0.1  # the planted spike
    # the exact decomposition, written out per dimension: shares, rates, s̄·Δr and r̄·Δs
    for dimension in ["tenure_band", "content_type", "policy", "auditor_id", "moderator_id"]:
        got = dive.drivers[dive.drivers["dimension"] == dimension].set_index("segment")
        assert got["contribution"].sum() == pytest.approx(change, abs=1e-12), dimension
        by = {m: segment[segment["month"] == m].groupby(dimension)["is_error_final"] for m in (PREV, MONTH)}
        n_prev, e_prev = by[PREV].size(), by[PREV].sum()
        n_cur, e_cur = by[MONTH].size(), by[MONTH].sum()
        values = sorted(set(n_prev.index) | set(n_cur.index))
        assert sorted(got.index) == values, dimension
        for v in values:
            s0, s1 = n_prev.get(v, 0) / n0, n_cur.get(v, 0) / n1
            r0 = e_prev[v] / n_prev[v] if v in n_prev else None
            r1 = e_cur[v] / n_cur[v] if v in n_cur else None
            r0, r1 = (r1 if r0 is None else r0), (r0 if r1 is None else r1)
            rate, mix = (s0 + s1) / 2 * (r1 - r0), (r0 + r1) / 2 * (s1 - s0)
            row = got.loc[v]
            assert row["rate_effect"] == pytest.approx(rate, abs=1e-12), (dimension, v)
            assert row["mix_effect"] == pytest.approx(mix, abs=1e-12), (dimension, v)
            assert row["excess"] == pytest.approx(rate + mix - (s0 + s1) / 2 * change, abs=1e-12), (dimension, v)
    # the main driver is the largest excess in the direction of the change, found here by brute force
    best = max(dive.drivers.itertuples(), key=lambda r: r.excess)
    assert (dive.main_driver["dimension"], dive.main_driver["segment"]) == (best.dimension, best.segment)
    assert (best.dimension, best.segment) == ("tenure_band", "0-30")
    # root causes: errors of the segment by cause, recounted
    errors = segment[(segment["month"] == MONTH) & segment["is_error_final"].astype(bool)]
    causes = errors["root_cause"].fillna("unknown").value_counts()
    assert dict(zip(dive.pareto["root_cause"], dive.pareto["errors"], strict=True)) == causes.to_dict()
    assert dive.pareto["cumulative_share"].iloc[-1] == pytest.approx(1.0)
    # disputes and the people behind the errors
    cur = segment[segment["month"] == MONTH]
    assert dive.disputes["disputed"] == int(cur["dispute_outcome"].notna().sum())
    assert dive.disputes["overturned"] == int((cur["dispute_outcome"] == "overturned").sum())
    per_mod = cur.groupby("moderator_id")["is_error_final"].sum().astype(int)
    top = dive.moderators.set_index("moderator_id")["errors"]
    assert all(per_mod[m] == top[m] for m in top.index) and top.max() == per_mod.max()


def test_bad_input_is_one_clear_line_and_exit_code_2(env, capsys):
    cases = [
        (["--month", MONTH, "--where", "sight=Dublin"], r"unknown dimension 'sight'; did you mean 'site'\? valid dimensions: site, "),
        (["--month", MONTH, "--where", "site=BPO-B Kuala Lumpr"], r"has site = 'BPO-B Kuala Lumpr'; closest matches: 'BPO-B Kuala Lumpur'"),
        (["--month", "2026-06", "--where", "site=Dublin"], r"2026-06 is not published \(published months: 2026-03, 2026-04\)"),
        (["--month", "April", "--where", "site=Dublin"], r"--month 'April': expected YYYY-MM"),
        (["--month", MONTH, "--where", "queue=hate_speech", "--where", f"site={HOSTILE_SITE}x"], r"closest matches: "),
        (["--month", MONTH, "--where", "site"], r"expected dimension=value"),
    ]
    for args, message in cases:
        rc, out, err = _cli(args, capsys)
        assert rc == 2, args
        assert re.search(message, err), (args, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        assert out == ""


def test_the_dagster_job_runs_with_run_config(published):
    import dagster as dg

    from qa_pipeline.definitions import defs

    job = defs.resolve_job_def("deep_dive")
    config = {"ops": {"deep_dive_report": {"config": {"month": MONTH, "where": WHERE}}}}
    result = job.execute_in_process(run_config=config, resources=published.resources(),
                                    instance=dg.DagsterInstance.ephemeral())
    assert result.success
    path = result.output_for_node("deep_dive_report")
    assert path.endswith("deep_dive.html") and "Main driver: tenure band 0-30" in Path(path).read_text(encoding="utf-8")
    meta = next(e for e in result.all_node_events if e.event_type_value == "STEP_OUTPUT").event_specific_data.metadata
    assert meta["main_driver"].value == "tenure_band = 0-30" and meta["audits"].value > 0
    bad = {"ops": {"deep_dive_report": {"config": {"month": MONTH, "where": ["queue=hate_speeh"]}}}}
    failed = job.execute_in_process(run_config=bad, resources=published.resources(),
                                    instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    assert not failed.success
    failure = next(e for e in failed.all_node_events if e.is_step_failure)
    assert "closest matches: 'hate_speech'" in failure.step_failure_data.error.message


def test_text_from_the_data_is_escaped_redacted_and_nothing_loads_from_the_network(env, capsys, dive):
    rc, out, err = _cli(["--month", MONTH, "--where", f"site={HOSTILE_SITE}"], capsys)
    assert rc == 0, err
    path = out.strip().splitlines()[-1]
    folder = path.rsplit("/", 2)[-2]
    assert re.fullmatch(r"2026-04-[a-z0-9-]+", folder) and "example" not in folder  # nor leaks into it
    spike = next((env.tmp / "reports" / "deep-dives").glob(f"{MONTH}-site-bpo-b-*/deep_dive.html"))
    for html in (Path(path).read_text(encoding="utf-8"), spike.read_text(encoding="utf-8")):
        assert "&lt;script&gt;alert(" in html  # shown as text, in the title and the peers table
        assert "<script" not in html.lower()
        assert "ops.lead@example.com" not in html and "[email]" in html
        assert "evil.example.net" not in html
        # every image is inline, the only link is the Markdown next to it
        assert set(re.findall(r'(?:src|href)="([a-z]+:|[^"]*)', html)) <= {"data:", "deep_dive.md"}
        assert 'http-equiv="Content-Security-Policy"' in html
    md = Path(path).with_suffix(".md").read_text(encoding="utf-8")
    assert not re.search(r"<(?!\s)", md) and "ops.lead@example.com" not in md


def test_the_early_warning_section_shows_the_segment_s_signal(published, dive):
    from qa_pipeline.reports import deep_dive as report
    from qa_pipeline.reports.render import render
    from qa_pipeline.schemas import warehouse as wh

    table = wh.metadata.tables.get(report.EARLY_WARNINGS)
    if table is None:  # no early-warning table in this build: the file says so
        ctx, _ = report.build(dive, 0.95)
        assert ctx["early_warnings"] is None
        assert "No early-warning data" in render("deep_dive.html.j2", generated_at="now", **ctx)
        return
    warehouse = published.warehouse
    month = pd.Timestamp(month_start(MONTH))
    pair = f"{SPIKE['site']}|{SPIKE['queue']}"
    existing = warehouse.read_table(report.EARLY_WARNINGS, [month.date()])
    if not ((existing["dimension"] == "site×queue") & (existing["segment"] == pair)).any():
        crafted = {"month": month, "dimension": "site×queue", "segment": pair, "baseline_error_rate": 0.08,
                   "audits": 100, "audits_to_date": 100, "errors": 31, "errors_to_date": 31, "cusum_max": 9.5,
                   "threshold": 4.25, "first_signal_date": pd.Timestamp(f"{MONTH}-09"), "signalled": True}
        row = {c.name: crafted.get(c.name) for c in table.columns}
        warehouse.replace_partition(report.EARLY_WARNINGS, pd.concat([existing, pd.DataFrame([row])]), month.date())
    rows = report._early_warnings(warehouse, dive.segment)
    assert set(zip(rows["dimension"], rows["segment"], strict=True)) <= {
        ("site", SPIKE["site"]), ("queue", SPIKE["queue"]), ("site×queue", pair)}
    mine = rows[(rows["dimension"] == "site×queue") & (rows["segment"] == pair)].iloc[0]
    fresh = report.read(warehouse, dive.segment, min_people=3)
    html = render("deep_dive.html.j2", generated_at="now", **report.build(fresh, 0.95)[0])
    section = html[html.index('id="early-warning"'):html.index('id="people"')]
    shown = (pd.Timestamp(mine["first_signal_date"]).strftime("%Y-%m-%d") if pd.notna(mine["first_signal_date"])
             else "no signal")
    assert "site×queue" in section and shown in section


@pytest.mark.postgres
def test_postgresql_gives_the_same_deep_dive(published, dive, postgres_url):
    """The same SQL on PostgreSQL, over a copy of the published rows the DuckDB deep dive read."""
    import sqlalchemy as sa

    from qa_pipeline.reports import deep_dive as report
    from qa_pipeline.resources.warehouse import Warehouse, to_arrow
    from qa_pipeline.schemas import warehouse as wh

    pg = Warehouse(url=postgres_url)
    with pg.engine.begin() as conn:
        conn.execute(sa.schema.CreateSchema(wh.CORE, if_not_exists=True))
        for table in (wh.audits_clean, wh.publications):  # plain tables: partitions are the publication's business
            table.create(conn)
    for table in (wh.audits_clean, wh.publications):
        pg.append_arrow(table, to_arrow(published.table(table.fullname), table))
    segment = report.segment_for(pg, MONTH, WHERE)
    on_postgres = report.read(pg, segment, min_people=3)
    assert on_postgres.finding == dive.finding
    for name in ("history", "drivers", "pareto", "themes", "moderators", "auditors", "peers"):
        a = getattr(on_postgres, name).reset_index(drop=True)
        b = getattr(dive, name).reset_index(drop=True)
        key = [c for c in ("month", "dimension", "segment", "value", "root_cause", "term", "moderator_id",
                           "auditor_id") if c in b.columns]
        pd.testing.assert_frame_equal(a.sort_values(key, ignore_index=True), b.sort_values(key, ignore_index=True),
                                      check_dtype=False, check_exact=False, rtol=1e-12, obj=name)
    assert on_postgres.disputes == dive.disputes
