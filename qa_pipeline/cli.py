"""`qa-pipeline demo | run | generate | validate | grants | deep-dive | dashboard` — the commands of the README."""

from __future__ import annotations

import argparse
import sys

from qa_pipeline.settings import Settings, resolve_path

DEFAULT_SAMPLE_MONTHS = "2025-07..2026-06"


def _months(text: str) -> list[str]:
    from qa_pipeline.sample_data import parse_months

    return parse_months(text)


def cmd_generate(args) -> int:
    from qa_pipeline.sample_data import SampleSpec, generate

    out = resolve_path(args.out) if args.out else Settings.from_env().raw_dir
    spec = SampleSpec(months=_months(args.months), audits_per_month=args.audits_per_month,
                      seed=args.seed, fmt=args.format)
    summary = generate(spec, out)
    total = sum(summary["audits"].values())
    print(f"wrote {total:,} audits over {len(spec.months)} month(s) and every other raw input to {out}")
    print(f"planted effects: {out / 'README.md'}")
    return 0


def cmd_run(args) -> int:
    from qa_pipeline.hygiene import WarehouseBusy
    from qa_pipeline.runner import run_months

    try:
        outcomes = run_months(_months(args.month), Settings.from_env(), progress=not args.quiet)
    except WarehouseBusy as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    return 0 if all(o.success for o in outcomes) else 1


def cmd_validate(args) -> int:
    """The audit gate alone, exactly as a run applies it (streamed, cross-row rules in the
    warehouse), staged under a throwaway attempt that is dropped afterwards: nothing is published."""
    import uuid

    from qa_pipeline.assets.ingest import audits_spec
    from qa_pipeline.assets.month_gate import stage_month_gate
    from qa_pipeline.domain.months import month_start
    from qa_pipeline.domain.validation import RawInputError
    from qa_pipeline.resources.raw_store import RawStore
    from qa_pipeline.resources.staging import Attempt
    from qa_pipeline.resources.warehouse import Warehouse

    settings = Settings.from_env()
    month = month_start(args.month)
    store = RawStore(raw_dir=str(settings.raw_dir))
    attempt = Attempt(Warehouse(url=settings.warehouse_url), month, str(uuid.uuid4()))
    try:
        gate = stage_month_gate(attempt, store.month_paths("audits", month), store.root, audits_spec(store, attempt),
                                chunk_rows=settings.gate_chunk_rows)
        sample = attempt.warehouse.execute(attempt.staged("qa_core.audits_quarantine").order_by(
            ["source_file", "row_number"]).select("source_file", "row_number", "reason").limit(args.show))
    except RawInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        attempt.discard()
    limit = settings.thresholds.max_invalid_fraction_for("audits")
    print(f"{args.month}: {gate.rows_read:,} rows read, {gate.rows_clean:,} clean, "
          f"{gate.rows_quarantined:,} quarantined ({gate.quarantined_share:.2%}; limit {limit:.2%})")
    print(gate.files[["source_file", "rows_read", "rows_clean", "rows_quarantined"]].to_string(index=False))
    if gate.rows_quarantined:
        print("\nquarantined rows by rule:")
        print(gate.rule_counts.to_string(index=False))
        print("\nfirst quarantined rows:")
        print(sample.to_string(index=False))
    return 0 if gate.quarantined_share <= limit else 1


def cmd_demo(args) -> int:
    from qa_pipeline.domain.months import is_month_folder
    from qa_pipeline.hygiene import WarehouseBusy
    from qa_pipeline.runner import run_months

    settings = Settings.from_env()
    audits = settings.raw_dir / "audits"
    if not audits.is_dir() or not any(audits.iterdir()):
        print(f"no raw audits in {settings.raw_dir}: generating the sample ({DEFAULT_SAMPLE_MONTHS})")
        args.months, args.out, args.format = DEFAULT_SAMPLE_MONTHS, None, "csv"
        cmd_generate(args)
    months = sorted(p.name for p in audits.iterdir() if p.is_dir() and is_month_folder(p.name))
    try:
        outcomes = run_months(months, settings, progress=not args.quiet)
    except WarehouseBusy as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    from qa_pipeline.resources.warehouse import Warehouse

    wh = Warehouse(url=settings.warehouse_url)
    if wh.has_table("qa_reporting.quality_metrics"):
        import sqlalchemy as sa

        from qa_pipeline.schemas.warehouse import quality_metrics as qm

        overall = wh.read(sa.select(qm.c.month, qm.c.audits, qm.c.accuracy, qm.c.accuracy_ci_low,
                                    qm.c.accuracy_ci_high).where(qm.c.dimension == "overall")
                          .order_by(qm.c.month))
        print("\noverall accuracy by month:")
        print(overall.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"\nwarehouse : {wh.describe()}")
    print(f"reports   : {settings.reports_dir}")
    index = settings.reports_dir / "index.html"
    if index.exists():
        print(f"report    : {index}")
    print(f"dagster   : {settings.dagster_home} (make dev opens the UI on http://127.0.0.1:3000)")
    from qa_pipeline.dashboard.serve import url as dashboard_url

    print(f"dashboard : {dashboard_url()} (start it with `make dashboard`)")
    return 0 if all(o.success for o in outcomes) else 1


def cmd_dashboard(args) -> int:
    """Streamlit on the published snapshot (or QA_DASHBOARD_URL as an analyst), until Ctrl-C."""
    import subprocess

    from qa_pipeline.dashboard.serve import command, url
    from qa_pipeline.dashboard.source import AnalystWarehouse, NoDataYet, open_source

    try:
        source = open_source()
        if isinstance(source, AnalystWarehouse):
            source.check_analyst()
        print(f"dashboard: {url(args.port, args.host)} (reads {source.describe()}; Ctrl-C stops it)", flush=True)
    except (NoDataYet, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        return subprocess.call(command(args.port, args.host))
    except KeyboardInterrupt:
        return 0


def cmd_grants(args) -> int:
    """Least-privilege access on PostgreSQL: roles and logins by an administrator (--admin-url,
    QA_ADMIN_URL) or the pipeline's login when it may; grants by the pipeline's login, which owns
    the schemas; --print-sql prints every statement for a DBA and changes nothing."""
    import os

    from qa_pipeline.resources import access

    settings = Settings.from_env()
    roles = access.Roles.from_env()
    try:
        logins = access.logins_from_env(roles)
        if args.print_sql:
            sys.stdout.write(access.script(settings.warehouse_url, roles, logins))
            return 0
        done = access.apply_grants(settings.warehouse_url, roles, logins,
                                   admin_url=args.admin_url or os.environ.get("QA_ADMIN_URL") or None)
    except access.AccessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for line in done:
        print(line)
    print(f"grants applied: {len(done)} statements ({roles.analyst} reads qa_reporting; {roles.engineer} reads and "
          "writes both)")
    return 0


def cmd_deep_dive(args) -> int:
    """One segment of a published month as a file for the quality team; bad input is one line, exit 2."""
    from qa_pipeline.domain.deep_dive import DeepDiveInputError
    from qa_pipeline.reports.deep_dive import deep_dive
    from qa_pipeline.resources.report_store import ReportStore
    from qa_pipeline.resources.warehouse import Warehouse

    settings = Settings.from_env()
    try:
        dive = deep_dive(Warehouse(url=settings.warehouse_url), ReportStore(reports_dir=str(settings.reports_dir)),
                         args.month, args.where or [], settings.thresholds.target_accuracy,
                         settings.thresholds.theme_min_people)
    except DeepDiveInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(dive.finding)
    print(dive.paths["html"])
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="qa-pipeline", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="write synthetic raw data (every input of the contract)")
    g.add_argument("--months", default=DEFAULT_SAMPLE_MONTHS, help="YYYY-MM..YYYY-MM or a comma list")
    g.add_argument("--audits-per-month", type=int, default=3000)
    g.add_argument("--seed", type=int, default=7)
    g.add_argument("--out", default=None, help="output folder (default: QA_RAW_DIR)")
    g.add_argument("--format", choices=["csv", "parquet"], default="csv")
    g.set_defaults(func=cmd_generate)

    r = sub.add_parser("run", help="materialize every monthly asset for a month through Dagster")
    r.add_argument("--month", required=True, help="YYYY-MM, or a range YYYY-MM..YYYY-MM")
    r.add_argument("--quiet", action="store_true", help="no per-step progress lines")
    r.set_defaults(func=cmd_run)

    v = sub.add_parser("validate", help="run the validation gate alone and print a per-rule summary")
    v.add_argument("--month", required=True)
    v.add_argument("--show", type=int, default=10, help="quarantined rows to print")
    v.set_defaults(func=cmd_validate)

    d = sub.add_parser("demo", help="generate the sample if missing, run every month, print where things are")
    d.add_argument("--quiet", action="store_true")
    d.add_argument("--audits-per-month", type=int, default=3000)
    d.add_argument("--seed", type=int, default=7)
    d.set_defaults(func=cmd_demo)
    gr = sub.add_parser("grants", help="create the qa_analyst / qa_engineer roles and grants (PostgreSQL)")
    gr.add_argument("--admin-url", default=None,
                    help="an administrator's connection (CREATEROLE) for the roles and logins; default QA_ADMIN_URL")
    gr.add_argument("--print-sql", action="store_true",
                    help="print every statement, in order, for a DBA; change nothing")
    gr.set_defaults(func=cmd_grants)
    dd = sub.add_parser("deep-dive", help="one segment of a published month as a file for the quality team")
    dd.add_argument("--month", required=True, help="a published month, YYYY-MM")
    dd.add_argument("--where", action="append", metavar="DIMENSION=VALUE",
                    help="a condition (repeat to combine; the first names the peers), e.g. site=Dublin")
    dd.set_defaults(func=cmd_deep_dive)
    db = sub.add_parser("dashboard", help="serve the Training & Quality dashboard (Streamlit) on loopback")
    db.add_argument("--port", type=int, default=8501)
    db.add_argument("--host", default="127.0.0.1", help="address to listen on (default loopback only)")
    db.set_defaults(func=cmd_dashboard)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
