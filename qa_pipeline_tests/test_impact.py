"""Policy-change impact, experiment readouts and the sampling plan. The domain functions aggregate
ibis tables in the engine (here DuckDB on in-memory frames) and compute on the small result."""

from __future__ import annotations

import math
from datetime import date

import ibis
import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from scipy import stats

from qa_pipeline.domain.experiments import experiment_readout
from qa_pipeline.domain.policy_impact import (
    difference_in_differences,
    policy_change_impact,
    to_frame,
)
from qa_pipeline.domain.sampling_plan import sampling_plan
from qa_pipeline.stats.sampling import sample_size


def _audits(groups: dict) -> pd.DataFrame:
    """groups: (queue, policy, decision day, errors, n) → audits."""
    rows = []
    for (queue, policy, day), (errors, n) in groups.items():
        for i in range(n):
            rows.append({"queue": queue, "policy_moderator": policy, "policy_auditor": policy,
                         "decision_at": pd.Timestamp(day, tz="UTC"), "is_error_final": i < errors})
    return pd.DataFrame(rows)


CHANGE = pd.DataFrame({"change_id": ["C1"], "policy": ["HS.2"], "effective_date": [pd.Timestamp("2026-03-10", tz="UTC")],
                       "change_type": ["update"], "queues": ["hate_speech"]})


def test_did_equals_the_interaction_of_the_saturated_model_with_white_errors():
    audits = _audits({
        ("hate_speech", "HS.2", "2026-03-01"): (10, 100), ("hate_speech", "HS.2", "2026-03-20"): (30, 110),
        ("spam", "SP.1", "2026-03-01"): (8, 200), ("spam", "SP.1", "2026-03-20"): (11, 190),
    })
    months = {date(2026, 2, 1), date(2026, 3, 1), date(2026, 4, 1)}
    row = policy_change_impact(ibis.memtable(audits), CHANGE, months).iloc[0]
    assert (row.n_before, row.n_after, row.errors_before, row.errors_after) == (100, 110, 10, 30)
    assert row.flagged and row.status == "complete"
    frame = audits.assign(y=audits.is_error_final.astype(float), treated=(audits.queue == "hate_speech").astype(float),
                          after=(audits.decision_at >= pd.Timestamp("2026-03-10", tz="UTC")).astype(float))
    fit = smf.ols("y ~ treated * after", data=frame).fit(cov_type="HC0")
    assert row.did == pytest.approx(fit.params["treated:after"], abs=1e-12)
    low, high = fit.conf_int().loc["treated:after"]
    assert row.did_ci_low == pytest.approx(low, abs=1e-9)
    assert row.did_ci_high == pytest.approx(high, abs=1e-9)


def test_unpublished_windows_are_pending_and_never_flagged():
    audits = _audits({("hate_speech", "HS.2", "2026-03-01"): (1, 100), ("hate_speech", "HS.2", "2026-03-20"): (50, 100)})
    row = policy_change_impact(ibis.memtable(audits), CHANGE, {date(2026, 3, 1)}).iloc[0]
    assert row.status == "pending" and not row.flagged
    assert "not fully published" in row.note


def test_did_is_undefined_without_a_control_group():
    assert all(np.isnan(v) for v in difference_in_differences(1, 10, 2, 10, 0, 0, 1, 5))


@pytest.fixture(scope="module")
def published(tmp_path_factory, sample_raw):
    from qa_pipeline.resources.warehouse import dispose_engines
    from qa_pipeline_tests.conftest import Pipeline

    p = Pipeline(tmp_path_factory.mktemp("impact"), sample_raw)
    for month in ("2026-01", "2026-02", "2026-03", "2026-04", "2026-05"):
        assert p.run(month).success
    yield p
    dispose_engines()


def test_the_planted_policy_change_is_flagged_and_the_others_are_not(published):
    impact = published.table("qa_reporting.policy_change_impact").set_index("change_id")
    assert impact.loc["PC-HS2-UPDATE", "flagged"]
    assert impact.loc["PC-HS2-UPDATE", "ci_low"] > 0
    assert not impact.drop(index="PC-HS2-UPDATE").flagged.any()


def test_the_planted_experiment_ships_and_the_skewed_one_is_invalid(published):
    readout = published.table("qa_reporting.experiment_readout").set_index("experiment_id")
    assert readout.loc["EXP-01", "decision"] == "ship"
    assert readout.loc["EXP-01", "diff"] > 0 and readout.loc["EXP-01", "ci_low"] > 0
    assert readout.loc["EXP-02", "decision"] == "invalid_srm"
    assert readout.loc["EXP-02", "srm_p_value"] < 0.001
    assert readout.loc["EXP-03", "decision"] == "inconclusive"
    assert "ship" in readout.loc["EXP-01", "reason"] and readout.loc["EXP-01", "reason"].endswith(".")


def test_sampling_plan_matches_the_formula_with_the_population_correction(published):
    plan = published.table("qa_reporting.sampling_plan")
    june = plan[pd.to_datetime(plan.month) == pd.Timestamp("2026-06-01")]
    assert len(june) == 45  # 5 sites × 9 queues
    for row in june.itertuples():
        p = max(row.recent_error_rate, 0.01)
        n0 = 1.959963984540054 ** 2 * p * (1 - p) / 0.02 ** 2
        n = n0 / (1 + (n0 - 1) / row.estimated_decisions)
        assert row.recommended_audits == int(np.ceil(n - 1e-9))


def test_sampling_plan_estimates_volume_from_weights():
    recent = pd.DataFrame({"site": "S", "queue": "q", "month": ["2026-01", "2026-02"] * 50,
                           "is_error_final": [True] * 10 + [False] * 90, "sampling_weight": 20.0})
    plan = sampling_plan(ibis.memtable(recent), date(2026, 3, 1), margin=0.02).iloc[0]
    assert plan.estimated_decisions == 1000  # 100 audits × weight 20 over 2 months
    assert plan.recommended_audits == sample_size(0.1, 0.02, population=1000)


def test_sampling_plan_sums_the_weights_exactly():
    """Σ sampling_weight is the exactly rounded sum (math.fsum), whatever the engine's order of
    summation: a volume on a half would otherwise round either way."""
    weights = [7.3] * 5 + [47.921] * 500 + [1 / 3] * 7 + [0.1]
    recent = pd.DataFrame({"site": "S", "queue": "q", "month": "2026-01", "is_error_final": False,
                           "sampling_weight": weights})
    assert sum(weights) != math.fsum(weights)  # plain summation is off here
    plan = sampling_plan(ibis.memtable(recent), date(2026, 2, 1), margin=0.02).iloc[0]
    assert plan.estimated_decisions == np.round(math.fsum(weights), 0)
    # 25 × 0.1 is 2.5: summed one by one it is 2.500000000000001 and would round to 3
    tie = pd.DataFrame({"site": "S", "queue": "q", "month": ["2026-01"] * 25 + ["2026-02"] * 25,
                        "is_error_final": False, "sampling_weight": [0.1] * 50})
    plan = sampling_plan(ibis.memtable(tie), date(2026, 3, 1), margin=0.02).iloc[0]
    assert plan.estimated_decisions == 2 == np.round(math.fsum([0.1] * 50) / 2, 0)


def _spy(sqls: list):
    def execute(expr):
        sqls.append(ibis.to_sql(expr))
        return to_frame(expr)
    return execute


def test_policy_windows_are_cut_by_decision_time_and_no_code_reaches_the_sql():
    """Day buckets are exact: effective dates are midnight UTC. One aggregate query, and neither
    a policy code nor a queue name of the changes is written into it."""
    eff = pd.Timestamp("2026-03-10", tz="UTC")
    at = {"before_first": eff - pd.Timedelta(days=28), "before_last": eff - pd.Timedelta(microseconds=1),
          "after_first": eff, "after_last": eff + pd.Timedelta(days=28) - pd.Timedelta(microseconds=1),
          "too_early": eff - pd.Timedelta(days=28) - pd.Timedelta(microseconds=1),
          "too_late": eff + pd.Timedelta(days=28)}
    rows = [{"queue": "hate_speech", "policy_moderator": "HS.2", "policy_auditor": "HS.1",
             "decision_at": t, "is_error_final": name.startswith("after")} for name, t in at.items()]
    rows += [{"queue": "spam", "policy_moderator": "SP.1", "policy_auditor": "SP.1", "decision_at": t,
              "is_error_final": True} for t in at.values()]
    rows += [{"queue": None, "policy_moderator": "SP.1", "policy_auditor": "SP.1", "decision_at": eff,
              "is_error_final": False}]
    sqls: list[str] = []
    row = policy_change_impact(ibis.memtable(pd.DataFrame(rows)), CHANGE, {date(2026, 3, 1)},
                               execute=_spy(sqls)).iloc[0]
    assert (row.n_before, row.errors_before, row.n_after, row.errors_after) == (2, 0, 2, 2)
    assert (row.control_n_before, row.control_n_after) == (2, 3)  # a queue-less audit is a control
    assert len(sqls) == 1
    assert not any(code in sqls[0] for code in ("HS.2", "hate_speech", "SP.1", "spam"))


def test_experiment_units_are_cut_by_decision_day_and_handle_time_skips_missing_values():
    day = pd.Timestamp("2026-03-01", tz="UTC")
    rows = []
    for mod, arm, times in [("C1", "control", [30.0, None, 50.0]), ("C2", "control", [20.0, 22.0, None]),
                            ("C3", "control", [None, None, 41.0]), ("T1", "treatment", [10.0, 12.0, 14.0]),
                            ("T2", "treatment", [15.0, None, 19.0]), ("T3", "treatment", [9.0, 9.5, None])]:
        for i, ht in enumerate(times):
            rows.append({"moderator_id": mod, "decision_at": day + pd.Timedelta(days=i, hours=23, minutes=59),
                         "is_error_final": False, "is_critical": False, "handle_time_s": ht})
        # the first second of the day after the window: not counted
        rows.append({"moderator_id": mod, "decision_at": pd.Timestamp("2026-03-04", tz="UTC"),
                     "is_error_final": True, "is_critical": True, "handle_time_s": 1000.0})
    audits = pd.DataFrame(rows)
    arms = pd.DataFrame({"experiment_id": "E", "moderator_id": ["C1", "C2", "C3", "T1", "T2", "T3"],
                         "arm": ["control"] * 3 + ["treatment"] * 3})
    experiments = pd.DataFrame({"experiment_id": ["E"], "name": ["n"], "start_date": [pd.Timestamp("2026-03-01", tz="UTC")],
                                "end_date": [pd.Timestamp("2026-03-03", tz="UTC")], "primary_metric": ["handle_time_s"],
                                "treatment_share": [0.5]})
    sqls: list[str] = []
    row = experiment_readout(ibis.memtable(audits), experiments, arms, {date(2026, 3, 1)}, execute=_spy(sqls)).iloc[0]
    c, t = [40.0, 21.0, 41.0], [12.0, 17.0, 9.25]
    assert (row.n_control, row.n_treatment) == (3, 3)
    assert row.mean_control == pytest.approx(np.mean(c), abs=1e-12)
    assert row.p_value == pytest.approx(stats.ttest_ind(t, c, equal_var=False).pvalue, abs=1e-12)
    assert len(sqls) == 1 and "C1" not in sqls[0]
