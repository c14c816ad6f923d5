"""Trends, root causes, auditor consistency and comment themes on generated data."""

from __future__ import annotations

import math
from datetime import date

import ibis
import numpy as np
import pandas as pd
import pytest

from qa_pipeline.domain.consistency import auditor_consistency, auditor_queue_counts
from qa_pipeline.domain.metrics import quality_metrics, segment_counts
from qa_pipeline.domain.months import month_start
from qa_pipeline.domain.rca import (
    decompose,
    driver_counts,
    rca_drivers,
    rca_pareto,
    root_cause_counts,
)
from qa_pipeline.domain.themes import comment_themes
from qa_pipeline.domain.trends import error_trends
from qa_pipeline.domain.validation import AUDITS, DISPUTES, ROSTER, run_gate
from qa_pipeline.resources.raw_store import RawStore
from qa_pipeline.sample_data import SampleSpec, generate
from qa_pipeline.settings import Thresholds
from qa_pipeline_tests.conftest import enrich_frame


def clean_months(raw, months) -> dict:
    """Validated, enriched audits per month, straight through the domain functions."""
    store = RawStore(raw_dir=str(raw))
    roster = run_gate(store.read_single("roster/roster.csv"), ROSTER, month_start(months[0])).clean
    disputes = [run_gate(store.read_month("disputes", month_start(f)), DISPUTES, month_start(f)).clean
                for f in store.available_months("disputes")]
    disputes = pd.concat(disputes, ignore_index=True) if disputes else None
    out = {}
    for m in months:
        month = month_start(m)
        gate = run_gate(store.read_month("audits", month), AUDITS, month)
        out[m] = enrich_frame(gate.clean, roster, month, disputes)
    return out


def counted(aggregate, audits: pd.DataFrame) -> pd.DataFrame:
    """A domain aggregate (an ibis expression) over in-memory audits, run by ibis's default
    backend (DuckDB): the small frame the warehouse would return."""
    return aggregate(ibis.memtable(audits)).to_pyarrow().to_pandas(date_as_object=False)


def month_metrics(audits: pd.DataFrame, month) -> pd.DataFrame:
    return quality_metrics(counted(segment_counts, audits), month)


@pytest.fixture(scope="module")
def sample_months(sample_raw):
    return clean_months(sample_raw, ["2026-01", "2026-02", "2026-03", "2026-04", "2026-05", "2026-06"])


@pytest.fixture(scope="module")
def trend_table(sample_months):
    metrics = pd.concat([month_metrics(a, month_start(m)) for m, a in sample_months.items()], ignore_index=True)
    return {m: error_trends(metrics, month_start(m), Thresholds()) for m in sample_months}


SPIKE = ("site×queue", "BPO-B Kuala Lumpur|hate_speech")


def test_the_planted_spike_alerts_in_its_month_only(trend_table):
    def row(m):
        t = trend_table[m]
        return t[(t.dimension == SPIKE[0]) & (t.segment == SPIKE[1])].iloc[0]
    spike = row("2026-04")
    assert spike.alert and spike.q_value < 0.05 and spike.delta >= 0.01
    assert not row("2026-03").alert
    assert not row("2026-05").alert
    assert row("2026-05").improved or row("2026-05").delta < 0  # the spike subsides


def test_small_segments_are_not_judged_and_say_why(trend_table):
    t = trend_table["2026-04"]
    small = t[(t.audits < 100) | (t.prev_audits < 100)]
    assert len(small) > 0
    assert not small.alert.any() and not small.judged.any()
    assert small.reason.str.contains("too few audits|no audits in the previous month").all()
    assert small.p_value.isna().all()


def test_p_chart_limits_follow_the_definition(sample_months, trend_table):
    t = trend_table["2026-06"].set_index(["dimension", "segment"])
    rows = []
    for m in ["2026-01", "2026-02", "2026-03", "2026-04", "2026-05"]:
        a = sample_months[m]
        rows.append((len(a), int(a.is_error_final.sum())))
    p_bar = sum(e for _, e in rows) / sum(n for n, _ in rows)
    n = len(sample_months["2026-06"])
    half = 3 * math.sqrt(p_bar * (1 - p_bar) / n)
    got = t.loc[("overall", "all")]
    assert got.history_months == 5
    assert got.p_chart_center == pytest.approx(p_bar, abs=1e-12)
    assert got.p_chart_ucl == pytest.approx(p_bar + half, abs=1e-12)
    assert got.p_chart_lcl == pytest.approx(max(p_bar - half, 0.0), abs=1e-12)


def test_too_little_history_gives_no_p_chart(trend_table):
    t = trend_table["2026-02"]
    assert t.p_chart_center.isna().all() and not t.out_of_control.any()


def test_false_alert_share_on_20_seeds_without_planted_changes(tmp_path):
    """No planted change: alerts must be rare. The measured share is printed for the record."""
    alerting, judged = 0, 0
    for seed in range(20):
        raw = tmp_path / f"s{seed}"
        generate(SampleSpec(months=["2026-03", "2026-04"], audits_per_month=3000, seed=100 + seed,
                            plant_effects=False, with_hatecheck=False, bad_row_share=0.0), raw)
        months = clean_months(raw, ["2026-03", "2026-04"])
        metrics = pd.concat([month_metrics(a, month_start(m)) for m, a in months.items()], ignore_index=True)
        t = error_trends(metrics, date(2026, 4, 1), Thresholds())
        alerting += int(t.alert.sum())
        judged += int(t.judged.sum())
    share = alerting / judged
    print(f"\nfalse-alert share over 20 seeds: {alerting}/{judged} judged segments = {share:.4f}")
    assert judged > 20 * 20
    assert share <= 0.05


def test_decomposition_adds_up_exactly_on_random_segments():
    rng = np.random.default_rng(4)
    for _ in range(50):
        k = rng.integers(2, 12)
        prev = pd.DataFrame({"segment": [f"s{i}" for i in range(k)], "audits": rng.integers(0, 500, k)})
        prev["errors"] = rng.binomial(prev.audits, rng.random(k))
        cur = pd.DataFrame({"segment": [f"s{i}" for i in range(1, k + 1)], "audits": rng.integers(1, 500, k)})
        cur["errors"] = rng.binomial(cur.audits, rng.random(k))
        prev = prev[prev.audits > 0]
        d = decompose(prev, cur)
        change = cur.errors.sum() / cur.audits.sum() - prev.errors.sum() / prev.audits.sum()
        assert d.contribution.sum() == pytest.approx(change, abs=1e-12)
        assert np.allclose(d.rate_effect + d.mix_effect, d.contribution, atol=1e-15)
        assert d.share.sum() == pytest.approx(1.0, abs=1e-12)


def test_drivers_name_the_spike_segment(sample_months):
    d = rca_drivers(counted(driver_counts, sample_months["2026-03"]), counted(driver_counts, sample_months["2026-04"]),
                    date(2026, 4, 1))
    for dim, g in d.groupby("dimension"):
        assert g.contribution.sum() == pytest.approx(g.overall_change.iloc[0], abs=1e-12), dim
    pair = d[d.dimension == "site×queue"].sort_values("contribution", ascending=False)
    assert pair.segment.iloc[0] == SPIKE[1]
    top = pair.iloc[0]
    assert top.rate_effect > abs(top.mix_effect)  # the rate rose; it is not a mix shift


def test_pareto_shares_sum_to_one_and_vital_few_reach_80_percent(sample_months):
    p = rca_pareto(counted(root_cause_counts, sample_months["2026-04"]), date(2026, 4, 1))
    for scope, g in p.groupby("scope"):
        assert g.share.sum() == pytest.approx(1.0, abs=1e-12), scope
        assert g.errors.is_monotonic_decreasing
        vital = g[g.vital_few]
        assert vital.share.sum() >= 0.8 - 1e-12
        assert vital.share.sum() - vital.share.iloc[-1] < 0.8  # minimal: without the last it falls short
    overall = p[p.scope == "overall"]
    assert overall.errors.sum() == int(sample_months["2026-04"].is_error_final.sum())
    # the drill-down's last step: each site × queue's causes, recounted from the audits
    a = sample_months["2026-04"]
    errors = a[a.is_error_final.astype(bool)]
    expected = (errors.assign(root_cause=errors.root_cause.fillna("unknown"))
                .groupby(["site", "queue", "root_cause"]).size())
    cells = p[p.scope.str.startswith("site×queue:")]
    site_queue = cells.scope.str.removeprefix("site×queue:").str.split("|", n=1)
    got = pd.Series(cells.errors.to_numpy(), index=pd.MultiIndex.from_arrays(
        [site_queue.str[0], site_queue.str[1], cells.root_cause], names=["site", "queue", "root_cause"]))
    assert got.sort_index().to_dict() == expected.sort_index().astype("int64").to_dict()


def test_the_drifting_auditor_is_flagged_after_the_drift_starts(sample_months):
    def consistency(m, month):
        return auditor_consistency(counted(auditor_queue_counts, sample_months[m]), month, 100, 3.0)
    before = consistency("2026-02", date(2026, 2, 1)).set_index("auditor_id")
    during = consistency("2026-04", date(2026, 4, 1)).set_index("auditor_id")
    assert not before.loc["AUD-07", "drift"]
    assert during.loc["AUD-07", "drift"] and during.loc["AUD-07", "z_score"] > 3
    assert during.drift.sum() <= 2


def test_expected_rate_uses_the_other_auditors_on_the_same_queues():
    audits = pd.DataFrame({
        "auditor_id": ["A"] * 4 + ["B"] * 4 + ["C"] * 2,
        "queue": ["q1", "q1", "q2", "q2", "q1", "q1", "q1", "q1", "q2", "q2"],
        "is_error": np.array([1, 1, 0, 1, 0, 1, 0, 0, 0, 0], dtype=bool),
        "dispute_outcome": pd.Series([None] * 10, dtype="str"),
    })
    out = auditor_consistency(counted(auditor_queue_counts, audits), date(2026, 1, 1), 1, 3.0).set_index("auditor_id")
    # A: 2 audits on q1 (others: 1/4) and 2 on q2 (others: 0/2) → expected 0.5 flags of 4
    assert out.loc["A", "expected_rate"] == pytest.approx(0.5 / 4)
    var = 2 * 0.25 * 0.75
    assert out.loc["A", "z_score"] == pytest.approx((3 - 0.5) / math.sqrt(var))


def test_comment_themes_find_tooling_words_and_never_personal_data(sample_months):
    a = sample_months["2026-04"].copy()
    t = comment_themes(a, date(2026, 4, 1))
    from qa_pipeline.sample_data import COMMENT_PHRASES

    vocabulary = set(" ".join(COMMENT_PHRASES["tooling"]).lower().split())
    words = " ".join(t[t.scope == "root_cause:tooling"].term).split()
    assert len(words) >= 5
    assert sum(w in vocabulary for w in words) / len(words) >= 0.9  # the themes are the tooling phrases
    assert not t.term.str.contains(r"@|example\.(?:com|net)|\d{3}|jane|victim|spam\d", regex=True).any()
    # the shares are counts of error comments in the scope
    assert (t.share <= 1).all() and (t.errors_with_term <= t.errors_with_comment).all()
