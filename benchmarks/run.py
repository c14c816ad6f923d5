"""Benchmark: one month of N audits through `qa-pipeline run`, against a plain-SQL floor.

    python benchmarks/run.py [--audits 1000000] [--month 2026-03] [--seed 1] [--floor-only] [--keep]
    make bench          # 1M audits
    make bench-10m      # 10M audits in one month

1. the data set: generated once into benchmarks/data/<N>/raw and reused while its marker
   (COMPLETE.json: N, month, seed) matches — see benchmarks/dataset.py (10M is generated as ten
   1M slices with distinct seeds and audit ids);
2. the floor: DuckDB reading the same raw CSVs and computing every dimension's audit and error
   counts in plain SQL (no validation, no enrichment beyond a roster join, no writes), run twice
   in this process (the first warms the page cache), the second timed;
3. `qa-pipeline run --month M` end to end in a subprocess (fresh DuckDB warehouse and Dagster
   instance under benchmarks/work/<N>), timed from process start to exit, with
   - the peak RSS of its whole process tree: the sum of RSS over the run and all its descendants,
     sampled every 0.1 s (benchmarks/rss.py; /proc on Linux, psutil elsewhere);
   - ru_maxrss of the child from wait4 (the largest single process of the tree);
   - its CPU seconds (user + system, the tree's), against the floor's: a ratio that other work on
     a shared machine disturbs less than the wall-clock one (the target is on wall clock);
4. each step's duration from the run's events in the instance;
5. prints the figures and the targets, and appends them to benchmarks/results.md — only when the
   run succeeded (`--floor-only` stops after step 2 and appends nothing).

Targets: end to end ≤ 8× the floor; whole-tree peak RSS ≤ 2 GiB at 1M audits, ≤ 4 GiB at 10M.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from dataset import ensure  # noqa: E402
from rss import TreeRSS, wait4_rusage  # noqa: E402

DIMENSIONS = ["site", "team_type", "queue", "policy", "market", "content_type", "tenure_band"]
MAX_RATIO = 8.0
# whole-tree peak RSS targets (GiB) by data set size
RSS_TARGETS = {1_000_000: 2.0, 10_000_000: 4.0}


def rss_target(audits: int) -> float | None:
    return RSS_TARGETS.get(audits)


def run_pipeline(work: Path, raw: Path, month: str, interval: float = 0.1) -> dict:
    env = dict(os.environ)
    env.update({
        "QA_RAW_DIR": str(raw),
        "QA_WAREHOUSE_URL": f"duckdb:///{work}/warehouse/qa.duckdb",
        "QA_REPORTS_DIR": str(work / "reports"),
        "DAGSTER_HOME": str(work / "dagster_home"),
    })
    for sub in ("warehouse", "reports", "dagster_home"):
        shutil.rmtree(work / sub, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    out_path, err_path = work / "run.stdout", work / "run.stderr"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        t = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "qa_pipeline.cli", "run", "--month", month, "--quiet"],
                                env=env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        with TreeRSS(proc.pid, interval) as tree:
            code, child_maxrss_gib, cpu_s = wait4_rusage(proc.pid)  # reaps the child: sample until then
        elapsed = time.perf_counter() - t
        proc.returncode = code
    return {
        "returncode": code,
        "seconds": elapsed,
        "cpu_seconds": cpu_s,
        "tree_peak_gib": tree.peak_bytes / 2**30,
        "tree_peak_processes": tree.peak_processes,
        "tree_max_processes": tree.max_processes,
        "samples": tree.samples,
        "child_maxrss_gib": child_maxrss_gib,
        "dagster_home": env["DAGSTER_HOME"],
        "stdout": out_path,
        "stderr": err_path,
    }


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


def floor(raw: Path, month: str) -> tuple[float, int, float]:
    """DuckDB over the same CSVs: every dimension's audits and errors in one plain SQL pass.
    Returns (wall seconds, segment rows, CPU seconds of this process: DuckDB's threads)."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    t, cpu = time.perf_counter(), time.process_time()
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
    seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
    con.close()
    return seconds, len(rows), cpu


def _verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--audits", type=int, default=1_000_000)
    p.add_argument("--month", default="2026-03")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--jobs", type=int, default=2, help="processes generating slices (data sets above 1M)")
    p.add_argument("--regenerate", action="store_true", help="generate the data set again even if it is there")
    p.add_argument("--floor-only", action="store_true",
                   help="data set and floor only: no pipeline run, nothing appended")
    p.add_argument("--interval", type=float, default=0.1, help="RSS sampling interval, seconds")
    p.add_argument("--keep", action="store_true", help="keep benchmarks/work/<N> (warehouse, instance, logs)")
    p.add_argument("--results", default=str(HERE / "results.md"))
    args = p.parse_args()

    raw, data = ensure(args.audits, args.month, args.seed, jobs=args.jobs, regenerate=args.regenerate,
                       log=lambda m: print(m, file=sys.stderr, flush=True))
    audit_files = sorted((raw / "audits" / args.month).glob("*.csv"))
    csv_mb = sum(f.stat().st_size for f in audit_files) / 1e6
    gen_note = (f"reused (generated {data['generated_at']} in {data['seconds']:.0f} s, "
                f"peak RSS {data['peak_tree_rss_gib']:.2f} GiB)" if data["reused"] else
                f"generated in {data['seconds']:.0f} s, peak RSS {data['peak_tree_rss_gib']:.2f} GiB")
    if data.get("slices"):
        gen_note += f", {len(data['slices'])} slices of {data['slice_audits']:,} with {data['jobs']} processes"

    floor(raw, args.month)  # warm the page cache for both contenders
    floor_s, floor_rows, floor_cpu = floor(raw, args.month)
    print(f"floor: {floor_s:.2f} s, {floor_cpu:.2f} CPU s ({floor_rows} segment rows) over {csv_mb:.0f} MB of CSV in "
          f"{len(audit_files)} files; data set {gen_note}", file=sys.stderr, flush=True)
    if args.floor_only:
        return 0

    work = HERE / "work" / str(args.audits)
    load_before = os.getloadavg()[0]
    run = run_pipeline(work, raw, args.month, args.interval)
    load_after = os.getloadavg()[0]
    if run["returncode"] != 0:
        tail = lambda f: "\n".join(f.read_text(errors="replace").splitlines()[-40:])  # noqa: E731
        print(f"qa-pipeline run failed (exit {run['returncode']}) after {run['seconds']:.1f} s; "
              f"nothing appended to {args.results}\n--- stdout ---\n{tail(run['stdout'])}\n"
              f"--- stderr ---\n{tail(run['stderr'])}", file=sys.stderr)
        return 1
    steps = step_durations(run["dagster_home"])
    ratio = run["seconds"] / floor_s
    target = rss_target(args.audits)
    rss_line = (f"- peak RSS of the run's whole process tree (sum over the run and its children, sampled "
                f"every {args.interval:g} s, {run['samples']} samples): **{run['tree_peak_gib']:.2f} GiB** "
                f"({run['tree_peak_processes']} processes at the peak, at most {run['tree_max_processes']})")
    if target is not None:
        rss_line += f" (target ≤ {target:g} GiB: {_verdict(run['tree_peak_gib'] <= target)})"

    lines = [
        f"## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC · {args.audits:,} audits · {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}",
        "",
        f"- raw CSV: {csv_mb:.0f} MB in {len(audit_files)} files; data set {gen_note}",
        f"- machine load (1-min average) before / after the run: {load_before:.1f} / {load_after:.1f} "
        f"on {os.cpu_count()} cores (other work on the machine slows both contenders)",
        f"- floor (DuckDB, plain SQL, {floor_rows} segment rows): **{floor_s:.2f} s** ({floor_cpu:.1f} CPU s)",
        f"- `qa-pipeline run` end to end (process start to exit): **{run['seconds']:.1f} s** "
        f"= **{ratio:.1f}× the floor** (target ≤ {MAX_RATIO:g}×: {_verdict(ratio <= MAX_RATIO)}); "
        f"CPU {run['cpu_seconds']:.1f} s = {run['cpu_seconds'] / max(floor_cpu, 1e-9):.1f}× the floor's "
        "(less sensitive to other load)",
        rss_line,
        f"- ru_maxrss of the run (largest single process, from wait4): {run['child_maxrss_gib']:.2f} GiB",
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
