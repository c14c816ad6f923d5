"""How the early-warning thresholds behave: the family-wise false-alarm rate, the detection delay and
the planted spike.

    .venv/bin/python benchmarks/early_warning_threshold.py [--raw data/raw] [--month 2026-01]
        [--months 3000] [--previous-months 1500] [--threshold-simulations 10000] [--results benchmarks/results.md]

Takes the site × queue cells of the committed sample in the `early_warning_months` (3) months before
`--month` (their audits per month, and their pooled error rate there, taken as each cell's *true*
rate), then simulates:

1. *No change, unconditionally*: each simulated month first draws its own three baseline months,
   every cell's errors Binomial(its audits that month, its true rate) (the site and queue rows are
   the sums of their cells, as `quality_metrics` publishes them); the thresholds come from the module
   (`early_warnings` with an empty month, with `--threshold-simulations` runs per threshold); then the
   month itself is simulated at the true rates (each cell's mean baseline volume, audits uniform over
   the month; the site and queue charts run over their cells' audits merged in time, the nesting of
   the real charts). Printed: the share of months in which any chart signals, with its standard
   error. This is the false-alarm rate an analyst meets, over the baseline's sampling error as well
   as the month's. The same is measured with the previous thresholds (each simulated month at the
   estimate p₀ itself, plain quantile: `previous_threshold`) for comparison.
2. *A rise of the odds of an error by the documented odds ratio* (default 2) from the first day of
   the month in one segment, for every segment in turn (site × queue, site, queue), with the
   thresholds of the committed sample's own baselines: the share of months in which its chart
   signals, and the days until it does (median over those months).
3. *The planted spike* (`sample_data.planted_effects`) on the committed sample: the first signal
   dates of its site × queue cell, its site and its queue in the spike month, from the module.

The figures are printed and appended to `--results` (benchmarks/results.md).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qa_pipeline.domain import early_warning as early_warning_module  # noqa: E402
from qa_pipeline.domain.early_warning import WarningRule, early_warnings, jeffreys_rate  # noqa: E402
from qa_pipeline.domain.months import month_start, months_back  # noqa: E402
from qa_pipeline.domain.segments import PAIR_VALUE  # noqa: E402
from qa_pipeline.stats.cusum import llr_weights, null_maxima, shifted_rate  # noqa: E402

HERE = Path(__file__).resolve().parent
DAYS = 30.0
EMPTY = pd.DataFrame(columns=["audit_id", "site", "queue", "decision_at", "is_error"])


def clean_months(raw: Path, months) -> dict:
    """Validated, enriched audits per month (disputes applied: `is_error_final`), as the pipeline has them."""
    import ibis

    from qa_pipeline.domain.enrich import enrich_audits
    from qa_pipeline.domain.validation import AUDITS, DISPUTES, ROSTER, run_gate
    from qa_pipeline.resources.raw_store import RawStore

    store = RawStore(raw_dir=str(raw))
    roster = run_gate(store.read_single("roster/roster.csv"), ROSTER, months[0]).clean
    disputes = [run_gate(store.read_month("disputes", f), DISPUTES, f).clean
                for f in map(month_start, store.available_months("disputes"))]
    disputes = pd.concat(disputes, ignore_index=True)
    out = {}
    for m in months:
        gate = run_gate(store.read_month("audits", m), AUDITS, m)
        expr = enrich_audits(ibis.memtable(gate.clean), ibis.memtable(roster), ibis.memtable(disputes), m)
        out[m] = expr.to_pyarrow().to_pandas(date_as_object=False)
    return out


def month_metrics(audits: pd.DataFrame, month) -> pd.DataFrame:
    import ibis

    from qa_pipeline.domain.metrics import quality_metrics, segment_counts

    counts = segment_counts(ibis.memtable(audits)).to_pyarrow().to_pandas(date_as_object=False)
    return quality_metrics(counts, month)


def _max_cusum(errors: np.ndarray, p0: float, odds_ratio: float) -> np.ndarray:
    """Per row: the chart's path (rows × audits), Sₜ = Cₜ − min(0, C₁ … Cₜ)."""
    w1, w0 = llr_weights(p0, odds_ratio)
    c = np.cumsum(np.where(errors, w1, w0), axis=1)
    return c - np.minimum(np.minimum.accumulate(c, axis=1), 0.0)


def drawn_history(cells: pd.DataFrame, baseline_months, rng) -> pd.DataFrame:
    """Three baseline months drawn binomially at the cells' true rates; sites and queues as sums."""
    rows = []
    for i, m in enumerate(baseline_months):
        n = cells[f"n{i}"].to_numpy()
        e = rng.binomial(n, cells["rate"].to_numpy())
        f = pd.DataFrame({"site": cells["site"], "queue": cells["queue"], "audits": n, "errors": e})
        f = f[f.audits > 0]
        rows.append(pd.DataFrame({"month": m, "dimension": "site×queue",
                                  "segment": f.site + PAIR_VALUE + f.queue, "audits": f.audits, "errors": f.errors}))
        for dim in ("site", "queue"):
            g = f.groupby(dim, as_index=False)[["audits", "errors"]].sum()
            rows.append(pd.DataFrame({"month": m, "dimension": dim, "segment": g[dim],
                                      "audits": g.audits, "errors": g.errors}))
    return pd.concat(rows, ignore_index=True)


def unconditional_false_alarm(cells: pd.DataFrame, month, rule: WarningRule, months: int, rng) -> tuple[int, int]:
    """(months with any signal, months simulated): baselines drawn anew for every month."""
    baseline_months = sorted(months_back(month, rule.baseline_months)[1:])
    charts = [("site×queue", s + PAIR_VALUE + q, [k]) for k, (s, q) in enumerate(zip(cells.site, cells.queue))]
    for dim in ("site", "queue"):
        for value, idx in cells.groupby(dim).groups.items():
            charts.append((dim, value, [cells.index.get_loc(i) for i in idx]))
    volume = cells["volume"].to_numpy()
    rates = cells["rate"].to_numpy()
    alarms = 0
    for _ in range(months):
        history = drawn_history(cells, baseline_months, rng)
        plan = early_warnings(EMPTY, history, month, rule, as_of=month, final=False).set_index(
            ["dimension", "segment"])
        draws = [(rng.random(n), rng.random(n) < p) for n, p in zip(volume, rates)]
        for dim, seg, members in charts:
            row = plan.loc[(dim, seg)]
            times = np.concatenate([draws[k][0] for k in members])
            errors = np.concatenate([draws[k][1] for k in members])[np.argsort(times)]
            if len(errors) and _max_cusum(errors[None, :], row.baseline_error_rate, rule.odds_ratio).max() > row.threshold:
                alarms += 1
                break
    return alarms, months


@lru_cache(maxsize=4096)
def previous_threshold(expected: int, baseline_errors: int, baseline_audits: int, odds_ratio: float,
                       alpha: float, simulations: int, seed: int) -> float:
    """The thresholds before this version, for comparison: every simulated month at the estimate p₀
    itself (as if known exactly) and the plain (1 − α) quantile of the maxima (no allowance for the
    simulation's error); the same horizon."""
    p0 = float(jeffreys_rate(baseline_errors, baseline_audits))
    rng = np.random.default_rng([seed, expected, int(round(p0 * 1e12))])
    return float(np.quantile(null_maxima(expected, p0, odds_ratio, simulations, rng), 1 - alpha, method="higher"))


def detection(seg, odds_ratio: float, months: int, rng) -> tuple[float, float]:
    """(median days to signal, share of months signalled) for a rise from day 0 in one segment."""
    n = int(seg.expected_audits)
    p1 = shifted_rate(seg.baseline_error_rate, odds_ratio)
    when = np.sort(rng.random((months, n)), axis=1) * DAYS
    above = _max_cusum(rng.random((months, n)) < p1, seg.baseline_error_rate, odds_ratio) > seg.threshold
    hit = above.any(axis=1)
    days = when[np.arange(months), np.argmax(above, axis=1)][hit]
    return (float(np.median(days)) if hit.any() else float("nan")), float(hit.mean())


def main(argv=None) -> int:
    from qa_pipeline.sample_data import planted_effects

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--raw", default="data/raw")
    ap.add_argument("--month", default="2026-01", help="month whose cells are simulated")
    ap.add_argument("--months", type=int, default=3000, help="simulated no-change months")
    ap.add_argument("--threshold-simulations", type=int, default=WarningRule().simulations,
                    help="simulated runs per threshold in the no-change months (the pipeline: early_warning_simulations)")
    ap.add_argument("--previous-months", type=int, default=1500,
                    help="no-change months simulated the same way with the previous thresholds (0: skip)")
    ap.add_argument("--odds-ratio", type=float, default=WarningRule().odds_ratio)
    ap.add_argument("--results", default=str(HERE / "results.md"), help="'' to append nowhere")
    args = ap.parse_args(argv)
    started = time.process_time()
    rule = WarningRule(odds_ratio=args.odds_ratio)
    raw = Path(args.raw)
    month = month_start(args.month)

    from qa_pipeline.resources.raw_store import RawStore
    available = sorted(month_start(m) for m in RawStore(raw_dir=str(raw)).available_months("audits"))
    effects = planted_effects([f"{m:%Y-%m}" for m in available])
    spike = effects["spike"]
    spike_month = month_start(spike["month"])
    wanted = sorted(set(months_back(month, rule.baseline_months + 1))
                    | set(months_back(spike_month, rule.baseline_months + 1)))
    clean = clean_months(raw, wanted)
    history = pd.concat([month_metrics(a, m) for m, a in clean.items()], ignore_index=True)

    # the cells: audits per baseline month, pooled rate there (the true rate), mean volume (the month)
    baseline_months = sorted(months_back(month, rule.baseline_months)[1:])
    h = history[(history.dimension == "site×queue") & pd.to_datetime(history.month).dt.date.isin(baseline_months)]
    wide = h.pivot_table(index="segment", columns="month", values="audits", aggfunc="sum", fill_value=0)
    wide = wide.reindex(columns=sorted(wide.columns))
    wide.columns = [f"n{i}" for i in range(len(wide.columns))]  # n0: the earliest baseline month
    tot = h.groupby("segment")[["audits", "errors"]].sum()
    cells = wide.join(tot).reset_index()
    cells[["site", "queue"]] = cells.segment.str.split(PAIR_VALUE, n=1, expand=True)
    cells["rate"] = np.where(cells.errors > 0, cells.errors / cells.audits, 0.5 / (cells.audits + 1))
    cells["volume"] = np.rint(cells.audits / rule.baseline_months).astype(int)

    # 1. unconditional false alarms
    rng = np.random.default_rng(11)
    sim_rule = WarningRule(odds_ratio=rule.odds_ratio, simulations=args.threshold_simulations)
    t0 = time.process_time()
    alarms, months = unconditional_false_alarm(cells, month, sim_rule, args.months, rng)
    far = alarms / months
    se = math.sqrt(far * (1 - far) / months)
    far_cpu = time.process_time() - t0
    previous = None
    if args.previous_months:
        with mock.patch.object(early_warning_module, "segment_threshold", previous_threshold):
            previous = unconditional_false_alarm(cells, month, sim_rule, args.previous_months, rng)

    # 2. detection, with the committed sample's own thresholds (the pipeline's simulations)
    plan = early_warnings(EMPTY, history, month, rule, as_of=month, final=False)
    plan = plan[plan.threshold.notna()]
    detect = []
    for dim in ("site×queue", "site", "queue"):
        rows = plan[plan.dimension == dim]
        d = pd.DataFrame([(r.segment, r.expected_audits, *detection(r, rule.odds_ratio, 1000, rng))
                          for r in rows.itertuples()], columns=["segment", "expected_audits", "median_days", "signalled"])
        detect.append((dim, len(rows), int(d.expected_audits.min()), int(d.expected_audits.max()),
                       d.signalled.mean(), d.median_days.median(), d.median_days.min(), d.median_days.max()))

    # 3. the planted spike on the committed sample
    a = clean[spike_month].assign(is_error=lambda f: f["is_error_final"])
    warn = early_warnings(a, history, spike_month, rule, as_of=spike_month, final=True).set_index(["dimension", "segment"])
    spike_rows = []
    for key in [("site×queue", spike["site"] + PAIR_VALUE + spike["queue"]), ("site", spike["site"]),
                ("queue", spike["queue"])]:
        r = warn.loc[key]
        spike_rows.append((key[0], key[1], r.first_signal_date, r.cusum_max, r.threshold, r.expected_audits,
                           r.audits_to_date))
    others = warn[warn.signalled].reset_index()
    others = others[~others.set_index(["dimension", "segment"]).index.isin([(d, s) for d, s, *_ in spike_rows])]
    cpu = time.process_time() - started

    lines = [
        f"- cells: {len(cells)} site × queue cells of {args.month}'s baseline months "
        f"({', '.join(f'{m:%Y-%m}' for m in baseline_months)}), {len(plan)} segments monitored; "
        f"each cell's true rate = its pooled error rate there ({cells.rate.min():.1%}–{cells.rate.max():.1%}), "
        f"baseline volumes as committed, the month at its mean volume ({cells.volume.min()}–{cells.volume.max()} audits)",
        f"- family-wise false-alarm rate, **unconditional** (baselines drawn binomially anew for each month, "
        f"thresholds from `early_warnings` at {args.threshold_simulations:,} simulations each): "
        f"**{far:.2%}** ± {se:.2%} (standard error; {alarms} of {months:,} no-change months) (target ≤ "
        f"{rule.family_alpha:.0%}); {far_cpu:.0f} s CPU",
    ]
    if previous:
        p = previous[0] / previous[1]
        lines.append(f"- the same measurement with the previous thresholds (every simulated month at the estimate p₀ "
                     f"itself, plain quantile): {p:.2%} ± {math.sqrt(p * (1 - p) / previous[1]):.2%} "
                     f"({previous[0]} of {previous[1]:,} months)")
    lines += [
        "",
        f"| a rise of the odds ×{rule.odds_ratio:g} from day 1 (1,000 months per segment, thresholds at "
        f"{rule.simulations:,} simulations) | segments | expected audits | signalled within the month | "
        "median days to signal (range of segments' medians) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for dim, k, lo, hi, share, med, mlo, mhi in detect:
        lines.append(f"| {dim} | {k} | {lo}–{hi} | {share:.0%} | {med:.1f} ({mlo:.1f}–{mhi:.1f}) |")
    lines += ["", f"Planted spike ({spike['site']} × {spike['queue']}, {spike['month']}, error probability "
                  f"×{spike['error_multiplier']:g}), committed sample, final run of the month:", ""]
    lines += ["| segment | first signal | CUSUM max | threshold | expected audits | audits |",
              "| --- | --- | ---: | ---: | ---: | ---: |"]
    for dim, seg, first, cmax, thr, exp, n in spike_rows:
        lines.append(f"| {dim} {seg.replace('|', chr(92) + '|')} | {first or 'none'} | {cmax:.2f} | {thr:.2f} | {exp} | {n} |")
    lines += ["", f"- other segments signalled in {spike['month']}: "
              + ("; ".join(f"{r.dimension} {r.segment} on {r.first_signal_date} ({r.cusum_max:.2f} against "
                           f"{r.threshold:.2f})" for r in others.itertuples()) or "none"),
              f"- CPU: {cpu:.0f} s"]
    text = "\n".join(lines)
    print(text)
    if args.results:
        header = (f"\n## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC · early-warning thresholds "
                  f"(`benchmarks/early_warning_threshold.py --month {args.month} --months {args.months} "
                  f"--threshold-simulations {args.threshold_simulations}`) · {platform.machine()}, "
                  f"{os.cpu_count()} cores, Python {platform.python_version()}\n\n")
        with open(args.results, "a", encoding="utf-8") as fh:
            fh.write(header + text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
