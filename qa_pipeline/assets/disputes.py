"""Disputes: validated, folded into audits_clean, and summarised.

Every month's run reads every disputes folder (a dispute resolved later restates an earlier month).
A problem in one folder blocks that folder's month only:

- the run of month M stops on a file of `disputes/M/` that cannot be read or lacks a column (the
  message names the file and the column), and its blocking share check counts the rows of
  `disputes/M/` only;
- a file of another folder that cannot be read or lacks a column is logged (`ingest_log` status
  `rejected`, with the reason) and warned about (`every_file_read`), and its rows are not used; the
  rows quarantined in another folder are published with the quarantine but block only their own
  month's run.

`audit_id:unknown_audit`: a dispute of an audit that is in neither the published audits nor this
run's — but only when its audit can be known: every month with raw audit files up to the month of
`disputed_at` is published or is this run's month. Until then (a fresh warehouse run month by
month, months run out of order) the dispute is valid.
"""


from dataclasses import dataclass

import dagster as dg
import ibis
import pandas as pd

from qa_pipeline.assets.audits import audits_clean, month_audits
from qa_pipeline.assets.common import (
    DATA_ENGINEERING,
    QualityConfig,
    monthly_asset,
    run_attempt,
    table_metadata,
)
from qa_pipeline.assets.ingest import (
    LAYOUT_CHECK,
    gate_check_specs,
    gate_checks,
    limit_for,
    stage_gate,
)
from qa_pipeline.domain import disputes as dispute_logic
from qa_pipeline.domain.months import month_key, month_start
from qa_pipeline.domain.validation import (
    DISPUTES,
    REJECTED,
    SOURCE_FILE,
    GateResult,
    RawFile,
    RawInputError,
    Reference,
    check_columns,
    empty_quarantine,
    ingest_rows,
    run_gate,
)
from qa_pipeline.resources.raw_store import RawStore, read_raw_file
from qa_pipeline.resources.staging import Attempt
from qa_pipeline.resources.warehouse import Warehouse
from qa_pipeline.schemas import warehouse as wh

DISPUTE_COLUMNS = ["month", "dispute_id", "audit_id", "disputed_at", "resolved_at", "reason", "outcome", SOURCE_FILE]


@dataclass(frozen=True)
class DisputesGate:
    """Every disputes folder through the gate, as one month's run sees them."""

    frame: pd.DataFrame  # the clean disputes of every folder, with their folder `month`
    gate: GateResult  # every folder's files read: clean, quarantine, ingest log (status read)
    rejected: pd.DataFrame  # ingest-log rows of files of other folders that could not be used
    own: pd.DataFrame  # the ingest-log rows of the run's own folder (its share check)


def known_audits(attempt: Attempt, raw_store: RawStore, audit_ids: pd.Series) -> Reference | None:
    """The `audit_id:unknown_audit` reference for this run's disputes, or None without a warehouse
    attempt to ask.

    Known: the published audits of other months and this run's validated audits (staged). Checked
    only for disputes made before the first month that has raw audit files but is neither published
    nor this run's — an audit of such a month may exist and not be loaded yet."""
    warehouse = attempt.warehouse
    ids = pd.Series(audit_ids, dtype="str").dropna().str.strip()
    ids = ids[ids.ne("")].drop_duplicates()
    loaded, parts = set(), []
    if warehouse.has_table(wh.audits_clean.fullname):
        published = warehouse.ibis.table(wh.audits_clean.name, database=wh.audits_clean.schema)
        published = published.filter(published.month != attempt.month)
        months = warehouse.execute(published.select("month").distinct())["month"]
        loaded |= {month_start(pd.Timestamp(m).date()) for m in months}
        parts.append(published.select("audit_id"))
    try:
        parts.append(attempt.staged("qa_staging.validated_audits").select("audit_id"))
        loaded.add(attempt.month)
    except LookupError:  # this run has no validated audits (yet): its month is not loaded
        pass
    if not loaded:  # no audit loaded at all: no dispute's audit can be known
        return None
    unsettled = sorted(m for m in (month_start(k) for k in raw_store.available_months("audits")) if m not in loaded)
    before = pd.Timestamp(unsettled[0], tz="UTC") if unsettled else None
    known: frozenset = frozenset()
    if parts and len(ids):
        candidates = ibis.memtable(pd.DataFrame({"_candidate": ids.to_numpy(dtype=object)}))
        union = parts[0]
        for p in parts[1:]:
            union = union.union(p)
        found = candidates.semi_join(union, candidates._candidate == union.audit_id)
        known = frozenset(warehouse.execute(found)["_candidate"])
    source = ("qa_core.audits_clean (published" + (f", or this run's {month_key(attempt.month)}"
                                                   if attempt.month in loaded else "") + ")")
    return Reference("audit_id", "unknown_audit", known, source, when="disputed_at", before=before)


def validated_disputes(raw_store: RawStore, attempt: Attempt | None = None, check_audits: bool = True) -> DisputesGate:
    """Every dispute folder on disk through the gate (each folder against its own month). A
    dispute id already read in an earlier folder is quarantined there, like a repeated audit id.
    With an attempt: the run's own folder is the attempt's month (a file of it that cannot be used
    stops the run), disputes of unknown audits are quarantined (`check_audits`), and the quarantine
    and ingest log of every folder are staged (input `disputes`)."""
    run_month = attempt.month if attempt is not None else None
    folders: list[tuple] = []  # (folder month, files read)
    rejected = []
    for folder in raw_store.available_months("disputes"):
        folder_month = month_start(folder)
        files: list[RawFile] = []
        for path in raw_store.month_paths("disputes", folder_month, required=False):
            try:
                f = read_raw_file(path, raw_store.root)
                check_columns(f, DISPUTES)
                files.append(f)
            except RawInputError as exc:
                if folder_month == run_month:
                    raise
                rel = path.relative_to(raw_store.root).as_posix()
                rejected.append((pd.Timestamp(folder_month), DISPUTES.name, rel, None, None, None, None, REJECTED,
                                 f"{exc} — its rows are not used; it blocks the run of {folder} only"))
        folders.append((folder_month, files))
    spec = DISPUTES
    if attempt is not None and check_audits:
        ids = pd.concat([f.frame["audit_id"].astype("str") for _, files in folders for f in files
                         if "audit_id" in f.frame.columns] or [pd.Series(dtype="str")], ignore_index=True)
        reference = known_audits(attempt, raw_store, ids)
        spec = DISPUTES.with_context(references=(reference,) if reference is not None else ())
    frames, gates, seen = [], [], pd.Series(dtype="str")
    for folder_month, files in folders:
        try:
            gate = run_gate(files, spec, folder_month, published_ids=seen)
        except RawInputError as exc:
            if folder_month == run_month:
                raise
            rejected += [(pd.Timestamp(folder_month), DISPUTES.name, f.path, f.sha256, f.rows_read, None, None,
                          REJECTED, f"{exc} — its rows are not used; it blocks the run of "
                          f"{month_key(folder_month)} only") for f in files]
            continue
        seen = pd.concat([seen, gate.clean["dispute_id"].astype("str")], ignore_index=True)
        gates.append(gate)
        frames.append(gate.clean.assign(month=pd.Timestamp(folder_month)))
    combined = GateResult(
        clean=pd.concat([g.clean for g in gates], ignore_index=True) if gates else pd.DataFrame(),
        quarantine=pd.concat([g.quarantine for g in gates], ignore_index=True) if gates else empty_quarantine(),
        files=pd.concat([g.files for g in gates], ignore_index=True) if gates else ingest_rows([]))
    rejected_log = ingest_rows(rejected)
    if attempt is not None:
        stage_gate(attempt, combined, DISPUTES.name, scope="input", extra_log=rejected_log)
    frame = (pd.concat(frames, ignore_index=True) if frames
             else pd.DataFrame({c: pd.Series(dtype="str") for c in DISPUTE_COLUMNS}))
    own = combined.files[combined.files["month"] == pd.Timestamp(run_month)] if run_month else combined.files
    return DisputesGate(frame=frame, gate=combined, rejected=rejected_log, own=own)


def _rejected_check(rejected: pd.DataFrame) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key="disputes", check_name=LAYOUT_CHECK, passed=bool(rejected.empty),
        severity=dg.AssetCheckSeverity.WARN,
        description=("every disputes file was read" if rejected.empty else
                     f"{len(rejected)} disputes file(s) of other months could not be used (their rows are not "
                     "used; each blocks its own month's run): " + "; ".join(
                         r.reason for r in rejected.head(5).itertuples())),
        metadata={"rejected_files": dg.MetadataValue.int(len(rejected)),
                  "files": dg.MetadataValue.md(rejected[["source_file", "reason"]].to_markdown(index=False)
                                               if len(rejected) else "none")},
    )


@monthly_asset(
    group="ingest",
    owner=DATA_ENGINEERING,
    kinds={"pandas", "pandera"},
    deps=["validated_audits"],
    description=(
        "Every resolved dispute known at run time (`disputes/YYYY-MM/*.csv`, folder month = month "
        "of resolved_at), validated folder by folder. Re-running an earlier month therefore picks "
        "up disputes resolved since, which is how a month is restated. A dispute of an audit that "
        "does not exist (once its month is loaded) is `audit_id:unknown_audit`. Blocking checks on "
        "the run's own folder; a file of another folder that cannot be used is logged and warned "
        "about, not fatal. Rewrites `qa_core.disputes`."
    ),
    check_specs=[
        *gate_check_specs("disputes", DISPUTES.name),
        dg.AssetCheckSpec(LAYOUT_CHECK, asset="disputes", blocking=False,
                          description="every file of every disputes folder could be used (a file of another "
                                      "month that cannot is logged as rejected and blocks only its month)"),
    ],
)
def disputes(context: dg.AssetExecutionContext, raw_store: RawStore, warehouse: Warehouse,
             quality_config: QualityConfig):
    attempt = run_attempt(context, warehouse)
    result = validated_disputes(raw_store, attempt)
    frame = result.frame
    attempt.write("qa_core.disputes", frame, scope="whole")
    yield dg.MaterializeResult(metadata=table_metadata(
        "qa_core.disputes", frame, ["month", "dispute_id", "audit_id", "outcome"],
        overturned=int(frame["outcome"].eq("overturned").sum()),
        quarantined=len(result.gate.quarantine), rejected_files=len(result.rejected),
    ))
    yield from gate_checks(input_name=DISPUTES.name, asset_key="disputes", attempt=attempt,
                           staged_table="qa_core.disputes", limit=limit_for(quality_config, DISPUTES.name),
                           files=result.gate.files, quarantine=result.gate.quarantine, share_files=result.own,
                           scope=f"disputes/{month_key(attempt.month)}")
    yield _rejected_check(result.rejected)


@monthly_asset(
    group="disputes",
    kinds={"sql", "ibis", "pandas"},
    deps=[audits_clean],
    description=(
        "Dispute and overturn rates of the month's audits, overall and per site and queue "
        "(`qa_reporting.dispute_metrics`), and the audits restated: overturned by a dispute resolved "
        "after the month ended. The same figures per auditor (a high overturn rate is a grader-quality "
        "signal) go to `qa_core.auditor_dispute_metrics`: restricted, since `qa_reporting` holds no "
        "person identifier. One query for both."
    ),
)
def dispute_metrics(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
    attempt = run_attempt(context, warehouse)
    month = attempt.month
    counts = warehouse.execute(dispute_logic.dispute_counts(month_audits(attempt, month), month))
    frame = dispute_logic.dispute_metrics(counts, month)
    per_auditor = dispute_logic.auditor_dispute_metrics(counts, month)
    attempt.write("qa_reporting.dispute_metrics", frame)
    attempt.write("qa_core.auditor_dispute_metrics", per_auditor)
    overall = frame[frame.dimension == "overall"]
    return dg.MaterializeResult(metadata=table_metadata(
        "qa_reporting.dispute_metrics", frame,
        ["dimension", "segment", "audits", "disputed", "overturned", "overturn_rate"],
        dispute_rate=float(overall.dispute_rate.iloc[0]) if len(overall) else None,
        overturn_rate=float(overall.overturn_rate.iloc[0]) if len(overall) else None,
        restated_audits=int(overall.restated_audits.iloc[0]) if len(overall) else 0,
        auditors=len(per_auditor),
    ) | {"person_level_table": dg.MetadataValue.text("qa_core.auditor_dispute_metrics (restricted)")})
