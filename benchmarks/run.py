"""Benchmark: one month of N audits through `qa-pipeline run`, against a plain-SQL floor.

    python benchmarks/run.py [--audits 1000000] [--month 2026-03] [--keep]

1. generates a month of N audits (and the roster) into benchmarks/work/raw;
2. times `qa-pipeline run --month M` end to end in a subprocess (fresh DuckDB warehouse and
   Dagster instance), with the peak RSS of that process;
3. reads each step's duration from the run's events in the instance;
4. times the floor: DuckDB reading the same raw CSVs and computing every dimension's audit and
   error counts in plain SQL (no validation, no enrichment beyond a roster join, no writes);
5. prints the figures and appends them to benchmarks/results.md.

Targets (issue 2): end to end ≤ 8× the floor; peak RSS ≤ 3 GiB.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

DIMENSIONS = ["site", "team_type", "queue", "policy", "market", "content_type", "tenure_band"]


def generate(raw: Path, month: str, n: int, seed: int) -> float:
    from qa_pipeline.sample_data import SampleSpec
    from qa_pipeline.sample_data import generate as gen

    if raw.exists():
        shutil.rmtree(raw)
    t = time.perf_counter()
    gen(SampleSpec(months=[month], audits_per_month=n, seed=seed, moderators_per_site=400), raw)
    return time.perf_counter() - t


def run_pipeline(work: Path, raw: Path, month: str) -> tuple[float, float, str]:
    env = dict(os.environ)
    env.update({
        "QA_RAW_DIR": str(raw),
        "QA_WAREHOUSE_URL": f"duckdb:///{work}/warehouse/qa.duckdb",
        "QA_REPORTS_DIR": str(work / "reports"),
        "DAGSTER_HOME": str(work / "dagster_home"),
    })
    for sub in ("warehouse", "reports", "dagster_home"):
        shutil.rmtree(work / sub, ignore_errors=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "qa_pipeline.cli", "run", "--month", month, "--quiet"],
                          env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if proc.returncode != 0:
        raise SystemExit(f"qa-pipeline run failed:\n{proc.stdout}\n{proc.stderr}")
    if peak_kib <= before:
        peak_kib = before
    return elapsed, peak_kib / 1024 / 1024, env["DAGSTER_HOME"]


def step_durations(dagster_home: str) -> dict[str, float]:
    import dagster as dg

    os.environ["DAGSTER_HOME"] = dagster_home
    with dg.DagsterInstance.get() as instance:
        run = instance.get_runs(limit=1)[0]
        starts, durations = {}, {}
        for rec in instance.all_logs(run.run_id):
            ev = rec.dagster_event
            if ev is None:
                continue
            if ev.event_type_value == "STEP_START":
                starts[ev.step_key] = rec.timestamp
            elif ev.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE") and ev.step_key in starts:
                durations[ev.step_key] = rec.timestamp - starts[ev.step_key]
        stats = instance.get_run_stats(run.run_id)
        durations["(run, from the instance)"] = (stats.end_time or 0) - (stats.start_time or 0)
    return durations


def floor(raw: Path, month: str) -> tuple[float, int]:
    """DuckDB over the same CSVs: every dimension's audits and errors in one plain SQL pass."""
    import duckdb

    con = duckdb.connect()
    t = time.perf_counter()
    sets = ", ".join(f"({d})" for d in DIMENSIONS) + ", (site, queue), ()"
    rows = con.execute(f"""
        WITH a AS (
          SELECT *, (action_moderator <> action_auditor OR policy_moderator <> policy_auditor) AS is_error,
                 CASE WHEN policy_auditor = 'NONE' THEN policy_moderator ELSE policy_auditor END AS policy
          FROM read_csv('{raw}/audits/{month}/*.csv', header = true, all_varchar = true)
        ), r AS (SELECT moderator_id, CAST(hire_date AS DATE) AS hire_date
                 FROM read_csv('{raw}/roster/roster.csv', header = true, all_varchar = true)),
        e AS (
          SELECT a.*, CASE
              WHEN r.hire_date IS NULL THEN 'unknown'
              WHEN date_diff('day', r.hire_date, CAST(TRY_CAST(a.decision_at AS TIMESTAMPTZ) AS DATE)) <= 30 THEN '0-30'
              WHEN date_diff('day', r.hire_date, CAST(TRY_CAST(a.decision_at AS TIMESTAMPTZ) AS DATE)) <= 90 THEN '31-90'
              WHEN date_diff('day', r.hire_date, CAST(TRY_CAST(a.decision_at AS TIMESTAMPTZ) AS DATE)) <= 180 THEN '91-180'
              WHEN date_diff('day', r.hire_date, CAST(TRY_CAST(a.decision_at AS TIMESTAMPTZ) AS DATE)) <= 365 THEN '181-365'
              ELSE '366+' END AS tenure_band
          FROM a LEFT JOIN r USING (moderator_id)
        )
        SELECT {", ".join(DIMENSIONS)}, count(*) AS audits, sum(is_error::INT) AS errors
        FROM e GROUP BY GROUPING SETS ({sets})
    """).fetchall()
    return time.perf_counter() - t, len(rows)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--audits", type=int, default=1_000_000)
    p.add_argument("--month", default="2026-03")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--keep", action="store_true", help="keep benchmarks/work afterwards")
    p.add_argument("--results", default=str(HERE / "results.md"))
    args = p.parse_args()

    work = HERE / "work"
    raw = work / "raw"
    work.mkdir(parents=True, exist_ok=True)
    gen_s = generate(raw, args.month, args.audits, args.seed)
    csv_mb = sum(f.stat().st_size for f in (raw / "audits" / args.month).glob("*.csv")) / 1e6
    floor(raw, args.month)  # warm the page cache for both contenders
    floor_s, floor_rows = floor(raw, args.month)
    total_s, peak_gib, home = run_pipeline(work, raw, args.month)
    steps = step_durations(home)
    ratio = total_s / floor_s

    lines = [
        f"## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC · {args.audits:,} audits · {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}",
        "",
        f"- raw CSV: {csv_mb:.0f} MB (generated in {gen_s:.1f} s)",
        f"- floor (DuckDB, plain SQL, {floor_rows} segment rows): **{floor_s:.2f} s**",
        f"- `qa-pipeline run` end to end (process start to exit): **{total_s:.1f} s** "
        f"= **{ratio:.1f}× the floor** (target ≤ 8×)",
        f"- peak RSS of the run: **{peak_gib:.2f} GiB** (target ≤ 3 GiB)",
        "",
        "| step | seconds |",
        "| --- | ---: |",
        *[f"| {k} | {v:.2f} |" for k, v in steps.items()],
        "",
    ]
    text = "\n".join(lines)
    print(text)
    results = Path(args.results)
    if not results.exists():
        results.write_text("# Benchmark results\n\nAppended by `benchmarks/run.py` (`make bench`).\n\n")
    with results.open("a") as fh:
        fh.write(text + "\n")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
