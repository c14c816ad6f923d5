"""How the early-warning thresholds behave: the family-wise false-alarm rate and the detection delay.

    .venv/bin/python benchmarks/early_warning_threshold.py [--raw data/raw] [--month 2026-01] [--months 3000]

Takes the segments of a month of the committed sample as the pipeline sees them (baselines and
expected volumes from the months before it, thresholds from `domain.early_warning`), then simulates
months of audits:

1. *No change*: every site × queue cell at its error rate in the baseline months, with its mean
   monthly volume there, audits spread uniformly over the month; the site and queue charts run over their cells' audits merged in
   time (the nesting of the real charts). Printed: the share of months in which any chart signals.
2. *A rise of the odds of an error by the documented odds ratio* (default 2) from the first day of
   the month in one segment, for every segment in turn (site × queue, site, queue): the share of
   months in which its chart signals, and the days until it does (median over those months).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qa_pipeline.domain.early_warning import WarningRule, early_warnings  # noqa: E402
from qa_pipeline.domain.months import month_start, months_back  # noqa: E402
from qa_pipeline.stats.cusum import llr_weights, shifted_rate  # noqa: E402

DAYS = 30.0


def published_history(raw: Path, month, months: int) -> pd.DataFrame:
    """quality_metrics of the months before `month`, computed as the pipeline computes them."""
    import ibis

    from qa_pipeline.domain.enrich import enrich_audits
    from qa_pipeline.domain.metrics import quality_metrics, segment_counts
    from qa_pipeline.domain.validation import AUDITS, ROSTER, run_gate
    from qa_pipeline.resources.raw_store import RawStore

    store = RawStore(raw_dir=str(raw))
    roster = run_gate(store.read_single("roster/roster.csv"), ROSTER, month).clean
    no_disputes = pd.DataFrame({"dispute_id": pd.Series(dtype="str"), "audit_id": pd.Series(dtype="str"),
                                "resolved_at": pd.Series(dtype="datetime64[us, UTC]"),
                                "outcome": pd.Series(dtype="str")})
    frames = []
    for m in months_back(month, months)[1:]:
        gate = run_gate(store.read_month("audits", m), AUDITS, m)
        clean = enrich_audits(ibis.memtable(gate.clean), ibis.memtable(roster), ibis.memtable(no_disputes), m)
        counts = segment_counts(clean).to_pyarrow().to_pandas()
        frames.append(quality_metrics(counts, m))
    return pd.concat(frames, ignore_index=True)


def _max_cusum(errors: np.ndarray, p0: float, odds_ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the chart's path (rows × audits)."""
    w1, w0 = llr_weights(p0, odds_ratio)
    c = np.cumsum(np.where(errors, w1, w0), axis=1)
    return c - np.minimum(np.minimum.accumulate(c, axis=1), 0.0)


def family_false_alarm(plan: pd.DataFrame, odds_ratio: float, months: int, rng, history_months: int = 3) -> float:
    """Share of simulated no-change months in which any chart (cells, sites, queues) signals."""
    cells = plan[plan.dimension == "site×queue"]
    sims = {}
    for r in cells.itertuples():
        # a typical month: the baseline months' mean volume, at the cell's pooled rate in them
        n = int(round(r.baseline_audits / history_months))
        rate = (r.baseline_error_rate * (r.baseline_audits + 1) - 0.5) / r.baseline_audits
        sims[r.segment] = (rng.random((months, n)) < rate, rng.random((months, n)))
    alarm = np.zeros(months, dtype=bool)
    for r in plan.itertuples():
        if r.dimension == "site×queue":
            members = [r.segment]
        else:
            pos = 0 if r.dimension == "site" else 1
            members = [s for s in sims if s.split("|")[pos] == r.segment]
        if not members:
            continue
        err = np.concatenate([sims[s][0] for s in members], axis=1)
        when = np.concatenate([sims[s][1] for s in members], axis=1)
        err = np.take_along_axis(err, np.argsort(when, axis=1), axis=1)
        alarm |= (_max_cusum(err, r.baseline_error_rate, odds_ratio) > r.threshold).any(axis=1)
    return float(alarm.mean())


def detection(cell, odds_ratio: float, months: int, rng) -> tuple[float, float]:
    """(median days to signal, share of months signalled) for a rise from day 0 in one cell."""
    n = int(cell.expected_audits)
    p1 = shifted_rate(cell.baseline_error_rate, odds_ratio)
    when = np.sort(rng.random((months, n)), axis=1) * DAYS
    path = _max_cusum(rng.random((months, n)) < p1, cell.baseline_error_rate, odds_ratio)
    above = path > cell.threshold
    hit = above.any(axis=1)
    first = np.argmax(above, axis=1)
    days = when[np.arange(months), first][hit]
    return (float(np.median(days)) if hit.any() else float("nan")), float(hit.mean())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--raw", default="data/raw")
    ap.add_argument("--month", default="2026-01", help="month whose segments are simulated")
    ap.add_argument("--months", type=int, default=3000, help="simulated months")
    ap.add_argument("--odds-ratio", type=float, default=WarningRule().odds_ratio)
    args = ap.parse_args(argv)
    rule = WarningRule(odds_ratio=args.odds_ratio)
    month = month_start(args.month)
    history = published_history(Path(args.raw), month, 3)
    empty = pd.DataFrame(columns=["audit_id", "site", "queue", "decision_at", "is_error"])
    plan = early_warnings(empty, history, month, rule, as_of=month, final=False)
    plan = plan[plan.threshold.notna()]
    rng = np.random.default_rng(11)
    far = family_false_alarm(plan, rule.odds_ratio, args.months, rng)
    print(f"segments monitored: {len(plan)}; baselines from the 3 months before {args.month}")
    print(f"family-wise false-alarm rate over {args.months} simulated months without change: {far:.2%} "
          f"(target ≤ {rule.family_alpha:.0%})")
    for dim in ("site×queue", "site", "queue"):
        rows = plan[plan.dimension == dim]
        delays = pd.DataFrame([(r.segment, r.expected_audits, *detection(r, rule.odds_ratio, 1000, rng))
                               for r in rows.itertuples()],
                              columns=["segment", "expected_audits", "median_days", "signalled"])
        print(f"{dim} ({len(rows)} segments, expected audits {int(delays.expected_audits.min())}–"
              f"{int(delays.expected_audits.max())}): a rise of the odds ×{rule.odds_ratio:g} from day 1 "
              f"(1000 months per segment) signals within the month in {delays.signalled.mean():.0%} of months; "
              f"median days to signal {delays.median_days.median():.1f} "
              f"(segments' medians {delays.median_days.min():.1f}–{delays.median_days.max():.1f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
