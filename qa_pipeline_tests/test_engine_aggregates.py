"""The aggregates behind quality_metrics, moderator_quality, dispute_metrics, rca_pareto,
rca_drivers and auditor_consistency run inside the warehouse: on a crafted month (missing values,
ties, segment names whose order differs between code point and a locale's collation) DuckDB and
PostgreSQL give the same small frames, and the published figures are the ones worked out by hand."""

from __future__ import annotations

from datetime import date

import ibis
import numpy as np
import pandas as pd
import pytest

from qa_pipeline.assets.audits import month_audits
from qa_pipeline.domain import consistency, disputes, metrics, rca
from qa_pipeline.domain.segments import dimension_name
from qa_pipeline.resources.staging import Attempt
from qa_pipeline.resources.warehouse import Warehouse
from qa_pipeline.schemas import warehouse as wh

AUDITS_CLEAN = "qa_core.audits_clean"
PREV, MONTH = date(2026, 2, 1), date(2026, 3, 1)
# code point order: upper case, then lower case, then accented; a locale collation (en_US) would
# put "bpo-x" first and "Ålesund" beside "Austin"
ZAGREB, BPO, ALESUND = "Zagreb", "bpo-x", "Ålesund"


def _row(month: date, i: int, **changes) -> dict:
    ts = pd.Timestamp(month, tz="UTC") + pd.Timedelta(days=3)
    row = {
        "month": pd.Timestamp(month), "audit_id": f"{month:%m}-{i}", "audited_at": ts, "decision_at": ts,
        "content_id": f"C-{i}", "content_type": "video", "queue": "hate_speech", "site": ZAGREB,
        "team_type": "in_house", "market": "GB", "moderator_id": "M-1", "auditor_id": "AUD-1",
        "action_moderator": "remove", "action_auditor": "remove", "policy_moderator": "HS.1",
        "policy_auditor": "HS.1", "error_severity": "none", "root_cause": None, "auditor_comment": "ok",
        "handle_time_s": 30.0, "sampling_weight": 2.0, "source_file": "audits/x.csv", "source_row": i,
        "is_error": False, "error_type": "correct", "is_critical": False, "policy": "HS.1", "tenure_days": 400,
        "tenure_band": "366+", "dispute_outcome": None, "dispute_resolved_at": pd.NaT, "is_error_final": False,
    }
    row.update(changes)
    return row


OVER = {"action_auditor": "approve", "policy_auditor": "NONE", "is_error": True, "is_error_final": True,
        "error_type": "over_enforcement"}
UNDER = {"action_moderator": "approve", "policy_moderator": "NONE", "is_error": True, "is_error_final": True,
         "error_type": "under_enforcement"}


def _month_rows() -> pd.DataFrame:
    rows = [
        # M-TIE: two audits in (Zagreb, in_house, 0-30), two in (bpo-x, in_house, 31-90)
        _row(MONTH, 1, moderator_id="M-TIE", tenure_band="0-30", **OVER, error_severity="critical",
             is_critical=True, root_cause="tooling", sampling_weight=None, handle_time_s=10.0),
        _row(MONTH, 2, moderator_id="M-TIE", tenure_band="0-30", sampling_weight=3.0, handle_time_s=None),
        _row(MONTH, 3, moderator_id="M-TIE", site=BPO, tenure_band="31-90", **UNDER, handle_time_s=20.0),
        # an error overturned by a dispute resolved after the month ended: not an error, restated
        _row(MONTH, 4, moderator_id="M-TIE", site=BPO, tenure_band="31-90", policy_auditor="HS.2",
             is_error=True, error_type="wrong_policy", dispute_outcome="overturned",
             dispute_resolved_at=pd.Timestamp("2026-04-03", tz="UTC")),
        # no market: left out of the market dimension only
        _row(MONTH, 5, moderator_id="M-2", site=ALESUND, queue="spam", market=None, auditor_id="AUD-2",
             dispute_outcome="upheld", dispute_resolved_at=pd.Timestamp("2026-03-20", tz="UTC")),
    ]
    return pd.DataFrame(rows, columns=[c.name for c in wh.audits_clean.columns])


def _prev_rows() -> pd.DataFrame:
    rows = [_row(PREV, 1, **OVER, root_cause="tooling"), _row(PREV, 2), _row(PREV, 3, site=BPO)]
    return pd.DataFrame(rows, columns=[c.name for c in wh.audits_clean.columns])


@pytest.fixture
def attempt(warehouse_url) -> Attempt:
    w = Warehouse(url=warehouse_url)
    published = Attempt(w, PREV, "prev-run-1")
    published.write(AUDITS_CLEAN, _prev_rows())
    published.publish()
    attempt = Attempt(w, MONTH, "crafted-run-1")
    attempt.write(AUDITS_CLEAN, _month_rows())
    return attempt


def test_the_tables_come_from_engine_aggregates_with_the_hand_worked_figures(attempt):
    w, audits = attempt.warehouse, month_audits(attempt, MONTH)

    qm = metrics.quality_metrics(w.execute(metrics.segment_counts(audits)), MONTH)
    assert qm.dimension.unique().tolist() == [dimension_name(c) for c in metrics.DIMENSIONS]
    assert qm[qm.dimension == "site"].segment.tolist() == [ZAGREB, BPO, ALESUND]
    assert qm[qm.dimension == "site×queue"].segment.tolist() == [
        f"{ZAGREB}|hate_speech", f"{BPO}|hate_speech", f"{ALESUND}|spam"]
    assert qm[qm.dimension == "market"][["segment", "audits"]].values.tolist() == [["GB", 4]]
    overall = qm[qm.dimension == "overall"].iloc[0]
    assert overall.segment == "all"
    assert (overall.audits, overall.errors, overall.critical_errors, overall.over_enforcement_errors,
            overall.under_enforcement_errors) == (5, 2, 1, 1, 1)
    assert overall.weighted_accuracy == pytest.approx(1 - (1.0 + 2.0) / (1.0 + 3.0 + 2.0 + 2.0 + 2.0), abs=1e-15)
    assert overall.mean_handle_time_s == pytest.approx((10.0 + 20.0 + 30.0 + 30.0) / 4, abs=1e-12)
    # the overturned audit counts the moderator's decision as the true one
    assert (overall.precision, overall.recall) == pytest.approx((3 / 4, 3 / 4), abs=1e-15)

    mq = metrics.moderator_quality(w.execute(metrics.moderator_counts(audits)), MONTH, 0.95, 1)
    assert mq.moderator_id.tolist() == ["M-2", "M-TIE"]
    tie = mq.set_index("moderator_id").loc["M-TIE"]
    # a 2–2 tie goes to the first site by code point, whatever the engine's collation
    assert (tie.site, tie.team_type, tie.tenure_band, tie.audits, tie.errors) == (ZAGREB, "in_house", "0-30", 4, 2)

    dispute_counts = w.execute(disputes.dispute_counts(audits, MONTH))
    dm = disputes.dispute_metrics(dispute_counts, MONTH)
    assert dm.dimension.unique().tolist() == ["overall", "site", "queue"]
    got = dm.set_index(["dimension", "segment"])[["audits", "disputed", "resolved", "overturned",
                                                   "restated_audits"]]
    assert got.loc[("overall", "all")].tolist() == [5, 2, 2, 1, 1]
    per_auditor = disputes.auditor_dispute_metrics(dispute_counts, MONTH).set_index("auditor_id")[
        ["audits", "disputed", "resolved", "overturned", "restated_audits"]]
    assert per_auditor.index.tolist() == ["AUD-1", "AUD-2"]
    assert per_auditor.loc["AUD-1"].tolist() == [4, 1, 1, 1, 1]
    assert per_auditor.loc["AUD-2"].tolist() == [1, 1, 1, 0, 0]

    pareto = rca.rca_pareto(w.execute(rca.root_cause_counts(audits)), MONTH)
    scopes = pareto.scope.unique().tolist()
    assert scopes[:2] == ["overall", "queue:hate_speech"]
    assert all(s.startswith("site×queue:") and s.endswith("|hate_speech") for s in scopes[2:]) and scopes[2:]
    cells = pareto[pareto.scope.str.startswith("site×queue:")].groupby("root_cause")["errors"].sum()
    queue = pareto[pareto.scope == "queue:hate_speech"].set_index("root_cause")["errors"]
    assert cells.sort_index().tolist() == queue.sort_index().tolist()  # the cells add up to their queue
    overall_causes = pareto[pareto.scope == "overall"]
    assert overall_causes.root_cause.tolist() == ["tooling", "unknown"]  # a 1–1 tie, by name
    assert overall_causes.vital_few.tolist() == [True, True] and overall_causes["rank"].tolist() == [1, 2]

    drivers = rca.rca_drivers(w.execute(rca.driver_counts(month_audits(attempt, PREV))),
                              w.execute(rca.driver_counts(audits)), MONTH)
    site = drivers[drivers.dimension == "site"]
    assert site.segment.tolist() == [ZAGREB, BPO, ALESUND]
    assert site.contribution.sum() == pytest.approx(2 / 5 - 1 / 3, abs=1e-15)
    new = site.set_index("segment").loc[ALESUND]
    assert (new.share_prev, new.share, new.rate_effect) == (0.0, 0.2, 0.0)

    ac = consistency.auditor_consistency(w.execute(consistency.auditor_queue_counts(audits)), MONTH, 1, 3.0)
    assert ac[["auditor_id", "audits", "flags", "disputed", "overturned"]].values.tolist() == [
        ["AUD-1", 4, 3, 1, 1], ["AUD-2", 1, 0, 1, 0]]
    assert ac.overturn_rate.tolist() == [1.0, 0.0]


def test_segment_counts_sum_what_each_segment_holds():
    """The union of GROUP BYs against a direct count, on random in-memory audits (DuckDB)."""
    rng = np.random.default_rng(8)
    n = 2000
    frame = pd.DataFrame({c: rng.choice(["a", "B", "ä"], n) for c in
                          ["site", "team_type", "queue", "policy", "market", "content_type", "tenure_band"]})
    frame = frame.assign(
        is_error_final=rng.random(n) < 0.2, is_critical=rng.random(n) < 0.3,
        error_type=rng.choice(["over_enforcement", "under_enforcement", "wrong_action"], n),
        action_moderator=rng.choice(["approve", "remove"], n), action_auditor=rng.choice(["approve", "remove"], n),
        dispute_outcome=pd.Series(rng.choice(np.array(["overturned", "upheld", None], dtype=object), n), dtype="str"),
        sampling_weight=pd.Series(rng.uniform(1, 5, n)).where(rng.random(n) > 0.1),
        handle_time_s=pd.Series(rng.uniform(1, 100, n)).where(rng.random(n) > 0.1),
    )
    counts = metrics.segment_counts(ibis.memtable(frame)).to_pyarrow().to_pandas()
    counts = counts.set_index(["dimension", "segment"])
    assert len(counts) == 1 + 7 * 3 + 9
    for (dimension, segment), got in counts.iterrows():
        if dimension == "overall":
            part = frame
        else:
            columns = dimension.split("×")
            part = frame[frame[columns].astype(str).agg("|".join, axis=1) == segment]
        err = part.is_error_final
        assert got.audits == len(part) and got.errors == err.sum()
        assert got.critical_errors == (err & part.is_critical).sum()
        assert got.weight == pytest.approx(part.sampling_weight.fillna(1.0).sum(), rel=1e-12)
        assert got.weighted_errors == pytest.approx(part.sampling_weight.fillna(1.0)[err].sum(), rel=1e-12)
        assert got.handle_n == part.handle_time_s.notna().sum()
        assert got.handle_sum == pytest.approx(part.handle_time_s.sum(), rel=1e-12)
