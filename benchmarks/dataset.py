"""Benchmark data sets: one month of N audits, generated once into benchmarks/data/<N>/raw and reused.

    python benchmarks/dataset.py --audits 10000000 [--month 2026-03] [--seed 1] [--jobs 2]

A data set is keyed by N, month and seed (and the slice size): `benchmarks/data/<N>/COMPLETE.json`
records them, with how long the generation took and its peak memory. It is written last, after
the finished folder has been renamed from `raw.partial` to `raw`, so a generation that was cut short
is never reused: a `raw` folder without a matching marker is deleted and generated again. When the
generator (qa_pipeline/sample_data.py) changed since, the data set is reused with a warning (pass
--regenerate to rebuild it).

Up to `--slice` audits (1M) a data set is one call of `qa_pipeline.sample_data.generate`, exactly as
`qa-pipeline generate` would write it (seed as given, 400 moderators per site).

Above that, the month is generated in slices, because `generate` has no slice API (one call builds
the whole month in memory as object-dtype pandas frames, ~10× the memory of a 1M month, and its
audit ids always start at 0 for a single month):
- slice k (k = 0 … ⌈N / slice⌉ − 1) is a separate `generate` call with seed `seed + 1000·k` for
  `slice` audits (slice 0 is therefore the same as the 1M data set of the same seed), run in
  `--jobs` worker processes (one fresh process per slice, so memory is returned after each);
- its two audit files become `audits/<month>/audits_<month>_{in_house,vendors}_partKK.csv`, with
  every `audit_id` `A<yyyymm>-<n>` renumbered to `<n> + k·slice` (seven digits, as the generator
  writes them for one month of N audits); every other cell is copied as text, unchanged (DuckDB,
  all columns read as VARCHAR);
- the disputes of all slices are concatenated per folder into one `disputes.csv`, their audit ids
  renumbered the same way and their dispute ids renumbered `D-000000`… in slice order;
- the snapshot inputs (roster, policy changes, experiments and assignments, calibration with the
  HateCheck sessions) are slice 0's. The moderator ids of every slice are the same (`moderators_per_site`
  is fixed), so every slice's audits join to that roster; each slice drew its own hire dates and
  skills, so tenure bands come from slice 0's roster, not from the draw that shaped a later slice's
  error rates. Each slice carries its own planted bad rows (0.3 %) and one duplicated audit id.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = HERE / "data"
SLICE = 1_000_000
MODERATORS_PER_SITE = 400
SEED_STRIDE = 1000
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))


def generator_sha256() -> str:
    return hashlib.sha256((ROOT / "qa_pipeline" / "sample_data.py").read_bytes()).hexdigest()[:16]


def _key(audits: int, month: str, seed: int, slice_audits: int) -> dict:
    return {"audits": audits, "month": month, "seed": seed,
            "slice_audits": slice_audits if audits > slice_audits else None}


def _spec(month: str, n: int, seed: int, hatecheck: bool = True):
    from qa_pipeline.sample_data import SampleSpec

    return SampleSpec(months=[month], audits_per_month=n, seed=seed,
                      moderators_per_site=MODERATORS_PER_SITE, with_hatecheck=hatecheck)


def _gen_whole(out: str, month: str, n: int, seed: int) -> None:
    from qa_pipeline.sample_data import generate

    generate(_spec(month, n, seed), Path(out))


def _gen_slice(scratch: str, final: str, month: str, n: int, seed: int, k: int, offset: int) -> dict:
    """Worker process: generate slice k into scratch/k, write its renumbered audit files into final."""
    import duckdb

    from qa_pipeline.sample_data import generate

    t = time.perf_counter()
    src = Path(scratch) / f"slice{k:02d}"
    generate(_spec(month, n, seed, hatecheck=(k == 0)), src)
    gen_s = time.perf_counter() - t
    dest = Path(final) / "audits" / month
    dest.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(config={"threads": 1})
    prefix = f"A{month.replace('-', '')}-"
    renumber = (f"CASE WHEN starts_with(audit_id, '{prefix}') "
                f"THEN '{prefix}' || printf('%07d', CAST(substr(audit_id, {len(prefix) + 1}) AS BIGINT) + {offset}) "
                f"ELSE audit_id END")
    rows = 0
    for f in sorted((src / "audits" / month).glob("*.csv")):
        target = dest / f"{f.stem}_part{k:02d}.csv"
        rows += con.execute(f"""
            COPY (SELECT * REPLACE ({renumber} AS audit_id)
                  FROM read_csv('{f}', header = true, all_varchar = true, delim = ',', quote = '"',
                                escape = '"', sample_size = -1))
            TO '{target}' (HEADER, DELIMITER ',')
        """).fetchone()[0]
    con.close()
    # disputes stay in scratch (renumbered when merged); audits are not needed there any more
    shutil.rmtree(src / "audits")
    return {"slice": k, "seed": seed, "rows": rows, "generate_s": round(gen_s, 1),
            "total_s": round(time.perf_counter() - t, 1)}


def _merge_slices(scratch: Path, final: Path, month: str, slices: list[dict], slice_audits: int) -> None:
    import duckdb

    first = scratch / "slice00"
    for item in first.iterdir():  # the snapshot inputs and calibration come from slice 0
        if item.name in ("audits", "disputes"):
            continue
        if item.is_dir():
            shutil.copytree(item, final / item.name)
        elif item.name not in ("README.md", ".sample.json"):
            shutil.copy2(item, final / item.name)
    con = duckdb.connect()
    prefix = f"A{month.replace('-', '')}-"
    folders = sorted({p.parent.name for s in slices
                      for p in (scratch / f"slice{s['slice']:02d}" / "disputes").glob("*/disputes.csv")})
    for folder in folders:
        parts = []
        for s in slices:
            f = scratch / f"slice{s['slice']:02d}" / "disputes" / folder / "disputes.csv"
            if f.exists():
                parts.append(f"""
                    SELECT {s['slice']} AS k, * REPLACE (
                      CASE WHEN starts_with(audit_id, '{prefix}')
                           THEN '{prefix}' || printf('%07d', CAST(substr(audit_id, {len(prefix) + 1}) AS BIGINT)
                                                  + {s['slice'] * slice_audits})
                           ELSE audit_id END AS audit_id)
                    FROM read_csv('{f}', header = true, all_varchar = true, delim = ',', quote = '"',
                                  escape = '"', sample_size = -1)""")
        out = final / "disputes" / folder
        out.mkdir(parents=True, exist_ok=True)
        con.execute(f"""
            COPY (
              SELECT * EXCLUDE (k, n) REPLACE ('D-' || printf('%06d', n - 1) AS dispute_id)
              FROM (SELECT *, row_number() OVER (ORDER BY k, dispute_id) AS n FROM ({" UNION ALL ".join(parts)}))
              ORDER BY n
            ) TO '{out / "disputes.csv"}' (HEADER, DELIMITER ',')
        """)
    con.close()


def _readme(audits: int, month: str, seed: int, slices: list[dict] | None) -> str:
    lines = ["# Benchmark data set (synthetic)", "",
             f"{audits:,} audits in {month}, seed {seed}, {MODERATORS_PER_SITE} moderators per site, "
             "written by benchmarks/dataset.py.", ""]
    if slices:
        lines += [f"Generated in {len(slices)} slices (see the docstring of benchmarks/dataset.py): "
                  "slice k used seed `seed + 1000·k`; audit ids renumbered to be distinct; disputes "
                  "merged; roster, policy changes, experiments and calibration from slice 0.", ""]
    return "\n".join(lines) + "\n"


def ensure(audits: int, month: str = "2026-03", seed: int = 1, *, jobs: int = 2,
           slice_audits: int = SLICE, regenerate: bool = False, log=print) -> tuple[Path, dict]:
    """The raw folder of the data set, generated when missing; and its marker (with `reused`)."""
    from rss import TreeRSS

    base = DATA / str(audits)
    raw, partial, marker = base / "raw", base / "raw.partial", base / "COMPLETE.json"
    key = _key(audits, month, seed, slice_audits)
    if marker.exists() and raw.is_dir() and not regenerate:
        info = json.loads(marker.read_text())
        if {k: info.get(k) for k in key} == key:
            if info.get("generator_sha256") != generator_sha256():
                log(f"dataset: warning: {raw} was made by another version of sample_data.py "
                    "(reused all the same; --regenerate to rebuild it)")
            return raw, {**info, "reused": True}
        log(f"dataset: {raw} holds {({k: info.get(k) for k in key})}, not {key}: generating again")
    for p in (marker, raw, partial):
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    base.mkdir(parents=True, exist_ok=True)
    log(f"dataset: generating {audits:,} audits for {month} (seed {seed}) into {raw} ...")
    t = time.perf_counter()
    slices = None
    with TreeRSS(os.getpid()) as tree:
        if audits <= slice_audits:
            ctx = get_context("spawn")
            with ProcessPoolExecutor(1, mp_context=ctx) as pool:
                pool.submit(_gen_whole, str(partial), month, audits, seed).result()
        else:
            scratch = base / "slices.partial"
            shutil.rmtree(scratch, ignore_errors=True)
            count = (audits + slice_audits - 1) // slice_audits
            sizes = [min(slice_audits, audits - k * slice_audits) for k in range(count)]
            ctx = get_context("spawn")
            with ProcessPoolExecutor(max(1, jobs), mp_context=ctx, max_tasks_per_child=1) as pool:
                futures = [pool.submit(_gen_slice, str(scratch), str(partial), month, n,
                                       seed + SEED_STRIDE * k, k, k * slice_audits)
                           for k, n in enumerate(sizes)]
                slices = []
                for f in futures:
                    slices.append(f.result())
                    log(f"dataset: slice {slices[-1]['slice']} done: {slices[-1]}")
            _merge_slices(scratch, partial, month, slices, slice_audits)
            shutil.rmtree(scratch)
    seconds = time.perf_counter() - t
    (partial / "README.md").write_text(_readme(audits, month, seed, slices))
    partial.rename(raw)
    audit_files = sorted((raw / "audits" / month).glob("*.csv"))
    info = {**key, "generator_sha256": generator_sha256(), "jobs": jobs if slices else 1,
            "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "seconds": round(seconds, 1), "peak_tree_rss_gib": round(tree.peak_gib, 2),
            "peak_processes": tree.peak_processes,
            "csv_mb": round(sum(f.stat().st_size for f in audit_files) / 1e6, 1),
            "audit_files": len(audit_files), "slices": slices}
    marker.write_text(json.dumps(info, indent=1) + "\n")
    log(f"dataset: {audits:,} audits generated in {seconds:.0f} s, peak RSS of the generating process "
        f"tree {tree.peak_gib:.2f} GiB ({tree.peak_processes} processes)")
    return raw, {**info, "reused": False}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--audits", type=int, default=1_000_000)
    p.add_argument("--month", default="2026-03")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--jobs", type=int, default=2, help="slices generated in parallel (each ~1-2 GiB)")
    p.add_argument("--slice", type=int, default=SLICE, dest="slice_audits")
    p.add_argument("--regenerate", action="store_true")
    args = p.parse_args()
    raw, info = ensure(args.audits, args.month, args.seed, jobs=args.jobs, slice_audits=args.slice_audits,
                       regenerate=args.regenerate)
    print(json.dumps({"raw": str(raw), **{k: v for k, v in info.items() if k != "slices"}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
