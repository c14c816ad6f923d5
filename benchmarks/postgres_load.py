"""Benchmark: a 1M-audit month through PostgreSQL's staging and publication.

    .ci/with-postgres .venv/bin/python benchmarks/postgres_load.py [--audits 1000000]
    (make bench-postgres)

Generates the month, runs the streaming gate over it in memory, then times against the server in
QA_TEST_POSTGRES_URL (or --url), as a run does:
1. the load: the validated rows into the run's staging table (binary COPY through ADBC, two
   connections) — the figure the ≥ 200k rows/s target is about;
2. the enrichment: `audits_clean` as INSERT … SELECT inside PostgreSQL;
3. the publication: the staged partition swapped in (one transaction), into an empty month and
   again over a published one.
Appends the figures to benchmarks/results.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--audits", type=int, default=1_000_000)
    p.add_argument("--url", default=os.environ.get("QA_TEST_POSTGRES_URL"))
    p.add_argument("--results", default=str(HERE / "results.md"))
    args = p.parse_args()
    if not args.url:
        raise SystemExit("no PostgreSQL: run through .ci/with-postgres or pass --url")

    import pyarrow as pa

    from qa_pipeline.assets.common import empty_frame
    from qa_pipeline.domain.enrich import enrich_audits
    from qa_pipeline.domain.streaming_gate import stream_gate
    from qa_pipeline.domain.validation import AUDITS, ROSTER, run_gate
    from qa_pipeline.resources.raw_store import RawStore
    from qa_pipeline.resources.staging import Attempt
    from qa_pipeline.resources.warehouse import Warehouse
    from qa_pipeline.sample_data import SampleSpec, generate

    month = date(2026, 3, 1)
    with tempfile.TemporaryDirectory() as tmp:
        generate(SampleSpec(months=["2026-03"], audits_per_month=args.audits, seed=1, moderators_per_site=400,
                            with_hatecheck=False), Path(tmp))
        store = RawStore(raw_dir=tmp)
        chunks = [c.clean for c in stream_gate(store.month_paths("audits", month), store.root, AUDITS, month)]
        roster = run_gate(store.read_single("roster/roster.csv"), ROSTER, month).clean
    rows = pa.concat_tables(chunks)
    rows = rows.append_column("month", pa.repeat(pa.scalar(month, pa.date32()), rows.num_rows))
    warehouse = Warehouse(url=args.url)
    figures = {}
    for label in ("into an empty month", "over a published month"):
        attempt = Attempt(warehouse, month, f"bench-{len(figures)}")
        staged = attempt.create("qa_staging.validated_audits", scope="internal")
        attempt.write("qa_staging.roster_snapshot", roster, scope="internal")
        attempt.write("qa_core.disputes", empty_frame("qa_core.disputes"), scope="whole")
        t = time.perf_counter()
        attempt.append(staged, rows.select([c.name for c in staged.columns]))
        load = time.perf_counter() - t
        t = time.perf_counter()
        attempt.write_query("qa_core.audits_clean", enrich_audits(
            attempt.staged("qa_staging.validated_audits"), attempt.staged("qa_staging.roster_snapshot"),
            attempt.staged("qa_core.disputes"), month))
        enrich = time.perf_counter() - t
        t = time.perf_counter()
        attempt.publish()
        publish = time.perf_counter() - t
        figures[label] = (rows.num_rows, load, enrich, publish)
    server = warehouse.scalar(__import__("sqlalchemy").text("show server_version"))
    lines = [f"## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC · PostgreSQL {server} load · {platform.machine()}, "
             f"{os.cpu_count()} cores", ""]
    for label, (n, load, enrich, publish) in figures.items():
        lines.append(f"- {n:,} audits {label}: load into staging {load:.2f} s = **{n / load:,.0f} rows/s** "
                     f"(target ≥ 200,000); enrichment INSERT … SELECT {enrich:.2f} s; publication {publish:.2f} s")
    lines.append("")
    text = "\n".join(lines)
    print(text)
    with open(args.results, "a") as fh:
        fh.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
