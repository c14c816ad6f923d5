"""Raw inputs through the validation gate: roster, audits and the policy catalogue (contract §2, §3),
and what every input's gate shares.

Every raw input has two blocking checks on the asset that reads it, each recorded beside the
staged rows (`Attempt.record_check`, so that the publication refuses them when one failed):

- `quarantined_share_within_limit`: the input's quarantined share ≤ its limit
  (`QA_MAX_INVALID_FRACTION_<INPUT>`, else `max_invalid_fraction`);
- `every_row_accounted_for`: per file, the rows read — counted in the file on their own (CSV
  records by Python's `csv` module, Parquet `num_rows`) — equal the rows clean + quarantined as
  produced (small inputs) or as staged (audits).

An asset that reads one input names them so; one that reads several prefixes them with the input
(`calibration_gold_quarantined_share_within_limit`, …). `gate_check_specs` / `gate_checks` are all an
input added later needs. The raw folder's layout is reported by `validated_audits`: every file or
folder no input reads goes to `qa_core.ingest_log` (input `raw_layout`, status `ignored`, with the
reason) and to the warning check `every_file_read`.
"""


from datetime import UTC, datetime

import dagster as dg
import pandas as pd
import sqlalchemy as sa

from qa_pipeline.assets.common import (
    DATA_ENGINEERING,
    QualityConfig,
    empty_frame,
    monthly_asset,
    preview,
    run_attempt,
)
from qa_pipeline.assets.month_gate import StagedGate, stage_month_gate
from qa_pipeline.domain.validation import (
    ASSIGNMENTS,
    AUDITS,
    EXPERIMENTS,
    IGNORED,
    POLICIES,
    READ,
    ROSTER,
    GateResult,
    InputSpec,
    Reference,
    ingest_rows,
    rule_counts,
    run_gate,
)
from qa_pipeline.resources.raw_store import RawStore
from qa_pipeline.resources.staging import Attempt
from qa_pipeline.resources.warehouse import Warehouse
from qa_pipeline.schemas import raw as raw_schemas
from qa_pipeline.schemas import warehouse as wh
from qa_pipeline.settings import Settings

QUARANTINE_SHARE_CHECK = "quarantined_share_within_limit"
ROWS_ACCOUNTED_CHECK = "every_row_accounted_for"
LAYOUT_CHECK = "every_file_read"
RAW_LAYOUT = "raw_layout"
"""The `input` of the ingest-log rows that report files and folders no input reads."""


# -- what every input's gate shares -------------------------------------------------------------

def check_name(check: str, input_name: str, prefixed: bool) -> str:
    return f"{input_name}_{check}" if prefixed else check


def gate_check_specs(asset: str, input_name: str, prefixed: bool = False) -> list[dg.AssetCheckSpec]:
    """The two blocking checks of one input on the asset that reads it."""
    return [
        dg.AssetCheckSpec(check_name(QUARANTINE_SHARE_CHECK, input_name, prefixed), asset=asset, blocking=True,
                          description=f"quarantined share of the {input_name} rows ≤ "
                                      f"QA_MAX_INVALID_FRACTION_{input_name.upper()} (else max_invalid_fraction)"),
        dg.AssetCheckSpec(check_name(ROWS_ACCOUNTED_CHECK, input_name, prefixed), asset=asset, blocking=True,
                          description=f"{input_name}: rows read (counted in each file on their own) = rows clean "
                                      "+ rows quarantined, per file"),
    ]


def _file_summary(files: pd.DataFrame, quarantine: pd.DataFrame | None, top: int = 5) -> str:
    """`file: q of n (rule k, …)` for the files with quarantined rows, most first."""
    hit = files[files["rows_quarantined"].fillna(0) > 0].sort_values(
        ["rows_quarantined", "source_file"], ascending=[False, True])
    parts = []
    for f in hit.head(top).itertuples():
        rules = ""
        if quarantine is not None and len(quarantine):
            counts = quarantine.loc[quarantine["source_file"] == f.source_file, "rule"].value_counts().head(3)
            rules = " (" + ", ".join(f"{r} {n}" for r, n in counts.items()) + ")" if len(counts) else ""
        parts.append(f"{f.source_file}: {int(f.rows_quarantined)} of {int(f.rows_read)}{rules}")
    if len(hit) > top:
        parts.append(f"and {len(hit) - top} more file(s)")
    return "; ".join(parts)


def gate_checks(*, input_name: str, asset_key: str, attempt: Attempt, staged_table: str, limit: float,
                files: pd.DataFrame, quarantine: pd.DataFrame | None = None, counts: pd.DataFrame | None = None,
                share_files: pd.DataFrame | None = None, scope: str = "",
                prefixed: bool = False) -> list[dg.AssetCheckResult]:
    """The input's two blocking checks, evaluated and recorded beside `staged_table`.

    `files`: the input's ingest-log rows (status `read` ones are checked for the identity);
    `share_files` (default: the same): the files whose rows count towards the share (the disputes
    of the run's own month). `quarantine` (a frame) or `counts` (rule, rows) for the metadata."""
    read = files[files["status"].eq(READ)] if "status" in files else files
    share_from = read if share_files is None else share_files
    n = int(share_from["rows_read"].fillna(0).sum())
    q = int(share_from["rows_quarantined"].fillna(0).sum())
    share = q / n if n else 0.0
    passed = share <= limit
    if quarantine is not None and share_files is not None:
        quarantine = quarantine[quarantine["source_file"].isin(share_files["source_file"])]
    by_rule = rule_counts(quarantine) if quarantine is not None else (
        counts if counts is not None else rule_counts(pd.DataFrame(columns=["rule"])))
    where = f" of {scope}" if scope else ""
    detail = _file_summary(share_from, quarantine)
    share_name = check_name(QUARANTINE_SHARE_CHECK, input_name, prefixed)
    identity_name = check_name(ROWS_ACCOUNTED_CHECK, input_name, prefixed)
    attempt.record_check(staged_table, share_name, passed=passed)
    share_result = dg.AssetCheckResult(
        asset_key=asset_key, check_name=share_name, passed=bool(passed), severity=dg.AssetCheckSeverity.ERROR,
        description=(f"{input_name}{where}: {share:.2%} of {n} rows quarantined "
                     f"({'within' if passed else 'above'} the {limit:.2%} limit)"
                     + (f" — {detail}" if detail else "") if n else f"{input_name}{where}: no row read"),
        metadata={
            "quarantined_share": dg.MetadataValue.float(share),
            "limit": dg.MetadataValue.float(limit),
            "rows_read": dg.MetadataValue.int(n),
            "rows_quarantined": dg.MetadataValue.int(q),
            "quarantine_by_rule": dg.MetadataValue.md(by_rule.to_markdown(index=False)),
            # the first failing rules as data: the alerts name them (operations.alerts)
            "quarantine_rule_counts": dg.MetadataValue.json(
                {str(r): int(n) for r, n in by_rule[["rule", "rows"]].head(10).itertuples(index=False)}),
            "staged_as": dg.MetadataValue.text(", ".join(attempt.staged_tables_of(staged_table))),
        },
    )
    counted = read["rows_clean"].fillna(0) + read["rows_quarantined"].fillna(0)
    broken = read[read["rows_read"].isna() | (read["rows_read"] != counted)]
    ok = broken.empty
    attempt.record_check(staged_table, identity_name, passed=ok)
    shown = read.drop(columns=[c for c in ("month", "file_sha256", "status", "reason") if c in read])
    identity_result = dg.AssetCheckResult(
        asset_key=asset_key, check_name=identity_name, passed=bool(ok), severity=dg.AssetCheckSeverity.ERROR,
        description=(f"{input_name}: rows read = rows clean + rows quarantined in every file ({len(read)})" if ok else
                     f"{input_name}: rows read ≠ clean + quarantined in " + "; ".join(
                         f"{f.source_file} (read {f.rows_read}, clean {f.rows_clean}, quarantined {f.rows_quarantined})"
                         for f in broken.head(5).itertuples())),
        metadata={
            "files": dg.MetadataValue.md(shown.to_markdown(index=False) if len(shown) else "no file"),
            "files_out_of_balance": dg.MetadataValue.int(len(broken)),
        },
    )
    return [share_result, identity_result]


def limit_for(quality_config: QualityConfig, input_name: str) -> float:
    return quality_config.thresholds().max_invalid_fraction_for(input_name)


def stage_gate(attempt: Attempt, gate: GateResult | None, input_name: str, scope: str = "input_month",
               extra_log: pd.DataFrame | None = None) -> None:
    """Stage the gate's quarantine rows and ingest log for the input (published with the month;
    a failed attempt's rows stay readable in `qa_staging`). `extra_log`: ingest-log rows of files
    not read (rejected)."""
    ensure_ingest_log_columns(attempt.warehouse)
    quarantine = gate.quarantine if gate is not None else empty_frame("qa_core.audits_quarantine")
    files = gate.files if gate is not None else ingest_rows([])
    if extra_log is not None and len(extra_log):
        files = pd.concat([files, extra_log], ignore_index=True) if len(files) else extra_log
    attempt.write("qa_core.audits_quarantine", quarantine, scope=scope, scope_input=input_name)
    attempt.write("qa_core.ingest_log", files, scope=scope, scope_input=input_name)


def ensure_ingest_log_columns(warehouse: Warehouse) -> None:
    """A warehouse whose `qa_core.ingest_log` predates `status` and `reason` gets them (its rows
    are files that were read: status `read`)."""
    t = wh.ingest_log
    if not warehouse.has_table(t.fullname):
        return
    cols = sa.table("columns", sa.column("table_schema"), sa.column("table_name"), sa.column("column_name"),
                    schema="information_schema")
    with warehouse.engine.begin() as conn:
        have = set(conn.execute(sa.select(cols.c.column_name).where(
            cols.c.table_schema == t.schema, cols.c.table_name == t.name)).scalars())
        missing = [c for c in ("status", "reason") if c not in have]
        if not missing:
            return
        warehouse.ddl_lock(conn)
        q = conn.dialect.identifier_preparer.quote
        for name in missing:
            conn.exec_driver_sql(f"ALTER TABLE {q(t.schema)}.{q(t.name)} ADD COLUMN {q(name)} TEXT")
        if "status" in missing:
            conn.execute(sa.update(t).values(status=READ))


def gate_snapshot(raw_store: RawStore, attempt: Attempt, spec: InputSpec, relative: str) -> GateResult | None:
    """Validate a snapshot input (`policy_changes/policy_changes.csv`, …) for a month's run and
    stage its quarantine; None when the file is absent (the input is optional). An input with
    policy codes is checked against the catalogue when there is one."""
    if spec.policy_columns:
        spec = spec.with_context(policies=policy_codes(raw_store, attempt))
    files = raw_store.read_single(relative, required=False)
    if not files:
        stage_gate(attempt, None, spec.name)
        return None
    gate = run_gate(files, spec, attempt.month)
    stage_gate(attempt, gate, spec.name)
    return gate


def gate_experiments(raw_store: RawStore, attempt: Attempt) -> tuple[GateResult | None, GateResult | None]:
    """The experiment registry, then the assignments — an assignment to an experiment the registry
    does not hold (or holds only in a quarantined row) is `experiment_id:unknown_experiment`."""
    exps = gate_snapshot(raw_store, attempt, EXPERIMENTS, "experiments/experiments.csv")
    known = frozenset(exps.clean["experiment_id"]) if exps is not None else frozenset()
    source = ("experiments/experiments.csv (its clean rows)" if exps is not None
              else "experiments/experiments.csv, which is missing")
    spec = ASSIGNMENTS.with_context(references=(Reference("experiment_id", "unknown_experiment", known, source),))
    arms = gate_snapshot(raw_store, attempt, spec, "experiments/assignments.csv")
    return exps, arms


def snapshot_checks(gate: GateResult | None, input_name: str, asset_key: str, attempt: Attempt,
                    staged_table: str, quality_config: QualityConfig, prefixed: bool = False) -> list[dg.AssetCheckResult]:
    """`gate_checks` for an optional snapshot input (absent: both pass, nothing read)."""
    files = gate.files if gate is not None else ingest_rows([])
    quarantine = gate.quarantine if gate is not None else None
    return gate_checks(input_name=input_name, asset_key=asset_key, attempt=attempt, staged_table=staged_table,
                       limit=limit_for(quality_config, input_name), files=files, quarantine=quarantine,
                       prefixed=prefixed)


def policy_catalogue(raw_store: RawStore, attempt: Attempt) -> GateResult | None:
    """The optional policy catalogue (`policies/policies.csv`) through its gate; None when absent."""
    files = raw_store.read_single(raw_schemas.POLICY_CATALOGUE, required=False)
    return run_gate(files, POLICIES, attempt.month) if files else None


def policy_codes(raw_store: RawStore, attempt: Attempt) -> frozenset | None:
    """The catalogue's codes (its clean rows), or None when there is no catalogue (any non-empty
    code is then a policy code). Every step that checks codes reads the catalogue itself; the
    `validated_audits` step stages its quarantine and carries its checks."""
    gate = policy_catalogue(raw_store, attempt)
    return None if gate is None else frozenset(gate.clean["policy"])


def audits_spec(raw_store: RawStore, attempt: Attempt) -> InputSpec:
    """The audits' spec with the run's context (the policy catalogue), for a caller that gates a
    month of audits outside `validated_audits` (`qa-pipeline validate`)."""
    return AUDITS.with_context(policies=policy_codes(raw_store, attempt))


def layout_log(raw_store: RawStore, attempt: Attempt) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Ingest-log rows (input `raw_layout`, status `ignored`, the reason) for what no input reads
    and this month's run reports — the entries inside this month's folders, and those of no month
    (reported by every month's run) —, and those of them that are not known extras."""
    known = Settings.from_env().raw_known_extras
    entries = [e for e in raw_store.layout_report(known) if e.month is None or e.month == attempt.month]
    log = ingest_rows([(pd.Timestamp(attempt.month), RAW_LAYOUT, e.path, None, None, None, None, IGNORED, e.reason)
                       for e in entries])
    return log, log[[not e.known_extra for e in entries]]


def _layout_check(log: pd.DataFrame, unexpected: pd.DataFrame) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=LAYOUT_CHECK, passed=bool(unexpected.empty), severity=dg.AssetCheckSeverity.WARN,
        description=("every file and folder under QA_RAW_DIR is read or expected" if unexpected.empty else
                     f"{len(unexpected)} file(s)/folder(s) under QA_RAW_DIR are not read: " + "; ".join(
                         f"{r.source_file} ({r.reason})" for r in unexpected.head(5).itertuples())
                     + ("; …" if len(unexpected) > 5 else "")),
        metadata={
            "not_read": dg.MetadataValue.int(len(unexpected)),
            "entries": dg.MetadataValue.md(log[["source_file", "reason"]].to_markdown(index=False)
                                           if len(log) else "none"),
        },
    )


def _gate_metadata(gate: GateResult | StagedGate) -> dict:
    if isinstance(gate, GateResult):
        gate = StagedGate(files=gate.files, rule_counts=gate.rule_counts(), sample=gate.quarantine.head(10))
    return {
        "rows_read": dg.MetadataValue.int(gate.rows_read),
        "rows_clean": dg.MetadataValue.int(gate.rows_clean),
        "rows_quarantined": dg.MetadataValue.int(gate.rows_quarantined),
        "quarantined_share": dg.MetadataValue.float(gate.quarantined_share),
        "files": dg.MetadataValue.int(len(gate.files)),
        "quarantine_by_rule": dg.MetadataValue.md(gate.rule_counts.to_markdown(index=False)),
        "quarantine_sample": preview(gate.sample, rows=10, columns=["source_file", "row_number", "rule", "reason"])
        if len(gate.sample) else dg.MetadataValue.text("no row quarantined"),
    }


# -- the assets ---------------------------------------------------------------------------------

@monthly_asset(
    group="ingest",
    owner=DATA_ENGINEERING,
    kinds={"pandas", "pandera"},
    description=(
        "The moderator roster (latest snapshot, `roster/roster.csv`) through its pandera gate. "
        "Rejected rows go to `qa_core.audits_quarantine` with input = roster (a hire date after "
        "the run's date is `hire_date:in_future`); the clean roster gives tenure to the month's "
        "audits. Blocking checks on the quarantined share and on every row being accounted for."
    ),
    check_specs=gate_check_specs("roster", ROSTER.name),
)
def roster(context: dg.AssetExecutionContext, raw_store: RawStore, warehouse: Warehouse,
           quality_config: QualityConfig):
    attempt = run_attempt(context, warehouse)
    spec = ROSTER.with_context(today=datetime.now(UTC).date())
    gate = run_gate(raw_store.read_single("roster/roster.csv"), spec, attempt.month)
    stage_gate(attempt, gate, ROSTER.name)
    attempt.write("qa_staging.roster_snapshot", gate.clean, scope="internal")
    yield dg.MaterializeResult(metadata={**_gate_metadata(gate), "dagster/row_count": len(gate.clean)})
    yield from gate_checks(input_name=ROSTER.name, asset_key="roster", attempt=attempt,
                           staged_table="qa_staging.roster_snapshot", limit=limit_for(quality_config, ROSTER.name),
                           files=gate.files, quarantine=gate.quarantine)


@monthly_asset(
    group="ingest",
    owner=DATA_ENGINEERING,
    kinds={"pandas", "pandera"},
    description=(
        "The month's raw audit files (`audits/YYYY-MM/*.csv|*.csv.gz|*.parquet`, any case, in name "
        "order) through the validation gate, and the optional policy catalogue (`policies/policies.csv`) "
        "the policy codes are checked against. Bad rows go to `qa_core.audits_quarantine` with rule, "
        "reason, file and row; duplicates keep the first read. Blocking checks stop the month when the "
        "quarantined share exceeds its limit or a row is unaccounted for; files and folders under "
        "QA_RAW_DIR that no input reads are logged (`ingest_log`, status ignored) and warned about."
    ),
    check_specs=[
        *gate_check_specs("validated_audits", AUDITS.name),
        *gate_check_specs("validated_audits", POLICIES.name, prefixed=True),
        dg.AssetCheckSpec(LAYOUT_CHECK, asset="validated_audits", blocking=False,
                          description="every file and folder under QA_RAW_DIR is read (or a known extra): "
                                      "the others are listed in qa_core.ingest_log (status ignored)"),
    ],
)
def validated_audits(context: dg.AssetExecutionContext, raw_store: RawStore, warehouse: Warehouse,
                     quality_config: QualityConfig):
    attempt = run_attempt(context, warehouse)
    month = attempt.month
    ensure_ingest_log_columns(warehouse)
    layout, unexpected = layout_log(raw_store, attempt)
    attempt.write("qa_core.ingest_log", layout, scope="input_month", scope_input=RAW_LAYOUT)
    catalogue = policy_catalogue(raw_store, attempt)
    stage_gate(attempt, catalogue, POLICIES.name)
    codes = None if catalogue is None else frozenset(catalogue.clean["policy"])
    spec = AUDITS.with_context(policies=codes)
    gate = stage_month_gate(attempt, raw_store.month_paths("audits", month), raw_store.root, spec,
                            chunk_rows=Settings.from_env().gate_chunk_rows)
    attempt.write("qa_core.ingest_log", gate.files, scope="input_month", scope_input=AUDITS.name)
    context.log.info(f"{month:%Y-%m}: {gate.rows_read} rows read, {gate.rows_clean} clean, "
                     f"{gate.rows_quarantined} quarantined ({gate.quarantined_share:.2%})")
    yield dg.MaterializeResult(metadata={**_gate_metadata(gate), "dagster/row_count": gate.rows_clean})
    yield from gate_checks(input_name=AUDITS.name, asset_key="validated_audits", attempt=attempt,
                           staged_table="qa_staging.validated_audits", limit=limit_for(quality_config, AUDITS.name),
                           files=gate.files, counts=gate.rule_counts, scope=f"{month:%Y-%m}")
    yield from snapshot_checks(catalogue, POLICIES.name, "validated_audits", attempt, "qa_staging.validated_audits",
                               quality_config, prefixed=True)
    yield _layout_check(layout, unexpected)
