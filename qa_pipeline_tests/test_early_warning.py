"""Early warning inside the month: the CUSUM, its thresholds, the committed sample, the daily job."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from qa_pipeline.domain.early_warning import WarningRule, early_warnings
from qa_pipeline.domain.months import month_start
from qa_pipeline.sample_data import planted_effects
from qa_pipeline.stats.cusum import bernoulli_cusum, llr_weights, shifted_rate
from qa_pipeline_tests.conftest import Pipeline
from qa_pipeline_tests.test_analysis import clean_months, month_metrics

COMMITTED = Path(__file__).resolve().parents[1] / "data" / "raw"


def plain_cusum(errors, p0: float, odds_ratio: float) -> list[float]:
    """Page's CUSUM written out: p₁ from the odds, the log-likelihood ratio of each audit, reset at 0."""
    odds1 = odds_ratio * p0 / (1 - p0)
    p1 = odds1 / (1 + odds1)
    s, out = 0.0, []
    for x in errors:
        s = max(0.0, s + (math.log(p1 / p0) if x else math.log((1 - p1) / (1 - p0))))
        out.append(s)
    return out


def test_the_cusum_is_pages_recursion_recomputed_by_a_plain_loop():
    rng = np.random.default_rng(3)
    for p0, odds_ratio, n in [(0.05, 2.0, 500), (0.3, 1.5, 200), (0.01, 3.0, 1000), (0.12, 2.0, 1)]:
        x = rng.random(n) < p0 * 1.6
        assert bernoulli_cusum(x, p0, odds_ratio) == pytest.approx(plain_cusum(x, p0, odds_ratio), abs=1e-9)
    # p₁ for odds ratio 2 at p₀ = 5 %: odds 0.05/0.95 doubled, 0.1/1.05
    assert shifted_rate(0.05, 2.0) == pytest.approx(0.1 / 1.05, rel=1e-12)
    w1, w0 = llr_weights(0.05, 2.0)
    assert w1 == pytest.approx(math.log(2 / 1.05)) and w0 == pytest.approx(math.log(0.95 / 1.05 / 0.95))
    with pytest.raises(ValueError, match="odds ratio must be > 1"):
        shifted_rate(0.05, 1.0)


def test_the_simulated_maxima_have_the_distribution_of_audit_by_audit_charts():
    """`null_maxima` simulates error by error; the charts run audit by audit in a plain loop agree."""
    from qa_pipeline.stats.cusum import null_maxima

    n, p0, runs = 80, 0.06, 4000
    fast = null_maxima(n, p0, 2.0, runs, np.random.default_rng(5))
    rng = np.random.default_rng(6)
    slow = np.array([max(plain_cusum(rng.random(n) < p0, p0, 2.0)) for _ in range(runs)])
    for q in (0.5, 0.9, 0.99):
        assert np.quantile(fast, q) == pytest.approx(np.quantile(slow, q), abs=0.25), q
    assert fast.mean() == pytest.approx(slow.mean(), abs=4 * slow.std() / math.sqrt(runs) * math.sqrt(2))


def _history(cells: dict[tuple[str, str], tuple[int, float]], months: list[date]) -> pd.DataFrame:
    """quality_metrics rows of site×queue, site and queue for months at fixed volumes and rates."""
    rows = []
    for m in months:
        for (site, queue), (n, p) in cells.items():
            rows.append((m, "site×queue", f"{site}|{queue}", n, round(n * p)))
        for dim, pos in (("site", 0), ("queue", 1)):
            for value in sorted({k[pos] for k in cells}):
                members = [v for k, v in cells.items() if k[pos] == value]
                rows.append((m, dim, value, sum(n for n, _ in members), sum(round(n * p) for n, p in members)))
    return pd.DataFrame(rows, columns=["month", "dimension", "segment", "audits", "errors"])


def test_no_change_signals_anywhere_in_at_most_5_percent_of_months_by_an_independent_simulation():
    """Six site × queue cells, their two sites and three queues, each at a fixed true rate. Every
    simulated no-change month draws its three baseline months too (binomially, as an analyst's
    history is drawn), gets its thresholds from the module, then runs through the plain recursion,
    all charts at once: the false-alarm rate over the baseline's sampling error as well as the
    month's."""
    cells = {("A", "q1"): (60, 0.05), ("A", "q2"): (40, 0.10), ("A", "q3"): (25, 0.04),
             ("B", "q1"): (50, 0.08), ("B", "q2"): (35, 0.06), ("B", "q3"): (30, 0.12)}
    month = date(2026, 4, 1)
    baseline_months = [date(2026, 1, 1), date(2026, 2, 1), date(2026, 3, 1)]
    empty = pd.DataFrame(columns=["audit_id", "site", "queue", "decision_at", "is_error"])
    rng = np.random.default_rng(2026)
    charts = [(("site×queue", f"{s}|{q}"), [(s, q)]) for s, q in cells]
    charts += [(("site", s), [k for k in cells if k[0] == s]) for s in ("A", "B")]
    charts += [(("queue", q), [k for k in cells if k[1] == q]) for q in ("q1", "q2", "q3")]
    months, alarms = 400, 0
    for _ in range(months):
        drawn = []
        for m in baseline_months:
            errors = {k: int(rng.binomial(n, p)) for k, (n, p) in cells.items()}
            drawn += [(m, "site×queue", f"{s}|{q}", cells[(s, q)][0], errors[(s, q)]) for s, q in cells]
            for dim, pos in (("site", 0), ("queue", 1)):
                for value in sorted({k[pos] for k in cells}):
                    members = [k for k in cells if k[pos] == value]
                    drawn.append((m, dim, value, sum(cells[k][0] for k in members), sum(errors[k] for k in members)))
        history = pd.DataFrame(drawn, columns=["month", "dimension", "segment", "audits", "errors"])
        plan = early_warnings(empty, history, month, WarningRule(simulations=2000), as_of=month,
                              final=False).set_index(["dimension", "segment"])
        assert len(plan) == 11 and plan["threshold"].notna().all()
        # each cell at its true rate, its audits at uniform times; a site or queue reads them in time order
        draws = {k: (rng.random(n), rng.random(n) < p) for k, (n, p) in cells.items()}
        for key, members in charts:
            times = np.concatenate([draws[k][0] for k in members])
            errors = np.concatenate([draws[k][1] for k in members])[np.argsort(times)]
            row = plan.loc[key]
            if max(plain_cusum(errors, row.baseline_error_rate, 2.0)) > row.threshold:
                alarms += 1
                break
    rate = alarms / months
    # ≤ 5 % up to the simulation's error (2.5 standard errors), and not a chart that can never signal
    assert 0.005 < rate <= 0.05 + 2.5 * math.sqrt(0.05 * 0.95 / months), rate


@pytest.fixture(scope="module")
def committed_months():
    months = ["2025-09", "2025-10", "2025-11", "2025-12", "2026-01", "2026-02", "2026-03", "2026-04"]
    clean = clean_months(COMMITTED, months)
    history = pd.concat([month_metrics(a, month_start(m)) for m, a in clean.items()], ignore_index=True)
    return clean, history


def _warnings(committed_months, month: str) -> pd.DataFrame:
    clean, history = committed_months
    audits = clean[month].assign(is_error=clean[month]["is_error_final"])
    return early_warnings(audits, history, month_start(month), WarningRule(), as_of=month_start(month), final=True)


def test_the_committed_sample_flags_the_planted_spike_inside_its_month(committed_months):
    months = [f"{y}-{m:02d}" for y, m in [(2025, i) for i in range(7, 13)] + [(2026, i) for i in range(1, 7)]]
    spike = planted_effects(months)["spike"]
    assert spike["month"] == "2026-04"
    frame = _warnings(committed_months, spike["month"])
    row = frame.set_index(["dimension", "segment"]).loc[("site×queue", f"{spike['site']}|{spike['queue']}")]
    assert row.signalled and row.cusum_max > row.threshold
    assert month_start(spike["month"]) <= row.first_signal_date <= date(2026, 4, 30)
    # audits, errors and baseline against an independent count of the clean audits
    clean, _ = committed_months
    a = clean["2026-04"]
    seg = a[(a.site == spike["site"]) & (a.queue == spike["queue"])]
    assert (row.audits_to_date, row.errors_to_date) == (len(seg), int(seg.is_error_final.sum()))
    before = pd.concat([clean[m] for m in ("2026-01", "2026-02", "2026-03")])
    base = before[(before.site == spike["site"]) & (before.queue == spike["queue"])]
    assert row.baseline_error_rate == pytest.approx((base.is_error_final.sum() + 0.5) / (len(base) + 1), rel=1e-12)
    # the signal date is the decision day of the first audit whose chart exceeds the threshold
    ordered = seg.sort_values(["decision_at", "audit_id"])
    path = plain_cusum(ordered.is_error_final.to_numpy(), row.baseline_error_rate, 2.0)
    first = next(i for i, s in enumerate(path) if s > row.threshold)
    assert ordered.decision_at.iloc[first].date() == row.first_signal_date
    assert row.cusum_max == pytest.approx(max(path), abs=1e-9)


@pytest.mark.parametrize("month", ["2025-12", "2026-01"])
def test_the_committed_sample_signals_nothing_in_a_month_without_a_planted_change(committed_months, month):
    """The planted effects start in 2026-02 (the HS.2 change, EXP-01); 2025-11 has one marginal
    false signal (chart 4.943 against 4.939), as a 5 % family-wise rate allows."""
    frame = _warnings(committed_months, month)
    assert len(frame) == 59 and frame["threshold"].notna().all()
    assert not frame["signalled"].any(), frame[frame.signalled]


def test_a_segment_without_history_borrows_its_parents_baseline_and_no_history_monitors_nothing():
    history = _history({("A", "q1"): (100, 0.05), ("B", "q1"): (100, 0.1)}, [date(2026, 3, 1)])
    history = pd.concat([history, pd.DataFrame([(date(2026, 3, 1), "overall", "all", 200, 15)],
                                               columns=history.columns)])
    audits = pd.DataFrame({"audit_id": ["x1", "x2"], "site": ["C", "A"], "queue": ["q1", "q9"],
                           "decision_at": pd.to_datetime(["2026-04-02", "2026-04-03"], utc=True),
                           "is_error": [True, False]})
    frame = early_warnings(audits, history, date(2026, 4, 1), WarningRule(simulations=2000),
                           as_of=date(2026, 4, 3), final=False).set_index(["dimension", "segment"])
    assert frame.loc[("site×queue", "C|q1"), "baseline_source"] == "queue (no history of its own)"
    assert frame.loc[("site×queue", "C|q1"), "baseline_error_rate"] == pytest.approx(15.5 / 201)
    assert frame.loc[("site", "C"), "baseline_source"] == "overall (no history of its own)"
    assert frame.loc[("site×queue", "A|q9"), "baseline_source"] == "overall (no history of its own)"
    nothing = early_warnings(audits, history.iloc[0:0], date(2026, 4, 1), WarningRule(), as_of=date(2026, 4, 3),
                             final=False)
    assert nothing["threshold"].isna().all() and not nothing["signalled"].any()
    assert nothing["note"].str.contains("not monitored").all()


def test_the_monthly_partitions_never_hold_the_month_in_progress():
    from qa_pipeline.assets.common import monthly
    from qa_pipeline.assets.month_to_date import daily

    mid_month = datetime(2026, 4, 15, 7, 0, tzinfo=UTC)
    assert monthly.get_partition_keys(current_time=mid_month)[-1] == "2026-03-01"
    assert daily.get_partition_keys(current_time=mid_month)[-1] == "2026-04-14"


def test_the_daily_job_flags_the_spike_days_after_it_starts_and_publishes_nothing_else(tmp_path, sample_raw):
    """Seed-11 sample: the spike is 2026-04 at BPO-B × hate speech. Baselines: 2026-01..03
    published (their quality_metrics, as the pipeline computes them); then the daily job as of
    2026-04-14, the month's run, and the daily job again."""
    from qa_pipeline.definitions import defs
    from qa_pipeline.resources.warehouse import dispose_engines

    p = Pipeline(tmp_path, sample_raw)
    for m, audits in clean_months(sample_raw, ["2026-01", "2026-02", "2026-03"]).items():
        p.warehouse.replace_partition("qa_reporting.quality_metrics", month_metrics(audits, month_start(m)),
                                      month_start(m))
    job = defs.resolve_job_def("early_warning_daily")
    result = job.execute_in_process(partition_key="2026-04-14", resources=p.resources(), instance=p.instance)
    assert result.success
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {"quarantined_share_within_limit": True, "every_row_accounted_for": True}
    ew = p.table("qa_reporting.early_warnings")
    assert set(pd.to_datetime(ew["month"]).dt.date) == {date(2026, 4, 1)}
    assert not ew["final"].any() and set(pd.to_datetime(ew["as_of"]).dt.date) == {date(2026, 4, 14)}
    row = ew.set_index(["dimension", "segment"]).loc[("site×queue", "BPO-B Kuala Lumpur|hate_speech")]
    assert row.signalled and date(2026, 4, 1) <= pd.Timestamp(row.first_signal_date).date() <= date(2026, 4, 14)
    # the audits so far: audited by the end of the 14th, counted independently from the gate's clean rows
    clean = clean_months(sample_raw, ["2026-04"])["2026-04"]
    so_far = clean[(clean.audited_at < pd.Timestamp("2026-04-15", tz="UTC"))
                   & (clean.site == "BPO-B Kuala Lumpur") & (clean.queue == "hate_speech")]
    assert (row.audits_to_date, row.errors_to_date) == (len(so_far), int(so_far.is_error.sum()))
    # nothing else of the month is published, nothing is left staged
    assert p.table("qa_core.audits_clean").empty
    wh = p.warehouse
    assert not wh.has_table("qa_core.publications") or p.table("qa_core.publications").empty
    assert not wh.has_table("qa_staging.staged_tables") or p.table("qa_staging.staged_tables").empty

    # the month's run writes the final rows (its own figures, their publication, the warning and
    # its publication: the rest of the month's graph does not touch the table); a daily run
    # afterwards leaves them
    from qa_pipeline.assets.publication import MONTH_ASSETS
    from qa_pipeline.definitions import all_assets

    wanted = {*MONTH_ASSETS, "month_publication", "early_warning", "cross_month_publication"}
    selection = [a for a in all_assets if {k.to_user_string() for k in a.keys} & wanted]
    month_run = dg.materialize(all_assets, selection=selection, partition_key="2026-04-01",
                               resources=p.resources(), instance=p.instance)
    assert month_run.success
    final = p.table("qa_reporting.early_warnings")
    assert final["final"].all() and set(pd.to_datetime(final["as_of"]).dt.date) == {date(2026, 4, 30)}
    spike = final.set_index(["dimension", "segment"]).loc[("site×queue", "BPO-B Kuala Lumpur|hate_speech")]
    assert spike.signalled and spike.threshold == pytest.approx(row.threshold)  # the same threshold all month
    again = job.execute_in_process(partition_key="2026-04-20", resources=p.resources(), instance=p.instance)
    assert again.success
    mat = again.asset_materializations_for_node("early_warning_to_date")[0]
    assert mat.metadata["published"].value is False
    pd.testing.assert_frame_equal(p.table("qa_reporting.early_warnings"), final)
    dispose_engines()


@pytest.mark.postgres
def test_month_to_date_rows_never_replace_final_rows_or_a_later_day(warehouse_url):
    """The daily publication on both engines: a day replaces the month's month-to-date rows, an
    earlier day does not, the final rows stay; a final row published meanwhile makes the replacing
    transaction fail whole (its key), leaving what was published."""
    import sqlalchemy as sa

    from qa_pipeline.assets.month_to_date import publish_month_to_date
    from qa_pipeline.domain.early_warning import COLUMNS
    from qa_pipeline.resources.warehouse import Warehouse
    from qa_pipeline.schemas.warehouse import early_warnings as t

    store = Warehouse(url=warehouse_url)
    april = date(2026, 4, 1)

    def rows(as_of: date, final: bool, segments=("A|q1", "B|q1")) -> pd.DataFrame:
        return pd.DataFrame([dict(month=april, dimension="site×queue", segment=s, baseline_error_rate=0.05,
                                  baseline_audits=300, baseline_source="segment", expected_audits=100,
                                  audits_to_date=as_of.day, errors_to_date=1, cusum=0.5, cusum_max=1.0, threshold=4.0,
                                  first_signal_date=None, signalled=False, as_of=as_of, final=final, note=None)
                             for s in segments], columns=COLUMNS)

    def published() -> pd.DataFrame:
        return store.read_table("qa_reporting.early_warnings").sort_values("segment", ignore_index=True)

    assert publish_month_to_date(store, rows(date(2026, 4, 10), False), april, date(2026, 4, 10)) is None
    assert publish_month_to_date(store, rows(date(2026, 4, 12), False, ("A|q1",)), april, date(2026, 4, 12)) is None
    assert list(published().segment) == ["A|q1"] and published().audits_to_date.tolist() == [12]
    assert "a later day" in publish_month_to_date(store, rows(date(2026, 4, 11), False), april, date(2026, 4, 11))
    store.replace_partition("qa_reporting.early_warnings", rows(date(2026, 4, 30), True), april)
    final = published()
    assert "final rows" in publish_month_to_date(store, rows(date(2026, 4, 13), False), april, date(2026, 4, 13))
    # the guard passed (a final row published after it looked): the key refuses the whole transaction
    with pytest.raises(Exception):  # noqa: B017 (the engine's own integrity error, DuckDB or psycopg/ADBC)
        store.replace_rows("qa_reporting.early_warnings", rows(date(2026, 4, 14), False), sa.and_(
            t.c.month == april, sa.not_(sa.func.coalesce(t.c.final, False))))
    pd.testing.assert_frame_equal(published(), final)


def test_a_day_whose_files_fail_the_gate_publishes_nothing(tmp_path):
    """Half of the month's rows break a rule: the blocking check fails and no row is published."""
    from qa_pipeline.assets.month_to_date import early_warning_to_date
    from qa_pipeline.resources.warehouse import dispose_engines
    from qa_pipeline_tests.conftest import audit, write_csv

    raw = tmp_path / "raw"
    write_csv(raw / "audits" / "2026-03" / "a.csv", [
        audit(audit_id="A-1"), audit(audit_id="A-2"),
        audit(audit_id="A-3", content_type="hologram"), audit(audit_id="A-4", content_type="hologram")])
    p = Pipeline(tmp_path, raw)
    result = dg.materialize([early_warning_to_date], partition_key="2026-03-20", resources=p.resources(),
                            instance=p.instance, raise_on_error=False)
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert not checks["quarantined_share_within_limit"].passed
    assert "50.00% of 4 rows quarantined" in checks["quarantined_share_within_limit"].description
    assert checks["every_row_accounted_for"].passed
    mat = result.asset_materializations_for_node("early_warning_to_date")[0]
    assert mat.metadata["published"].value is False
    assert p.table("qa_reporting.early_warnings").empty
    dispose_engines()
