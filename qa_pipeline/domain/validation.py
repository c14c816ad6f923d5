"""The validation gate: parse raw rows, apply the pandera model, split clean from quarantined.

Nothing is dropped silently. Every row read is either clean or quarantined with the rules it
broke, a readable reason, its source file and its 1-based row number, and the per-file identity
`rows read = rows clean + rows quarantined` is computed here and checked by the asset check.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
import pandera.pandas as pa

from qa_pipeline.domain.cross_row_rules import duplicate_reason, published_reason
from qa_pipeline.domain.months import next_month
from qa_pipeline.schemas import raw as raw_schemas

SOURCE_FILE = "source_file"
SOURCE_ROW = "source_row"
QUARANTINE_COLUMNS = [
    "month", "input", "source_file", "row_number", "rule", "rules", "reason", "raw_record",
]


class RawInputError(ValueError):
    """A raw file that cannot be used at all: unreadable, or missing a required column."""


@dataclass(frozen=True)
class RawFile:
    """One raw file as read: text columns, as in the file."""

    path: str  # relative to QA_RAW_DIR
    frame: pd.DataFrame
    sha256: str


@dataclass(frozen=True)
class GateResult:
    clean: pd.DataFrame
    quarantine: pd.DataFrame
    files: pd.DataFrame  # per file: rows_read, rows_clean, rows_quarantined

    @property
    def rows_read(self) -> int:
        return int(self.files["rows_read"].sum())

    @property
    def quarantined_share(self) -> float:
        return len(self.quarantine) / self.rows_read if self.rows_read else 0.0

    def rule_counts(self) -> pd.DataFrame:
        """Quarantined rows per first-failing rule, most frequent first."""
        if self.quarantine.empty:
            return pd.DataFrame({"rule": pd.Series(dtype="str"), "rows": pd.Series(dtype="int64")})
        counts = self.quarantine["rule"].value_counts()
        return counts.rename_axis("rule").reset_index(name="rows")


@dataclass(frozen=True)
class InputSpec:
    """How to parse and validate one raw input."""

    name: str
    model: type[pa.DataFrameModel]
    columns: Sequence[str]
    timestamps: Sequence[str] = ()
    dates: Sequence[str] = ()
    numbers: Sequence[str] = ()
    optional: dict | None = None
    unique_key: str | tuple[str, ...] | None = None
    folder_month_column: str | None = None  # rows must fall in their folder's month


AUDITS = InputSpec(
    name="audits",
    model=raw_schemas.AuditRecord,
    columns=raw_schemas.AUDIT_COLUMNS,
    timestamps=raw_schemas.AUDIT_TIMESTAMPS,
    numbers=raw_schemas.AUDIT_NUMBERS,
    optional=raw_schemas.AUDIT_OPTIONAL,
    unique_key="audit_id",
    folder_month_column="audited_at",
)
CALIBRATION_RATINGS = InputSpec(
    name="calibration_ratings",
    model=raw_schemas.CalibrationRating,
    columns=list(raw_schemas.CalibrationRating.to_schema().columns),
    dates=["session_date"],
    unique_key=("session_id", "case_id", "rater_id"),
)
CALIBRATION_GOLD = InputSpec(
    name="calibration_gold",
    model=raw_schemas.CalibrationGold,
    columns=list(raw_schemas.CalibrationGold.to_schema().columns),
    unique_key=("session_id", "case_id"),
)
DISPUTES = InputSpec(
    name="disputes",
    model=raw_schemas.DisputeRecord,
    columns=list(raw_schemas.DisputeRecord.to_schema().columns),
    timestamps=["disputed_at", "resolved_at"],
    unique_key="dispute_id",
    folder_month_column="resolved_at",
)
POLICY_CHANGES = InputSpec(
    name="policy_changes",
    model=raw_schemas.PolicyChange,
    columns=list(raw_schemas.PolicyChange.to_schema().columns),
    dates=["effective_date"],
    unique_key="change_id",
)
EXPERIMENTS = InputSpec(
    name="experiments",
    model=raw_schemas.Experiment,
    columns=list(raw_schemas.Experiment.to_schema().columns),
    dates=["start_date", "end_date"],
    numbers=["treatment_share"],
    optional={"treatment_share": "0.5"},
    unique_key="experiment_id",
)
ASSIGNMENTS = InputSpec(
    name="assignments",
    model=raw_schemas.Assignment,
    columns=list(raw_schemas.Assignment.to_schema().columns),
    unique_key=("experiment_id", "moderator_id"),
)
ROSTER = InputSpec(
    name="roster",
    model=raw_schemas.RosterRecord,
    columns=raw_schemas.ROSTER_COLUMNS,
    dates=raw_schemas.ROSTER_DATES,
    unique_key="moderator_id",
)


def check_columns(file: RawFile, spec: InputSpec) -> None:
    """A file without a required column is rejected whole, naming the file and the column."""
    optional = spec.optional or {}
    missing = [c for c in spec.columns if c not in file.frame.columns and c not in optional]
    if missing:
        raise RawInputError(
            f"{file.path}: required column(s) missing: {', '.join(missing)} "
            f"(the file has: {', '.join(map(str, file.frame.columns))})"
        )


def parse_columns(frame: pd.DataFrame, spec: InputSpec) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Typed copy of a raw frame, and the cells that could not be parsed (as failures)."""
    parsed = pd.DataFrame(index=frame.index)
    failures = []
    for col in spec.columns:
        if col not in frame.columns:
            parsed[col] = pd.Series((spec.optional or {}).get(col), index=frame.index, dtype="str")
        else:
            parsed[col] = frame[col]
            if frame[col].dtype == object or pd.api.types.is_string_dtype(frame[col]):
                # an empty cell is missing, in Parquet as in CSV
                parsed[col] = frame[col].mask(frame[col].astype("str").eq(""))
    for col in spec.columns:
        s = parsed[col]
        if col in spec.timestamps or col in spec.dates:
            if pd.api.types.is_datetime64_any_dtype(s):
                typed = s.dt.tz_localize("UTC") if s.dt.tz is None else s.dt.tz_convert("UTC")
            else:
                text = s.astype("str")
                fmt = "%Y-%m-%d" if col in spec.dates else "ISO8601"
                typed = pd.to_datetime(text, format=fmt, utc=True, errors="coerce")
            typed = typed.astype("datetime64[us, UTC]")
            rule, expect = (f"{col}:date", "a date YYYY-MM-DD") if col in spec.dates else (
                f"{col}:iso8601", "an ISO 8601 time stamp")
        elif col in spec.numbers:
            typed = pd.to_numeric(s, errors="coerce").astype("float64")
            rule, expect = f"{col}:number", "a number"
        else:
            parsed[col] = s.astype("str") if not isinstance(s.dtype, pd.StringDtype) else s
            continue
        bad = s.notna() & typed.isna()
        if bad.any():
            failures.append(pd.DataFrame({
                "row": s.index[bad], "column": col, "rule": rule,
                "reason": [f"{col} = {v!r} is not {expect}" for v in s[bad]],
            }))
        parsed[col] = typed
    return parsed, _concat_failures(failures)


def _concat_failures(parts: Iterable[pd.DataFrame]) -> pd.DataFrame:
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame({"row": pd.Series(dtype="int64"), "column": pd.Series(dtype="str"),
                             "rule": pd.Series(dtype="str"), "reason": pd.Series(dtype="str")})
    return pd.concat(parts, ignore_index=True)


_CHECK_RULES = [
    (re.compile(r"^isin\((.*)\)$"), "allowed_values", lambda m: f"must be one of {m.group(1)}"),
    (re.compile(r"^str_matches\('?(.*?)'?\)$"), "pattern", lambda m: f"must match {m.group(1)}"),
    (re.compile(r"^not_nullable$"), "required", lambda m: "is required"),
    (re.compile(r"^greater_than_or_equal_to\((.*)\)$"), "min", lambda m: f"must be ≥ {m.group(1)}"),
    (re.compile(r"^greater_than\((.*)\)$"), "min", lambda m: f"must be > {m.group(1)}"),
]


def _describe_column_check(check: str, column: str, value, errors: dict) -> tuple[str, str]:
    for pattern, short, describe in _CHECK_RULES:
        m = pattern.match(check)
        if m:
            shown = "empty" if pd.isna(value) else repr(value)
            return f"{column}:{short}", f"{column} {describe(m)}: got {shown}"
    # a custom check with an error message is reported under that message
    name = errors.get(check, check)
    return f"{column}:{name}", f"{column} {check}: got {value!r}"


def pandera_failures(parsed: pd.DataFrame, model: type[pa.DataFrameModel]) -> pd.DataFrame:
    """Row-level failures of the model, one row per (row, rule), with readable reasons."""
    schema = model.to_schema()
    try:
        schema.validate(parsed, lazy=True)
        return _concat_failures([])
    except pa.errors.SchemaErrors as exc:
        fc = exc.failure_cases
    errors = {}  # error message -> check name, for the column checks that carry a message
    for col in schema.columns.values():
        errors.update({c.error: c.name for c in col.checks if c.error})
    orphan = fc[fc["index"].isna()]
    if len(orphan):
        first = orphan.iloc[0]
        raise RawInputError(f"schema-level failure: {first['check']} on {first['column']}")
    fc = fc.assign(row=fc["index"].astype("int64"))
    rows = []
    for r in fc[fc["schema_context"] == "Column"].itertuples():
        rule, reason = _describe_column_check(str(r.check), r.column, r.failure_case, errors)
        rows.append((r.row, r.column, rule, reason))
    # pandera names a failed dataframe check by its error message when it has one
    rule_of = {c.error: c.name for c in schema.checks if c.error}
    frame_checks = fc[fc["schema_context"] == "DataFrameSchema"].drop_duplicates(["row", "check"])
    for r in frame_checks.itertuples():
        rows.append((r.row, None, rule_of.get(r.check, r.check), r.check))
    return pd.DataFrame(rows, columns=["row", "column", "rule", "reason"])


def _folder_month_failures(parsed: pd.DataFrame, column: str | None, month: date | None) -> pd.DataFrame:
    if column is None or month is None:
        return _concat_failures([])
    start = pd.Timestamp(month, tz="UTC")
    end = pd.Timestamp(next_month(month), tz="UTC")
    ts = parsed[column]
    bad = ts.notna() & ((ts < start) | (ts >= end))
    return pd.DataFrame({
        "row": parsed.index[bad], "column": column, "rule": f"{column}:in_folder_month",
        "reason": [f"{column} {t.isoformat()} is outside the folder month {month:%Y-%m}" for t in ts[bad]],
    })


def _duplicate_failures(parsed: pd.DataFrame, key: str | tuple[str, ...] | None) -> pd.DataFrame:
    """Later copies of a key (files in name order, rows in file order); the first is kept."""
    if key is None:
        return _concat_failures([])
    cols = [key] if isinstance(key, str) else list(key)
    name = "+".join(cols)
    dup = parsed[cols].notna().all(axis=1) & parsed.duplicated(subset=cols, keep="first")
    shown = parsed.loc[dup, cols].astype("str").agg("/".join, axis=1) if dup.any() else []
    return pd.DataFrame({
        "row": parsed.index[dup], "column": cols[0], "rule": f"{name}:duplicate",
        "reason": [duplicate_reason(name, v) for v in shown],
    })


def _published_failures(parsed: pd.DataFrame, key: str, published_ids: pd.Series | None) -> pd.DataFrame:
    if published_ids is None or published_ids.empty:
        return _concat_failures([])
    earlier = published_ids.drop_duplicates()
    hit = parsed[key].isin(earlier)
    return pd.DataFrame({
        "row": parsed.index[hit], "column": key, "rule": f"{key}:published_earlier",
        "reason": [published_reason(key, v) for v in parsed[key][hit]],
    })


def check_rows(raw: pd.DataFrame, spec: InputSpec, folder_month: date | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The row-local rules on consecutive rows of one file: parsing, the pandera model, the folder month.

    `raw` holds the rows as read (text columns as in the file, Parquet columns as typed). Returns
    the typed frame (the spec's columns, index 0..n-1) and one failure per (row, rule) with `row`
    the row's position in `raw`, in rule order: parse, model, folder month. The same function runs
    over a whole file (`run_gate`) and over each chunk of a file (`streaming_gate`); cross-row
    rules (duplicates, ids published earlier) are not applied here.
    """
    if not (isinstance(raw.index, pd.RangeIndex) and raw.index.start == 0 and raw.index.step == 1):
        raw = raw.reset_index(drop=True)
    parsed, parse_fail = parse_columns(raw, spec)
    model_fail = pandera_failures(parsed, spec.model)
    # a cell that failed to parse is reported once, as unparseable, not again as missing
    if len(parse_fail) and len(model_fail):
        key = set(zip(parse_fail["row"], parse_fail["column"], strict=True))
        redundant = [(r, c) in key for r, c in zip(model_fail["row"], model_fail["column"], strict=True)]
        model_fail = model_fail[~pd.Series(redundant, index=model_fail.index)]
    month_fail = _folder_month_failures(parsed, spec.folder_month_column, folder_month)
    return parsed, _concat_failures([parse_fail, model_fail, month_fail])


def run_gate(
    files: Sequence[RawFile],
    spec: InputSpec,
    month: date,
    published_ids: pd.Series | None = None,
    folder_month: date | None = None,
) -> GateResult:
    """Validate all files of one input for one month, in file-name order.

    `month` labels the quarantine rows; `folder_month` (default: `month` for inputs whose rows
    must fall in their folder's month) is the month those rows are checked against. Row-local
    rules run per file (`check_rows`), then the cross-row rules over all rows read; a quarantined
    row lists its row-local rules first, then the cross-row ones.
    """
    if folder_month is None and spec.folder_month_column:
        folder_month = month
    files = sorted(files, key=lambda f: f.path)
    for f in files:
        check_columns(f, spec)
    frames = [f.frame.reset_index(drop=True) for f in files]
    parsed_parts, local_parts, offset = [], [], 0
    for f, raw in zip(files, frames, strict=True):
        parsed, local = check_rows(raw, spec, folder_month)
        parsed[SOURCE_FILE] = pd.Series(f.path, index=parsed.index, dtype="str")
        parsed[SOURCE_ROW] = np.arange(1, len(raw) + 1, dtype="int64")
        parsed_parts.append(parsed)
        local_parts.append(local.assign(row=local["row"].astype("int64") + offset))
        offset += len(raw)
    if parsed_parts:
        parsed = pd.concat(parsed_parts, ignore_index=True)
    else:
        parsed, _ = check_rows(pd.DataFrame(columns=list(spec.columns)), spec, folder_month)
        parsed[SOURCE_FILE] = pd.Series(dtype="str")
        parsed[SOURCE_ROW] = pd.Series(dtype="int64")
    cross = [_duplicate_failures(parsed, spec.unique_key)]
    if isinstance(spec.unique_key, str):
        cross.append(_published_failures(parsed, spec.unique_key, published_ids))
    failures = _concat_failures([*local_parts, *cross])
    bad_rows = np.unique(failures["row"].to_numpy(dtype="int64"))
    clean = parsed.drop(index=bad_rows) if len(bad_rows) else parsed  # one take over all columns
    starts = np.cumsum([0, *map(len, frames)])
    records = []
    for i, raw in enumerate(frames):  # bad rows are sorted, so file by file keeps their order
        lo, hi = np.searchsorted(bad_rows, [starts[i], starts[i + 1]])
        records += raw_record_json(raw, bad_rows[lo:hi] - starts[i])
    quarantine = quarantine_rows(
        failures, bad_rows, parsed[SOURCE_FILE].to_numpy()[bad_rows], parsed[SOURCE_ROW].to_numpy()[bad_rows],
        records, spec, month)
    log = _file_log(files, clean, quarantine, spec, month)
    return GateResult(clean=clean.reset_index(drop=True), quarantine=quarantine, files=log)


def raw_record_json(raw: pd.DataFrame, positions: np.ndarray) -> list[str]:
    """The rows at `positions` of `raw` as read, one JSON object each (missing cells as null).

    The one definition of a quarantine row's `raw_record`: the gate, the streaming gate and
    `streaming_gate.raw_records` all call it.
    """
    if len(positions) == 0:
        return []
    data_cols = [c for c in raw.columns if c not in (SOURCE_FILE, SOURCE_ROW)]
    records = raw.iloc[np.asarray(positions, dtype="int64")][data_cols].astype("object")
    records = records.where(records.notna(), None)
    return [json.dumps(r, default=str, ensure_ascii=False) for r in records.to_dict("records")]


def empty_quarantine() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="object") for c in QUARANTINE_COLUMNS})


def quarantine_rows(failures: pd.DataFrame, bad_rows: np.ndarray, source_file, row_number, raw_records: list[str],
                    spec: InputSpec, month: date) -> pd.DataFrame:
    """One quarantine row per failing row (`bad_rows`, sorted): its first rule, all its rules and
    reasons in failure order, where it came from and its raw record."""
    if len(bad_rows) == 0:
        return empty_quarantine()
    rows = failures["row"].to_numpy(dtype="int64")
    order = np.argsort(rows, kind="stable")  # a row's failures keep their order: parse, model, …
    rules = failures["rule"].to_numpy(object)[order]
    texts = failures["reason"].to_numpy(object)[order]
    rows = rows[order]
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    ends = np.r_[starts[1:], len(rows)]
    if not np.array_equal(rows[starts], bad_rows):
        raise ValueError("bad_rows must be the sorted rows of the failures")
    first_rule, all_rules, reasons = rules[starts], rules[starts].copy(), texts[starts].copy()
    for i in np.flatnonzero(ends - starts > 1):  # a row breaking several rules: join them
        all_rules[i] = "; ".join(dict.fromkeys(rules[starts[i]:ends[i]]))
        reasons[i] = "; ".join(texts[starts[i]:ends[i]])
    return pd.DataFrame({
        "month": pd.Timestamp(month),
        "input": spec.name,
        "source_file": pd.Series(source_file, dtype="str").to_numpy(),
        "row_number": np.asarray(row_number, dtype="int64"),
        "rule": first_rule,
        "rules": all_rules,
        "reason": reasons,
        "raw_record": raw_records,
    })


def _file_log(files, clean: pd.DataFrame, quarantine: pd.DataFrame, spec: InputSpec, month: date) -> pd.DataFrame:
    """Per file: rows read (from the file), clean and quarantined (each counted from its own frame)."""
    clean_n = clean[SOURCE_FILE].value_counts()
    quarantined_n = quarantine["source_file"].value_counts()
    rows = [
        (pd.Timestamp(month), spec.name, f.path, f.sha256, len(f.frame),
         int(clean_n.get(f.path, 0)), int(quarantined_n.get(f.path, 0)))
        for f in files
    ]
    return pd.DataFrame(rows, columns=["month", "input", "source_file", "file_sha256", "rows_read",
                                       "rows_clean", "rows_quarantined"])
