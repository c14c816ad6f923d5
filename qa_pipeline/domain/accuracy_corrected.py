"""Accuracy corrected for auditor error (`qa_reporting.accuracy_corrected`).

An expert re-reviews, blind, a random sample of the month's audited decisions
(`reaudits/YYYY-MM/`, the folder month = the month of the original audit); the expert's answer is the
truth for that decision. A decision is **truly an error** when the expert's answer differs from the
moderator's — the contract's definition of an error with the expert in the auditor's place:
`action_reviewer ≠ action_moderator` or `policy_reviewer ≠ policy_moderator`.

The audit process's verdict is `is_error_final` (the auditor's verdict after disputes: what every
published accuracy counts). On the re-audited decisions:

- sensitivity = P(verdict error | truly an error), specificity = P(verdict correct | truly correct);
- estimated from the month's re-audits (and those of the `reaudit_trailing_months` before it, when
  configured), **once for the whole audit process** and applied to every segment: the assumption is
  that the audit process misclassifies alike in every site, team type and queue (a segment's own
  re-audits are too few to estimate its own). The assumption is tested per dimension
  (`misclassified_alike`: permutation tests of homogeneity of sensitivity and of specificity across
  its segments); where the re-audits reject it, that dimension's segments get no corrected figure
  (a note says why) — an auditor who errs in some queues only would otherwise be "corrected" into
  the queues he never audits;
- corrected error rate (Rogan–Gladen) of each segment from its observed error rate, clipped to
  [0, 1] (a raw value outside says the observed rate is below the false-flag rate 1 − specificity,
  or above the sensitivity: the note says so), with the Lang–Reiczigel 95 % interval, which carries
  the uncertainty of sensitivity and specificity (`stats.misclassification`);
- the plain estimate from the segment's own re-audits of the month alone (truly erroneous /
  re-audited, Wilson 95 % interval), which needs no model but rests on few decisions.

No corrected figure (NULL, with a `note`) when the re-audits behind sensitivity and specificity are
fewer than `min_reaudits`, when none of them is truly an error or none truly correct (a rate with no
denominator), or when sensitivity + specificity ≤ 1 (verdicts no better than chance: nothing to
correct with).

The gate's rules that compare a re-audit with its audit live here too (`reaudit_spec`): the audit
must be one of the folder month's audits (`audit_id:unknown_audit`); the reviewer is neither the
audit's moderator (`reviewer_not_moderator`) nor its auditor (`reviewer_not_auditor`: the re-review
is blind, by someone else); the re-audit comes after the audit (`reaudited_after_audit`). A second
re-audit of the same audit is `audit_id:duplicate` (the first read is kept, as for every duplicate
of the contract); a re-audit id already published for another month is `reaudit_id:published_earlier`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from qa_pipeline.domain.validation import (
    REAUDITS,
    SOURCE_FILE,
    SOURCE_ROW,
    InputSpec,
    Reference,
)
from qa_pipeline.stats.misclassification import (
    homogeneity_p_value,
    lang_reiczigel_interval,
    rogan_gladen,
)
from qa_pipeline.stats.proportions import safe_rate, wilson_interval

DIMENSIONS: list[tuple[str, ...]] = [(), ("site",), ("team_type",), ("queue",)]
AUDIT_LOOKUP_COLUMNS = ["audit_id", "moderator_id", "auditor_id", "audited_at", "action_moderator",
                        "policy_moderator"]
REAUDIT_COLUMNS = ["month", "reaudit_id", "audit_id", "reaudited_at", "reviewer_id", "action_reviewer",
                   "policy_reviewer", "true_error", SOURCE_FILE, SOURCE_ROW]
SEGMENT_COLUMNS = ["site", "team_type", "queue"]


# -- the gate ---------------------------------------------------------------------------------

def _row_failures(rows, column: str, rule: str, reasons) -> pd.DataFrame:
    return pd.DataFrame({"row": np.asarray(rows, dtype="int64"), "column": column, "rule": rule,
                         "reason": list(reasons)})


def against_audits(audits: pd.DataFrame) -> tuple[Callable[[pd.DataFrame], pd.DataFrame], ...]:
    """The rules that compare each re-audit with its audit (`audits`: AUDIT_LOOKUP_COLUMNS of the
    folder month's audits); a re-audit of an unknown audit is left to `audit_id:unknown_audit`."""
    lookup = audits.drop_duplicates("audit_id").set_index("audit_id")

    def matched(parsed: pd.DataFrame) -> pd.DataFrame:
        found = lookup.reindex(parsed["audit_id"].to_numpy())
        found.index = parsed.index
        return found

    def reviewer_is_not(column: str, role: str, why: str) -> Callable[[pd.DataFrame], pd.DataFrame]:
        def rule(parsed: pd.DataFrame) -> pd.DataFrame:
            audit = matched(parsed)
            bad = (parsed["reviewer_id"] == audit[column]).fillna(False).astype(bool)
            return _row_failures(parsed.index[bad], "reviewer_id", f"reviewer_not_{role}",
                                 [f"reviewer_id {r!r} is the {role} of audit {a!r}: {why}"
                                  for r, a in zip(parsed["reviewer_id"][bad], parsed["audit_id"][bad], strict=True)])
        rule.__name__ = f"reviewer_not_{role}"
        return rule

    reviewer_not_moderator = reviewer_is_not("moderator_id", "moderator", "the re-review must be by someone else")
    reviewer_not_auditor = reviewer_is_not("auditor_id", "auditor", "a blind re-review is by someone else")

    def reaudited_after_audit(parsed: pd.DataFrame) -> pd.DataFrame:
        audit = matched(parsed)
        audited = pd.to_datetime(audit["audited_at"], utc=True)
        bad = (parsed["reaudited_at"] < audited).fillna(False).astype(bool)
        return _row_failures(parsed.index[bad], "reaudited_at", "reaudited_after_audit",
                             [f"reaudited_at {r.isoformat()} is before the audit's audited_at {a.isoformat()}"
                              for r, a in zip(parsed["reaudited_at"][bad], audited[bad], strict=True)])

    return (reviewer_not_moderator, reviewer_not_auditor, reaudited_after_audit)


def reaudit_spec(audits: pd.DataFrame, source: str, policies: frozenset | None = None) -> InputSpec:
    """The re-audits' spec with the run's context: the folder month's audits (`audits`, every audit
    the re-audits name that exists; `source` says where they were looked up) and the policy
    catalogue (None: any non-empty code)."""
    known = frozenset(audits["audit_id"].astype("str"))
    return REAUDITS.with_context(
        policies=policies,
        references=(Reference("audit_id", "unknown_audit", known, source),),
        row_rules=against_audits(audits),
    )


def clean_reaudits(clean: pd.DataFrame, audits: pd.DataFrame, month) -> pd.DataFrame:
    """`qa_core.reaudits` rows: the gate's clean re-audits with `true_error` — the expert's answer
    differs from the moderator's (action or policy)."""
    lookup = audits.drop_duplicates("audit_id").set_index("audit_id")
    if clean.empty:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in REAUDIT_COLUMNS})
    audit = lookup.reindex(clean["audit_id"].to_numpy())
    true_error = ((clean["action_reviewer"].to_numpy() != audit["action_moderator"].to_numpy())
                  | (clean["policy_reviewer"].to_numpy() != audit["policy_moderator"].to_numpy()))
    out = clean[[c for c in REAUDIT_COLUMNS if c in clean.columns]].copy()
    out.insert(0, "month", pd.Timestamp(month))
    out["true_error"] = true_error.astype(bool)
    return out[REAUDIT_COLUMNS].reset_index(drop=True)


# -- the figures ------------------------------------------------------------------------------

def validation_counts(reaudited: pd.DataFrame) -> dict[str, int]:
    """The 2×2 table of the audit process's verdict (`flagged`) against the truth (`true_error`)
    over re-audited decisions."""
    truth = reaudited["true_error"].astype(bool).to_numpy()
    flagged = reaudited["flagged"].astype(bool).to_numpy()
    return {
        "reaudits": int(len(reaudited)),
        "truly_errors": int(truth.sum()),
        "flagged_errors": int((truth & flagged).sum()),
        "truly_correct": int((~truth).sum()),
        "passed_correct": int((~truth & ~flagged).sum()),
    }


def _segments(frame: pd.DataFrame, columns: tuple[str, ...]) -> pd.Series:
    if not columns:
        return pd.Series("all", index=frame.index, dtype="object")
    return frame[columns[0]].astype("str")


def _dimension(columns: tuple[str, ...]) -> str:
    return columns[0] if columns else "overall"


def misclassified_alike(reaudited: pd.DataFrame, columns: tuple[str, ...], alpha: float) -> str | None:
    """None when the re-audits give no evidence that the audit process misclassifies differently
    across the segments of a dimension; else the note that withholds the dimension's corrected
    figures. Two permutation tests of homogeneity across the segments (`homogeneity_p_value`): of
    the flag rate among the truly erroneous decisions (sensitivity) and of the pass rate among the
    truly correct ones (specificity); either below `alpha` rejects (the guard errs towards
    withholding)."""
    if not columns or reaudited.empty:
        return None
    # in a stated order: the permutations are seeded, and engines return rows in any order
    order = [c for c in ("month", "audit_id") if c in reaudited.columns]
    reaudited = reaudited.sort_values(order, kind="stable") if order else reaudited
    truth = reaudited["true_error"].astype(bool).to_numpy()
    flagged = reaudited["flagged"].astype(bool).to_numpy()
    segment = reaudited[columns[0]].astype("str").to_numpy()
    p_se = homogeneity_p_value(segment[truth], flagged[truth])
    p_sp = homogeneity_p_value(segment[~truth], ~flagged[~truth])
    if min(p_se, p_sp) >= alpha:
        return None
    which = " and ".join(name for name, p in (("sensitivity", p_se), ("specificity", p_sp)) if p < alpha)
    return (f"the audit process's {which} differs across {_dimension(columns)} in the re-audits (permutation "
            f"test p = {min(p_se, p_sp):.3g} < {alpha:g}): one correction for every {_dimension(columns)} would "
            "mis-correct, no corrected figure; the segment's own re-audits (reaudit_error_rate) are the estimate")


def accuracy_corrected(counts: pd.DataFrame, reaudited: pd.DataFrame, month, min_reaudits: int,
                       trailing_months: int = 0, homogeneity_alpha: float = 0.05) -> pd.DataFrame:
    """`qa_reporting.accuracy_corrected` for one month.

    `counts`: the month's audits per dimension × segment of DIMENSIONS (`dimension`, `segment`,
    `audits`, `errors` — errors by `is_error_final`); `reaudited`: the re-audited decisions of the
    month and of the `trailing_months` before it (`month`, `true_error`, `flagged` = the audit's
    `is_error_final`, and the segment columns). Rows in the order of DIMENSIONS, segments by code
    point; no row at all when there is no re-audit (the optional input is absent)."""
    month = pd.Timestamp(month)
    if reaudited.empty or counts.empty:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in COLUMNS})
    v = validation_counts(reaudited)
    sensitivity = v["flagged_errors"] / v["truly_errors"] if v["truly_errors"] else np.nan
    specificity = v["passed_correct"] / v["truly_correct"] if v["truly_correct"] else np.nan
    own = reaudited[pd.to_datetime(reaudited["month"]) == month]
    order = {_dimension(d): i for i, d in enumerate(DIMENSIONS)}
    frame = counts[counts["dimension"].isin(order)].copy()
    frame["_order"] = frame["dimension"].map(order)
    frame["segment"] = frame["segment"].astype("str")
    frame = frame.sort_values(["_order", "segment"], kind="stable", ignore_index=True)

    n = frame["audits"].to_numpy(dtype=float)
    x = frame["errors"].to_numpy(dtype=float)
    observed = safe_rate(x, n)
    raw = rogan_gladen(observed, sensitivity, specificity)
    low, high = lang_reiczigel_interval(x, n, v["flagged_errors"], v["truly_errors"], v["passed_correct"],
                                        v["truly_correct"])
    note = _note(v, sensitivity, specificity, min_reaudits, trailing_months)
    withheld = {_dimension(d): misclassified_alike(reaudited, d, homogeneity_alpha) for d in DIMENSIONS}
    dimension_notes = [withheld.get(d) for d in frame["dimension"]]
    usable = np.array([note is None and dn is None for dn in dimension_notes])
    corrected = np.where(usable, np.clip(raw, 0.0, 1.0), np.nan)
    low = np.where(usable, low, np.nan)
    high = np.where(usable, high, np.nan)

    # the plain estimate: each segment's own re-audits of the month
    plain = {}
    for columns in DIMENSIONS:
        seg = _segments(own, columns)
        grouped = own.assign(_segment=seg).groupby("_segment")["true_error"]
        for segment, values in grouped:
            plain[(_dimension(columns), str(segment))] = (int(values.count()), int(values.astype(bool).sum()))
    keys = list(zip(frame["dimension"], frame["segment"], strict=True))
    seg_n = np.array([plain.get(k, (0, 0))[0] for k in keys], dtype=float)
    seg_e = np.array([plain.get(k, (0, 0))[1] for k in keys], dtype=float)
    plain_low, plain_high = wilson_interval(seg_e, seg_n)

    notes = []
    for r, ok, dimension_note in zip(raw, usable, dimension_notes, strict=True):
        if not ok:
            notes.append(note or dimension_note)
        elif r < 0:
            notes.append("Rogan–Gladen estimate below 0 (the observed error rate is under the false-flag rate "
                         "1 − specificity), clipped to 0")
        elif r > 1:
            notes.append("Rogan–Gladen estimate above 1 (the observed error rate is over the sensitivity), "
                         "clipped to 1")
        else:
            notes.append(None)
    out = pd.DataFrame({
        "month": month,
        "dimension": frame["dimension"].astype("str").to_numpy(),
        "segment": frame["segment"].to_numpy(),
        "audits": frame["audits"].astype("int64").to_numpy(),
        "errors": frame["errors"].astype("int64").to_numpy(),
        "observed_error_rate": observed,
        "reaudits": v["reaudits"],
        "reaudit_months": trailing_months + 1,
        "reaudited_true_errors": v["truly_errors"],
        "sensitivity": sensitivity,
        "specificity": specificity,
        "corrected_error_rate": corrected,
        "corrected_accuracy": 1.0 - corrected,
        "ci_low": low,
        "ci_high": high,
        "corrected_accuracy_ci_low": 1.0 - high,
        "corrected_accuracy_ci_high": 1.0 - low,
        "segment_reaudits": seg_n.astype("int64"),
        "reaudit_error_rate": safe_rate(seg_e, seg_n),
        "reaudit_ci_low": plain_low,
        "reaudit_ci_high": plain_high,
        "note": pd.Series(notes, dtype="object"),
    })
    return out[COLUMNS]


def _note(v: dict, sensitivity: float, specificity: float, min_reaudits: int, trailing_months: int) -> str | None:
    """Why no corrected figure is published, or None when it is."""
    window = "the month" if trailing_months == 0 else f"the month and the {trailing_months} before it"
    if v["reaudits"] < min_reaudits:
        return (f"only {v['reaudits']} re-audits in {window} (fewer than QA_MIN_REAUDITS = {min_reaudits}): "
                "sensitivity and specificity are not estimated, no corrected figure")
    if v["truly_errors"] == 0:
        return (f"none of the {v['reaudits']} re-audited decisions is truly an error: sensitivity cannot be "
                "estimated, no corrected figure")
    if v["truly_correct"] == 0:
        return (f"all {v['reaudits']} re-audited decisions are truly errors: specificity cannot be estimated, "
                "no corrected figure")
    if sensitivity + specificity <= 1:
        return (f"sensitivity + specificity = {sensitivity + specificity:.3f} ≤ 1: the audit verdicts are no better "
                "than chance, no corrected figure")
    return None


COLUMNS = [
    "month", "dimension", "segment", "audits", "errors", "observed_error_rate", "reaudits", "reaudit_months",
    "reaudited_true_errors", "sensitivity", "specificity", "corrected_error_rate", "corrected_accuracy", "ci_low",
    "ci_high", "corrected_accuracy_ci_low", "corrected_accuracy_ci_high", "segment_reaudits",
    "reaudit_error_rate", "reaudit_ci_low", "reaudit_ci_high", "note",
]
