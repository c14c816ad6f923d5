"""Accuracy corrected for auditor error (issue 11, part 1): Rogan–Gladen and Lang–Reiczigel against
published worked examples, the interval's coverage by simulation, the published table's figures
against an independent computation, and the planted auditor's month on the committed sample."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from qa_pipeline.domain import accuracy_corrected as logic
from qa_pipeline.domain.months import month_start
from qa_pipeline.domain.validation import AUDITS, DISPUTES, ROSTER, run_gate
from qa_pipeline.resources.raw_store import RawStore
from qa_pipeline.settings import PROJECT_ROOT
from qa_pipeline.stats.misclassification import lang_reiczigel_interval, rogan_gladen
from qa_pipeline_tests.conftest import enrich_frame, wilson_closed_form

# -- published values ---------------------------------------------------------------------------


@pytest.mark.parametrize(("x", "n", "tp", "n_se", "tn", "n_sp", "low", "high"), [
    # Lang & Reiczigel (2014), Prev Vet Med 113:13–22, examples 1–4, as reproduced in the documentation
    # of the R package asht (`prevSeSp`, "95% CI should be …"), to the published 3 (2) decimals
    (4060, 11284, 178, 179, 358, 359, 0.349, 0.372),   # example 1
    (51, 2971, 32, 33, 20, 20, 0.0, 0.053),            # example 2
    (0.06 * 11862, 11862, 8, 10, 12, 12, 0.0, 0.147),  # example 3: AP = 0.06, Se = 0.80 of 10, Sp = 1 of 12
    (51, 509, 23, 41, 187, 195, 0.037, 0.195),         # example 4, second test
])
def test_lang_reiczigel_interval_reproduces_the_papers_worked_examples(x, n, tp, n_se, tn, n_sp, low, high):
    got_low, got_high = lang_reiczigel_interval(x, n, tp, n_se, tn, n_sp)
    assert float(got_low) == pytest.approx(low, abs=5e-4)
    assert float(got_high) == pytest.approx(high, abs=5e-4)


def test_lang_reiczigel_example_4_first_test_to_two_decimals():
    # example 4, first test: "95% CI should be 0.58 to 0.87" (two decimals in the paper)
    low, high = lang_reiczigel_interval(259, 509, 84, 127, 96, 109)
    assert round(float(low), 2) == 0.58 and round(float(high), 2) == 0.87


def test_rogan_gladen_reproduces_reference_implementations():
    # RSurveillance::tp documented example: x = 20 of n = 120, Se 0.9, Sp 0.99 → true prevalence 0.17603
    assert float(rogan_gladen(20 / 120, 0.9, 0.99)) == pytest.approx(0.17603, abs=5e-6)
    # Rogan & Gladen (1978)'s estimator written out: (AP + Sp − 1) / (Se + Sp − 1)
    ap, se, sp = 4060 / 11284, 178 / 179, 358 / 359
    assert float(rogan_gladen(ap, se, sp)) == pytest.approx((ap + sp - 1) / (se + sp - 1), rel=1e-15)
    # vectorised, and undefined when the classifier is no better than chance
    out = rogan_gladen(np.array([0.1, 0.1, 0.1]), np.array([0.9, 0.5, 0.3]), np.array([0.95, 0.5, 0.6]))
    assert out[0] == pytest.approx(0.05 / 0.85) and np.isnan(out[1]) and np.isnan(out[2])


# -- coverage by simulation ---------------------------------------------------------------------

MONTHS, AUDITS_PER_MONTH, REAUDITS_PER_MONTH = 2000, 3000, 150
PLANTED_SE, PLANTED_SP = 0.85, 0.90  # the audit process of the sample's planted auditor's month


def simulate_months(se: float, sp: float, seed: int = 20261204):
    """Months with a known true error rate p: each audit truly wrong with probability p, flagged by
    the audit process with probability se (truly wrong) or 1 − sp (truly correct); an expert re-audits
    a random sample of the month's audits. The corrected interval and the plain Wilson interval of the
    observed rate, each against the true p."""
    rng = np.random.default_rng(seed)
    corrected = wilson = 0
    for _ in range(MONTHS):
        p = rng.uniform(0.04, 0.10)
        truly = rng.binomial(AUDITS_PER_MONTH, p)
        flagged_errors = rng.binomial(truly, se)
        false_flags = rng.binomial(AUDITS_PER_MONTH - truly, 1 - sp)
        cells = np.array([flagged_errors, truly - flagged_errors, false_flags,
                          AUDITS_PER_MONTH - truly - false_flags])
        sample = rng.multivariate_hypergeometric(cells, REAUDITS_PER_MONTH)  # drawn without replacement
        low, high = lang_reiczigel_interval(flagged_errors + false_flags, AUDITS_PER_MONTH, sample[0],
                                            sample[0] + sample[1], sample[3], sample[2] + sample[3])
        corrected += bool(low <= p <= high)
        w_low, w_high = wilson_closed_form(flagged_errors + false_flags, AUDITS_PER_MONTH)
        wilson += bool(w_low <= p <= w_high)
    return corrected / MONTHS, wilson / MONTHS


def test_the_corrected_interval_covers_the_true_error_rate_and_the_uncorrected_one_collapses():
    corrected, wilson = simulate_months(PLANTED_SE, PLANTED_SP)
    print(f"\ncoverage of the true error rate over {MONTHS} simulated months (sensitivity {PLANTED_SE}, "
          f"specificity {PLANTED_SP}, {REAUDITS_PER_MONTH} re-audits of {AUDITS_PER_MONTH} audits): "
          f"Lang–Reiczigel {corrected:.1%}, uncorrected Wilson {wilson:.1%}")
    assert 0.93 <= corrected <= 0.97
    assert wilson < 0.05


# -- the table ----------------------------------------------------------------------------------

MONTH = pd.Timestamp("2026-03-01")


def _reaudited(rows):
    """Re-audited decisions from (site, queue, true_error, flagged) tuples."""
    return pd.DataFrame([{"month": MONTH, "site": s, "team_type": "bpo", "queue": q, "true_error": t, "flagged": f}
                         for s, q, t, f in rows])


def _counts(rows):
    return pd.DataFrame(rows, columns=["dimension", "segment", "audits", "errors"])


def test_the_table_equals_an_independent_computation():
    # 20 truly wrong (16 flagged), 100 truly correct (5 flagged): Se 0.8, Sp 0.95
    rows = ([("S1", "q1", True, True)] * 16 + [("S1", "q1", True, False)] * 4
            + [("S2", "q2", False, True)] * 5 + [("S2", "q2", False, False)] * 95)
    counts = _counts([("overall", "all", 2000, 260), ("site", "S1", 1200, 200), ("site", "S2", 800, 60),
                      ("team_type", "bpo", 2000, 260), ("queue", "q1", 1200, 200), ("queue", "q2", 800, 60)])
    frame = logic.accuracy_corrected(counts, _reaudited(rows), MONTH, min_reaudits=100)
    assert frame[["dimension", "segment"]].values.tolist() == [
        ["overall", "all"], ["site", "S1"], ["site", "S2"], ["team_type", "bpo"], ["queue", "q1"], ["queue", "q2"]]
    row = frame.set_index(["dimension", "segment"]).loc[("overall", "all")]
    assert row.sensitivity == pytest.approx(0.8) and row.specificity == pytest.approx(0.95)
    assert row.reaudits == 120 and row.reaudited_true_errors == 20
    assert row.observed_error_rate == pytest.approx(0.13)
    assert row.corrected_error_rate == pytest.approx((0.13 + 0.95 - 1) / (0.8 + 0.95 - 1))  # 0.10667
    assert row.corrected_accuracy == pytest.approx(1 - (0.13 - 0.05) / 0.75)
    # Lang–Reiczigel written out (their eq. 6, 7, 16, 17) with z = 1.96
    z = 1.959963984540054
    se_, sp_ = 17 / 22, 96 / 102
    ap_ = (260 + z * z / 2) / (2000 + z * z)
    p_ = (ap_ + sp_ - 1) / (se_ + sp_ - 1)
    shift = 2 * z * z * (p_ * se_ * (1 - se_) / 22 - (1 - p_) * sp_ * (1 - sp_) / 102)
    var = (ap_ * (1 - ap_) / (2000 + z * z) + p_ ** 2 * se_ * (1 - se_) / 22
           + (1 - p_) ** 2 * sp_ * (1 - sp_) / 102) / (se_ + sp_ - 1) ** 2
    assert row.ci_low == pytest.approx(p_ + shift - z * math.sqrt(var), abs=1e-12)
    assert row.ci_high == pytest.approx(p_ + shift + z * math.sqrt(var), abs=1e-12)
    assert row.corrected_accuracy_ci_low == pytest.approx(1 - row.ci_high)
    # the plain estimate from the segment's own re-audits: S1 has 20 re-audits, all truly wrong
    s1 = frame.set_index(["dimension", "segment"]).loc[("site", "S1")]
    assert s1.segment_reaudits == 20 and s1.reaudit_error_rate == 1.0
    low, high = wilson_closed_form(20, 20)
    assert s1.reaudit_ci_low == pytest.approx(low) and s1.reaudit_ci_high == pytest.approx(1.0)
    # sensitivity and specificity are the audit process's: the same in every segment
    assert frame.sensitivity.nunique() == 1 and frame.reaudits.nunique() == 1
    assert frame.note.isna().all()


def test_too_few_reaudits_or_a_useless_audit_process_give_no_corrected_figure_and_say_why():
    counts = _counts([("overall", "all", 1000, 100)])
    few = logic.accuracy_corrected(counts, _reaudited([("S", "q", True, True)] * 5 + [("S", "q", False, False)] * 40),
                                   MONTH, min_reaudits=100)
    assert few.corrected_error_rate.isna().all() and few.ci_low.isna().all()
    assert "only 45 re-audits" in few.note.iloc[0] and "QA_MIN_REAUDITS = 100" in few.note.iloc[0]
    assert few.sensitivity.iloc[0] == 1.0  # the estimates are shown, not used
    # a verdict no better than chance: Se 0.5, Sp 0.5
    chance = _reaudited([("S", "q", True, True)] * 30 + [("S", "q", True, False)] * 30
                        + [("S", "q", False, True)] * 50 + [("S", "q", False, False)] * 50)
    useless = logic.accuracy_corrected(counts, chance, MONTH, min_reaudits=100)
    assert useless.corrected_error_rate.isna().all() and "≤ 1" in useless.note.iloc[0]
    # no truly wrong decision among the re-audits: no sensitivity
    none_wrong = logic.accuracy_corrected(counts, _reaudited([("S", "q", False, False)] * 120), MONTH, 100)
    assert np.isnan(none_wrong.sensitivity.iloc[0]) and "sensitivity cannot be estimated" in none_wrong.note.iloc[0]
    # no re-audit at all (the optional input is absent): no row
    assert logic.accuracy_corrected(counts, _reaudited([]).iloc[0:0], MONTH, 100).empty


def test_pooled_trailing_months_estimate_sensitivity_and_specificity_the_plain_estimate_stays_the_months():
    this = _reaudited([("S", "q", True, True)] * 8 + [("S", "q", False, False)] * 52)
    earlier = _reaudited([("S", "q", True, False)] * 2 + [("S", "q", False, True)] * 3
                         + [("S", "q", False, False)] * 55).assign(month=pd.Timestamp("2026-02-01"))
    frame = logic.accuracy_corrected(_counts([("overall", "all", 1000, 80)]), pd.concat([this, earlier]), MONTH,
                                     min_reaudits=100, trailing_months=1)
    row = frame.iloc[0]
    assert row.reaudits == 120 and row.reaudit_months == 2
    assert row.sensitivity == pytest.approx(8 / 10) and row.specificity == pytest.approx(107 / 110)
    assert row.segment_reaudits == 60 and row.reaudit_error_rate == pytest.approx(8 / 60)  # the month's own
    alone = logic.accuracy_corrected(_counts([("overall", "all", 1000, 80)]), this, MONTH, min_reaudits=50)
    assert alone.sensitivity.iloc[0] == 1.0 and alone.reaudit_months.iloc[0] == 1
    few = logic.accuracy_corrected(_counts([("overall", "all", 1000, 80)]), this, MONTH, min_reaudits=100,
                                   trailing_months=2)
    assert "in the month and the 2 before it" in few.note.iloc[0]


def test_a_corrected_rate_outside_0_1_is_clipped_and_says_so():
    # observed 2 % with a false-flag rate of 10 %: Rogan–Gladen is negative
    rows = [("S", "q", True, True)] * 10 + [("S", "q", False, True)] * 10 + [("S", "q", False, False)] * 90
    frame = logic.accuracy_corrected(_counts([("overall", "all", 1000, 20)]), _reaudited(rows), MONTH, 100)
    assert frame.corrected_error_rate.iloc[0] == 0.0 and frame.corrected_accuracy.iloc[0] == 1.0
    assert "clipped to 0" in frame.note.iloc[0]


# -- the committed sample -----------------------------------------------------------------------

def corrected_month(raw, month: str):
    """The planted month through the gate, enrichment and `accuracy_corrected` (domain functions, no
    Dagster), with the month's true error rate from the generator's manifest: an audit is truly an
    error when the auditor's verdict says so, except the audits the generator misclassified on
    purpose (`truth.misclassified`)."""
    store, m = RawStore(raw_dir=str(raw)), month_start(month)
    roster = run_gate(store.read_single("roster/roster.csv"), ROSTER, m).clean
    disputes = pd.concat([run_gate(store.read_month("disputes", month_start(f)), DISPUTES, month_start(f)).clean
                          for f in store.available_months("disputes")], ignore_index=True)
    audits = enrich_frame(run_gate(store.read_month("audits", m), AUDITS, m).clean, roster, m, disputes)
    lookup = audits[logic.AUDIT_LOOKUP_COLUMNS]
    gate = run_gate(store.read_month("reaudits", m), logic.reaudit_spec(lookup, "the month's audits"), m)
    assert gate.quarantine.empty
    reaudits = logic.clean_reaudits(gate.clean, lookup, m)
    by_id = audits.set_index("audit_id")
    reaudited = reaudits.assign(flagged=by_id.loc[reaudits.audit_id, "is_error_final"].to_numpy(),
                                **{c: by_id.loc[reaudits.audit_id, c].to_numpy() for c in logic.SEGMENT_COLUMNS})
    frame, truths, manifest = corrected_segments(raw, month, audits, reaudited)
    return frame.iloc[0], truths[("overall", "all")], manifest


def corrected_segments(raw, month: str, audits, reaudited):
    """`accuracy_corrected` over overall, site and queue, and each segment's true error rate."""
    manifest = json.loads((raw / ".sample.json").read_text())
    misclassified = set(manifest["truth"][month]["misclassified"])
    audits = audits.assign(truth=audits.is_error ^ audits.audit_id.isin(misclassified))
    rows = [("overall", "all", len(audits), int(audits.is_error_final.sum()))]
    truths = {("overall", "all"): float(audits.truth.mean())}
    for dimension in ("site", "queue"):
        for segment, g in audits.groupby(dimension):
            rows.append((dimension, segment, len(g), int(g.is_error_final.sum())))
            truths[(dimension, segment)] = float(g.truth.mean())
    frame = logic.accuracy_corrected(_counts(rows), reaudited, month_start(month), min_reaudits=100)
    return frame, truths, manifest


def test_on_the_committed_sample_the_corrected_accuracy_moves_toward_the_truth_in_the_planted_month():
    raw = PROJECT_ROOT / "data" / "raw"
    manifest = json.loads((raw / ".sample.json").read_text())
    month = manifest["planted"]["auditor_error"]["month"]
    row, truth, _ = corrected_month(raw, month)
    observed = row.observed_error_rate
    print(f"\n{month}: accuracy observed {1 - observed:.2%}, true {1 - truth:.2%}, corrected "
          f"{row.corrected_accuracy:.2%} [{row.corrected_accuracy_ci_low:.2%}, {row.corrected_accuracy_ci_high:.2%}] "
          f"(sensitivity {row.sensitivity:.3f}, specificity {row.specificity:.3f}, {row.reaudits} re-audits)")
    assert observed - truth > 0.05  # the planted auditor's false flags dominate its misses
    # measured on 15 other seeds of the generator: the corrected rate moved toward the truth in all 15
    # (with 150 re-audits, of which 4–14 truly wrong, sensitivity is the noisy part)
    assert abs(row.corrected_error_rate - truth) < abs(observed - truth)
    assert row.ci_low <= truth <= row.ci_high
    assert row.specificity < 0.95  # the re-audits see the false flags


def test_in_the_planted_month_no_segment_is_corrected_with_a_sensitivity_and_specificity_not_its_own():
    """The planted auditor audits no hate speech or harassment: one sensitivity and specificity for
    every queue would "correct" those two queues to an error rate near 0 (their true rates are 7–8 %).
    The homogeneity test withholds the queues; every segment still corrected covers its truth."""
    raw = PROJECT_ROOT / "data" / "raw"
    month = json.loads((raw / ".sample.json").read_text())["planted"]["auditor_error"]["month"]
    m = month_start(month)
    store = RawStore(raw_dir=str(raw))
    roster = run_gate(store.read_single("roster/roster.csv"), ROSTER, m).clean
    disputes = pd.concat([run_gate(store.read_month("disputes", month_start(f)), DISPUTES, month_start(f)).clean
                          for f in store.available_months("disputes")], ignore_index=True)
    audits = enrich_frame(run_gate(store.read_month("audits", m), AUDITS, m).clean, roster, m, disputes)
    lookup = audits[logic.AUDIT_LOOKUP_COLUMNS]
    reaudits = logic.clean_reaudits(run_gate(store.read_month("reaudits", m), logic.reaudit_spec(lookup, "x"), m).clean,
                                    lookup, m)
    by_id = audits.set_index("audit_id")
    reaudited = reaudits.assign(flagged=by_id.loc[reaudits.audit_id, "is_error_final"].to_numpy(),
                                **{c: by_id.loc[reaudits.audit_id, c].to_numpy() for c in logic.SEGMENT_COLUMNS})
    frame, truths, _ = corrected_segments(raw, month, audits, reaudited)
    queues = frame[frame.dimension == "queue"]
    assert queues.corrected_error_rate.isna().all()
    assert queues.note.str.contains("specificity differs across queue").all()
    corrected = frame[frame.corrected_error_rate.notna()]
    assert set(corrected.dimension) == {"overall", "site"}
    for r in corrected.itertuples():
        assert r.ci_low <= truths[(r.dimension, r.segment)] <= r.ci_high, (r.dimension, r.segment)


def test_the_homogeneity_test_agrees_with_the_chi_square_asymptotics_and_holds_its_level():
    """Against scipy's asymptotic χ² test of the same table (a different method: at 900 decisions
    the two p-values must agree away from the top of the range, where the permutation distribution's
    ties make it larger), and its rejection rate under the null by simulation."""
    from scipy.stats import chi2_contingency

    from qa_pipeline.stats.misclassification import homogeneity_p_value

    rng = np.random.default_rng(5)
    segment = np.repeat(["a", "b", "c"], 300)
    for rates in [(0.10, 0.15, 0.07), (0.10, 0.12, 0.08), (0.10, 0.14, 0.09)]:
        y = rng.random(900) < np.repeat(rates, 300)
        table = pd.crosstab(segment, y).to_numpy()
        expected = chi2_contingency(table, correction=False).pvalue
        assert homogeneity_p_value(segment, y, resamples=9999) == pytest.approx(expected, abs=0.02)
    small = np.repeat(["a", "b", "c", "d"], 15)
    rejections = [homogeneity_p_value(small, rng.random(60) < 0.15, resamples=499, seed=k) < 0.05
                  for k in range(300)]
    assert 0.01 <= np.mean(rejections) <= 0.08  # ≈ 5 %: exact in sparse tables where χ² is not
    assert homogeneity_p_value(["a"] * 10, [True, False] * 5) == 1.0
    # in a sparse table, the same null distribution as scipy's permutation test over the decisions
    from scipy.stats import permutation_test

    labels = np.repeat([0, 1, 2, 3], 15)
    y = np.r_[np.zeros(15, bool), rng.random(45) < 0.2]

    def pearson(x, g):
        return chi2_contingency(pd.crosstab(g, x).to_numpy(), correction=False).statistic

    scipy_p = permutation_test((y, labels), pearson, permutation_type="pairings", n_resamples=4999,
                               alternative="greater", rng=np.random.default_rng(1)).pvalue
    assert homogeneity_p_value(labels, y) == pytest.approx(scipy_p, abs=0.02)


def test_months_without_auditor_error_are_left_almost_as_observed(sample_raw):
    row, truth, _ = corrected_month(sample_raw, "2026-02")
    assert row.sensitivity == 1.0 and row.specificity >= 0.99
    assert abs(row.corrected_error_rate - row.observed_error_rate) < 0.005
    assert row.ci_low <= truth <= row.ci_high


# -- the report ---------------------------------------------------------------------------------

def test_the_report_shows_observed_and_corrected_accuracy_escaped_and_says_when_there_is_none():
    import dataclasses

    from qa_pipeline.reports import content
    from qa_pipeline.reports.render import render
    from qa_pipeline_tests.test_text_report import SITE, _inputs

    rows = ([(SITE, "q1", True, True)] * 16 + [(SITE, "q1", True, False)] * 4
            + [(SITE, "q2", False, True)] * 5 + [(SITE, "q2", False, False)] * 95)
    counts = _counts([("overall", "all", 2000, 260), ("site", SITE, 2000, 260)])
    frame = logic.accuracy_corrected(counts, _reaudited(rows), MONTH, min_reaudits=100)
    ctx, _ = content.build(dataclasses.replace(_inputs(), accuracy_corrected=frame))
    md = render("quality_report.md.j2", generated_at="x", **ctx)
    html = render("quality_report.html.j2", generated_at="x", **ctx)
    section = md[md.index("## Accuracy corrected for auditor error"):md.index("## Policy changes")]
    assert "caught 80.0 % of the true errors (sensitivity) and passed 95.0 % of the correct decisions" in section
    # observed 87.0 %, corrected 1 − 0.08/0.75 = 89.3 %, the segment's own 120 re-audits: 20 truly wrong
    assert "| overall | all | 2000 | 87.0 % | 89.3 % |" in section and "| 120 | 83.3 % (" in section
    assert "| site | Site \\*A\\*\\|B \\[x\\](javascript:alert(1)) | 2000 | 87.0 % | 89.3 % |" in section
    part = html[html.index('id="accuracy-corrected"'):html.index('id="policy"')]
    assert "<td>Site *A*|B [x](javascript:alert(1))</td>" in part and part.count("<tr>") == 3
    low, high = frame.corrected_accuracy_ci_low.iloc[0], frame.corrected_accuracy_ci_high.iloc[0]
    assert f"{low * 100:.1f} %–{high * 100:.1f} %" in part
    ctx, _ = content.build(_inputs())  # no re-audit: the published accuracy is said to be uncorrected
    assert "No expert re-audits for this month" in render("quality_report.md.j2", generated_at="x", **ctx)
