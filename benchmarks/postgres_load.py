"""Benchmark: load a 1M-row `qa_core.audits_clean` partition into PostgreSQL.

    .ci/with-postgres .venv/bin/python benchmarks/postgres_load.py [--audits 1000000]
    (make bench-postgres)

Builds the enriched month in memory (generator → gate → enrichment), then times
`Warehouse.replace_partition` (one transaction: DELETE the month, binary COPY through ADBC)
into an empty partition and again as a rewrite of the same month, against the server in
QA_TEST_POSTGRES_URL (or --url). Appends the figures to benchmarks/results.md.
Target (issue 3): ≥ 200k rows/s.
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

    from qa_pipeline.domain.enrich import enrich_audits
    from qa_pipeline.domain.validation import AUDITS, ROSTER, run_gate
    from qa_pipeline.resources.raw_store import RawStore
    from qa_pipeline.resources.warehouse import Warehouse
    from qa_pipeline.sample_data import SampleSpec, generate

    month = date(2026, 3, 1)
    with tempfile.TemporaryDirectory() as tmp:
        generate(SampleSpec(months=["2026-03"], audits_per_month=args.audits, seed=1, moderators_per_site=400,
                            with_hatecheck=False), Path(tmp))
        store = RawStore(raw_dir=tmp)
        gate = run_gate(store.read_month("audits", month), AUDITS, month)
        roster = run_gate(store.read_single("roster/roster.csv"), ROSTER, month).clean
        frame = enrich_audits(gate.clean, roster, month)
    warehouse = Warehouse(url=args.url)
    warehouse.replace_partition("qa_core.audits_clean", frame.head(0), month)  # table exists, partition empty
    figures = {}
    for label in ("into an empty partition", "rewrite of the same partition"):
        t = time.perf_counter()
        rows = warehouse.replace_partition("qa_core.audits_clean", frame, month)
        seconds = time.perf_counter() - t
        figures[label] = (rows, seconds)
    server = warehouse.scalar(__import__("sqlalchemy").text("show server_version"))
    lines = [f"## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC · PostgreSQL {server} load · {platform.machine()}, "
             f"{os.cpu_count()} cores", ""]
    for label, (rows, seconds) in figures.items():
        lines.append(f"- `audits_clean` {rows:,} rows {label}: {seconds:.2f} s = **{rows / seconds:,.0f} rows/s** "
                     "(target ≥ 200,000)")
    lines.append("")
    text = "\n".join(lines)
    print(text)
    with open(args.results, "a") as fh:
        fh.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
