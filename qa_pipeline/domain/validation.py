"""The validation gate: parse raw rows, apply the pandera model, split clean from quarantined.

Nothing is dropped silently. Every row read is either clean or quarantined with the rules it
broke, a readable reason, its source file and its 1-based row number, and the per-file identity
`rows read = rows clean + rows quarantined` is computed here — `rows read` counted on its own from
the file (CSV records by Python's `csv` module, Parquet row counts from the file's metadata), not
from the rows the gate split — and checked by the asset checks.

Values, the same way for every input and in both gates (`run_gate` here, `streaming_gate` for the
audits):

- text is trimmed of leading and trailing whitespace (so `X` and `X ` are one id, and the second
  read is a duplicate); an empty cell is missing; a cell of whitespace only is `<column>:non_blank`
  in a required column and missing in an optional one;
- a NUL character in a text value: `<column>:nul_byte`;
- a null placeholder (`nan`, `NaN`, `NULL`, `null`, `None`, `N/A`; `QA_NULL_LITERALS`) in a required
  column: `<column>:null_literal`; in an optional column it reads as missing;
- numbers: `inf`, `-inf`, `Infinity`, `NaN` and overflowing values are `<column>:non_finite`, other
  unparseable text `<column>:number`; time stamps `<column>:iso8601`, dates `<column>:date`
  (Parquet columns of another type are read as text, so a number in a time-stamp column is
  `<column>:iso8601`, a boolean in a number column `<column>:number`);
- a CSV line that the reader cannot split into the header's fields (a ragged line, a quote left
  open) is one quarantined row `line:malformed`, a line that is not valid UTF-8 `line:invalid_utf8`;
  their `raw_record` is the line's text as a JSON string;
- with the run's context (`InputSpec.with_context`): `<column>:unknown_policy` (a code missing
  from the policy catalogue), `<column>:in_future` (a date after the run's date) and references to
  other inputs (`experiment_id:unknown_experiment`, `audit_id:unknown_audit`).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from functools import lru_cache

import numpy as np
import pandas as pd
import pandera.pandas as pa

from qa_pipeline.domain.cross_row_rules import duplicate_reason, published_reason
from qa_pipeline.domain.months import next_month
from qa_pipeline.schemas import raw as raw_schemas
from qa_pipeline.settings import null_literals as configured_null_literals

SOURCE_FILE = "source_file"
SOURCE_ROW = "source_row"
QUARANTINE_COLUMNS = [
    "month", "input", "source_file", "row_number", "rule", "rules", "reason", "raw_record",
]
INGEST_LOG_COLUMNS = [
    "month", "input", "source_file", "file_sha256", "rows_read", "rows_clean", "rows_quarantined",
    "status", "reason",
]
READ, IGNORED, REJECTED = "read", "ignored", "rejected"
"""`qa_core.ingest_log.status`: a file read through the gate, one not part of the raw layout, one
that could not be used (unreadable or lacking a column) whose rows were not used."""

# A CSV line the reader could not turn into a row travels with the file's rows in three internal
# columns, so that row numbers, chunks and the raw records stay aligned in both gates.
LINE_RULE = "__line_rule"
LINE_REASON = "__line_reason"
LINE_TEXT = "__line_text"
LINE_COLUMNS = (LINE_RULE, LINE_REASON, LINE_TEXT)
LINE_MALFORMED = "line:malformed"
LINE_INVALID_UTF8 = "line:invalid_utf8"
INTERNAL_COLUMNS = frozenset({SOURCE_FILE, SOURCE_ROW, *LINE_COLUMNS})

NAN_LITERALS = frozenset({"nan", "+nan", "-nan"})


class RawInputError(ValueError):
    """A raw file that cannot be used at all: unreadable, or missing a required column."""


@dataclass(frozen=True)
class RawFile:
    """One raw file as read: text columns, as in the file."""

    path: str  # relative to QA_RAW_DIR
    frame: pd.DataFrame
    sha256: str
    rows_counted: int | None = None
    """The file's data rows counted on their own (CSV records by Python's `csv` module over the
    file's bytes, Parquet `num_rows` from its metadata); None for a frame made in memory, whose
    length is then the count."""

    @property
    def rows_read(self) -> int:
        return len(self.frame) if self.rows_counted is None else int(self.rows_counted)


@dataclass(frozen=True)
class GateResult:
    clean: pd.DataFrame
    quarantine: pd.DataFrame
    files: pd.DataFrame  # INGEST_LOG_COLUMNS: per file rows_read, rows_clean, rows_quarantined

    @property
    def rows_read(self) -> int:
        return int(self.files["rows_read"].fillna(0).sum())

    @property
    def rows_clean(self) -> int:
        return int(self.files["rows_clean"].fillna(0).sum())

    @property
    def rows_quarantined(self) -> int:
        return int(self.files["rows_quarantined"].fillna(0).sum())

    @property
    def quarantined_share(self) -> float:
        return len(self.quarantine) / self.rows_read if self.rows_read else 0.0

    def rule_counts(self) -> pd.DataFrame:
        """Quarantined rows per first-failing rule, most frequent first."""
        return rule_counts(self.quarantine)


def rule_counts(quarantine: pd.DataFrame) -> pd.DataFrame:
    if quarantine.empty:
        return pd.DataFrame({"rule": pd.Series(dtype="str"), "rows": pd.Series(dtype="int64")})
    counts = quarantine["rule"].value_counts()
    out = counts.rename_axis("rule").reset_index(name="rows")
    return out.sort_values(["rows", "rule"], ascending=[False, True], ignore_index=True)


@dataclass(frozen=True)
class Reference:
    """A column whose values must exist in another input (`<column>:<rule>` otherwise).

    `known` holds the values that exist; when `when` and `before` are given, only rows whose `when`
    time stamp is before `before` are checked (the rows whose reference can be known yet)."""

    column: str
    rule: str
    known: frozenset
    source: str
    when: str | None = None
    before: pd.Timestamp | None = None


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
    policy_columns: Sequence[str] = ()
    """Columns holding policy codes: checked against the catalogue when `policies` is given."""
    not_in_future: Sequence[str] = ()
    """Date columns that may not be after the run's date (`today`)."""
    # the run's context (`with_context`): none of it by default
    policies: frozenset | None = None
    """The policy catalogue's codes; None when there is no catalogue (any non-empty code is valid)."""
    today: date | None = None
    references: tuple[Reference, ...] = ()
    null_literals: tuple[str, ...] | None = None
    """Cell values that stand for missing; None: `QA_NULL_LITERALS` (settings.null_literals)."""
    also_unique: tuple[str, ...] = ()
    """Other columns each unique on its own (`<column>:duplicate`, the first read kept): a re-audit's
    `audit_id` (one expert answer per decision)."""
    row_rules: tuple = ()
    """Rules that compare a row with another input's row (a re-audit with its audit), from the run's
    context: each is called with the typed frame and returns failures (row, column, rule, reason)."""

    def with_context(self, **context) -> InputSpec:
        """The spec with the run's context: `policies`, `today`, `references`, `null_literals`."""
        return dataclasses.replace(self, **context)


AUDITS = InputSpec(
    name="audits",
    model=raw_schemas.AuditRecord,
    columns=raw_schemas.AUDIT_COLUMNS,
    timestamps=raw_schemas.AUDIT_TIMESTAMPS,
    numbers=raw_schemas.AUDIT_NUMBERS,
    optional=raw_schemas.AUDIT_OPTIONAL,
    unique_key="audit_id",
    folder_month_column="audited_at",
    policy_columns=("policy_moderator", "policy_auditor"),
)
CALIBRATION_RATINGS = InputSpec(
    name="calibration_ratings",
    model=raw_schemas.CalibrationRating,
    columns=list(raw_schemas.CalibrationRating.to_schema().columns),
    dates=["session_date"],
    unique_key=("session_id", "case_id", "rater_id"),
    policy_columns=("policy",),
)
CALIBRATION_GOLD = InputSpec(
    name="calibration_gold",
    model=raw_schemas.CalibrationGold,
    columns=list(raw_schemas.CalibrationGold.to_schema().columns),
    unique_key=("session_id", "case_id"),
    policy_columns=("gold_policy",),
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
    policy_columns=("policy",),
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
    not_in_future=("hire_date",),
)
POLICIES = InputSpec(
    name="policies",
    model=raw_schemas.PolicyCatalogueEntry,
    columns=list(raw_schemas.PolicyCatalogueEntry.to_schema().columns),
    unique_key="policy",
)
REAUDITS = InputSpec(
    name="reaudits",
    model=raw_schemas.ReauditRecord,
    columns=list(raw_schemas.ReauditRecord.to_schema().columns),
    timestamps=["reaudited_at"],
    unique_key="reaudit_id",
    also_unique=("audit_id",),
    policy_columns=("policy_reviewer",),
)
INPUTS = {s.name: s for s in (AUDITS, ROSTER, DISPUTES, CALIBRATION_RATINGS, CALIBRATION_GOLD, POLICY_CHANGES,
                              EXPERIMENTS, ASSIGNMENTS, POLICIES, REAUDITS)}
"""Every raw input's spec by name (an input added later adds its spec here)."""


def check_columns(file: RawFile, spec: InputSpec) -> None:
    """A file without a required column is rejected whole, naming the file and the column."""
    optional = spec.optional or {}
    missing = [c for c in spec.columns if c not in file.frame.columns and c not in optional]
    if missing:
        have = [str(c) for c in file.frame.columns if c not in INTERNAL_COLUMNS]
        raise RawInputError(
            f"{file.path}: required column(s) missing: {', '.join(missing)} "
            f"(the file has: {', '.join(have)})"
        )


@lru_cache(maxsize=None)
def _nullable(model: type[pa.DataFrameModel]) -> dict[str, bool]:
    return {name: bool(col.nullable) for name, col in model.to_schema().columns.items()}


def _as_text(s: pd.Series) -> pd.Series:
    """A column as text, missing values kept missing. A float column (Parquet, or an integer
    column with a null) shows whole numbers without `.0`, so an id 7 reads `7` in any file."""
    if pd.api.types.is_float_dtype(s):
        values = s.to_numpy(dtype="float64", na_value=np.nan)
        text = [None if np.isnan(v) else str(int(v)) if np.isfinite(v) and v == np.floor(v) and abs(v) < 2**53
                else repr(float(v)) for v in values]
        return pd.Series(text, index=s.index, dtype="str")
    if isinstance(s.dtype, pd.StringDtype) and s.dtype.na_value is np.nan:
        return s
    return s.astype("str")


def _failures(rows, column: str | None, rule: str, reasons) -> pd.DataFrame:
    return pd.DataFrame({"row": np.asarray(rows, dtype="int64"), "column": column, "rule": rule,
                         "reason": list(reasons)})


def parse_columns(frame: pd.DataFrame, spec: InputSpec) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Typed copy of a raw frame, and the cells that could not be parsed (as failures).

    A failed cell is missing in the typed copy, and `check_rows` does not report it again under
    a model rule."""
    parsed = pd.DataFrame(index=frame.index)
    failures: list[pd.DataFrame] = []
    nullable = _nullable(spec.model)
    literals = frozenset(spec.null_literals if spec.null_literals is not None else configured_null_literals())
    for col in spec.columns:
        if col not in frame.columns:  # an optional column absent from this file: its default
            parsed[col] = pd.Series((spec.optional or {}).get(col), index=frame.index, dtype="str")
            s = parsed[col]
        else:
            s = frame[col]
        required = not nullable.get(col, True)
        is_time = col in spec.timestamps or col in spec.dates
        is_number = col in spec.numbers
        rule_time, expect_time = ((f"{col}:date", "a date YYYY-MM-DD") if col in spec.dates
                                  else (f"{col}:iso8601", "an ISO 8601 time stamp"))
        # typed Parquet columns of the expected kind
        if is_time and pd.api.types.is_datetime64_any_dtype(s):
            typed = s.dt.tz_localize("UTC") if s.dt.tz is None else s.dt.tz_convert("UTC")
            parsed[col] = typed.astype("datetime64[us, UTC]")
            continue
        if is_number and (pd.api.types.is_integer_dtype(s) or pd.api.types.is_float_dtype(s)):
            typed = pd.to_numeric(s).astype("float64")
            bad = s.notna() & ~np.isfinite(typed.fillna(0.0))
            if bad.any():
                failures.append(_failures(s.index[bad], col, f"{col}:non_finite",
                                          [f"{col} = {v!r} is not a finite number" for v in s[bad]]))
            parsed[col] = typed.mask(bad)
            continue
        if (is_time or is_number) and (pd.api.types.is_numeric_dtype(s) or pd.api.types.is_datetime64_any_dtype(s)):
            # a Parquet column of another type: a number (or boolean) where a time stamp is expected,
            # a boolean or a time stamp where a number is
            rule, expect = (rule_time, expect_time) if is_time else (f"{col}:number", "a number")
            kind = str(s.dtype)
            bad = s.notna()
            if bad.any():
                failures.append(_failures(s.index[bad], col, rule,
                                          [f"{col} = {v!r} is not {expect} (a Parquet {kind} column)" for v in s[bad]]))
            parsed[col] = pd.Series(pd.NaT if is_time else np.nan, index=s.index,
                                    dtype="datetime64[us, UTC]" if is_time else "float64")
            continue
        # text: as read (CSV), or a Parquet column turned to text
        text = _as_text(s)
        value = text.str.strip()
        value = value.mask(text.eq("").fillna(False))  # an empty cell is missing, in Parquet as in CSV
        consumed = pd.Series(False, index=s.index)
        nul = value.str.contains("\x00", regex=False).fillna(False).astype(bool)
        if nul.any():
            failures.append(_failures(s.index[nul], col, f"{col}:nul_byte",
                                      [f"{col} contains a NUL character: {v!r}" for v in text[nul]]))
            consumed |= nul
        literal = value.isin(literals) & ~consumed
        if is_number:  # NaN literals are numbers that are not finite, below
            literal &= ~value.str.lower().isin(NAN_LITERALS).fillna(False).astype(bool)
        if literal.any():
            if required:
                failures.append(_failures(s.index[literal], col, f"{col}:null_literal",
                                          [f"{col} = {v!r} is a placeholder for a missing value, and {col} "
                                           "is required" for v in value[literal]]))
            consumed |= literal
        blank = value.eq("").fillna(False).astype(bool) & ~consumed
        if blank.any():
            if required:
                failures.append(_failures(s.index[blank], col, f"{col}:non_blank",
                                          [f"{col} must not be blank: got {v!r}" for v in text[blank]]))
            consumed |= blank
        value = value.mask(consumed)
        if is_number:
            typed = pd.to_numeric(value, errors="coerce").astype("float64")
            non_finite = value.notna() & (np.isinf(typed.fillna(0.0)) | value.str.lower().isin(NAN_LITERALS))
            non_finite = non_finite.fillna(False).astype(bool)
            bad = value.notna() & typed.isna() & ~non_finite
            if non_finite.any():
                failures.append(_failures(s.index[non_finite], col, f"{col}:non_finite",
                                          [f"{col} = {v!r} is not a finite number" for v in value[non_finite]]))
            if bad.any():
                failures.append(_failures(s.index[bad], col, f"{col}:number",
                                          [f"{col} = {v!r} is not a number" for v in value[bad]]))
            parsed[col] = typed.mask(non_finite)
        elif is_time:
            fmt = "%Y-%m-%d" if col in spec.dates else "ISO8601"
            typed = pd.to_datetime(value, format=fmt, utc=True, errors="coerce").astype("datetime64[us, UTC]")
            bad = value.notna() & typed.isna()
            if bad.any():
                failures.append(_failures(s.index[bad], col, rule_time,
                                          [f"{col} = {v!r} is not {expect_time}" for v in value[bad]]))
            parsed[col] = typed
        else:
            parsed[col] = value
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
    (re.compile(r"^less_than\((.*)\)$"), "max", lambda m: f"must be < {m.group(1)}"),
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


def _policy_failures(parsed: pd.DataFrame, spec: InputSpec) -> pd.DataFrame:
    """`<column>:unknown_policy`: a code that is neither `NONE` nor in the catalogue."""
    if spec.policies is None:
        return _concat_failures([])
    parts = []
    for col in spec.policy_columns:
        v = parsed[col]
        bad = (v.notna() & v.ne(raw_schemas.NO_POLICY) & ~v.isin(spec.policies)).fillna(False).astype(bool)
        if bad.any():
            parts.append(_failures(parsed.index[bad], col, f"{col}:unknown_policy",
                                   [f"{col} {x!r} is not in the policy catalogue ({raw_schemas.POLICY_CATALOGUE})"
                                    for x in v[bad]]))
    return _concat_failures(parts)


def _future_failures(parsed: pd.DataFrame, spec: InputSpec) -> pd.DataFrame:
    """`<column>:in_future`: a date after the run's date (UTC)."""
    if spec.today is None:
        return _concat_failures([])
    today = pd.Timestamp(spec.today, tz="UTC")
    parts = []
    for col in spec.not_in_future:
        d = parsed[col]
        bad = (d.notna() & (d > today)).fillna(False).astype(bool)
        if bad.any():
            parts.append(_failures(parsed.index[bad], col, f"{col}:in_future",
                                   [f"{col} {x:%Y-%m-%d} is after the run's date {spec.today:%Y-%m-%d}" for x in d[bad]]))
    return _concat_failures(parts)


def _reference_failures(parsed: pd.DataFrame, spec: InputSpec) -> pd.DataFrame:
    """`<column>:<rule>`: a value that does not exist in the input it refers to."""
    parts = []
    for ref in spec.references:
        v = parsed[ref.column]
        applies = v.notna()
        if ref.when is not None and ref.before is not None:
            applies &= parsed[ref.when].notna() & (parsed[ref.when] < ref.before)
        bad = (applies & ~v.isin(ref.known)).fillna(False).astype(bool)
        if bad.any():
            parts.append(_failures(parsed.index[bad], ref.column, f"{ref.column}:{ref.rule}",
                                   [f"{ref.column} {x!r} is not in {ref.source}" for x in v[bad]]))
    return _concat_failures(parts)


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


def _line_failures(raw: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame]:
    """Rows that are CSV lines the reader could not use: their positions and their one failure."""
    if LINE_RULE not in raw.columns:
        return np.empty(0, dtype="int64"), _concat_failures([])
    rule = raw[LINE_RULE]
    at = np.flatnonzero(rule.notna().to_numpy())
    return at, _failures(at, None, "", raw[LINE_REASON].iloc[at]).assign(rule=rule.iloc[at].to_numpy(object))


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
    """The row-local rules on consecutive rows of one file: parsing, the pandera model, the
    catalogue, the run's date and references, the folder month.

    `raw` holds the rows as read (text columns as in the file, Parquet columns as typed). Returns
    the typed frame (the spec's columns, index 0..n-1) and one failure per (row, rule) with `row`
    the row's position in `raw`, in rule order: parse, model, catalogue, date, references, row rules, folder
    month. A CSV line the reader could not use (`LINE_RULE`) has that one failure and no other. The
    same function runs over a whole file (`run_gate`) and over each chunk of a file
    (`streaming_gate`); cross-row rules (duplicates, ids published earlier) are not applied here.
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
    failures = _concat_failures([
        parse_fail, model_fail, _policy_failures(parsed, spec), _future_failures(parsed, spec),
        _reference_failures(parsed, spec), *(rule(parsed) for rule in spec.row_rules),
        _folder_month_failures(parsed, spec.folder_month_column, folder_month),
    ])
    line_rows, line_fail = _line_failures(raw)
    if len(line_rows):
        failures = _concat_failures([failures[~failures["row"].isin(line_rows)], line_fail])
    return parsed, failures


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
    # a CSV line the reader could not use has no values (all missing): no cross-row rule sees it
    cross = [_duplicate_failures(parsed, spec.unique_key), *(_duplicate_failures(parsed, c) for c in spec.also_unique)]
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
    """The rows at `positions` of `raw` as read, one JSON object each (missing cells as null); a
    CSV line the reader could not use as the line's text, a JSON string.

    The one definition of a quarantine row's `raw_record`: the gate, the streaming gate and
    `streaming_gate.raw_records` all call it.
    """
    if len(positions) == 0:
        return []
    positions = np.asarray(positions, dtype="int64")
    data_cols = [c for c in raw.columns if c not in INTERNAL_COLUMNS]
    records = raw.iloc[positions][data_cols].astype("object")
    records = records.where(records.notna(), None)
    out = [json.dumps(r, default=str, ensure_ascii=False) for r in records.to_dict("records")]
    if LINE_RULE in raw.columns:
        rules = raw[LINE_RULE].to_numpy(object)[positions]
        texts = raw[LINE_TEXT].to_numpy(object)[positions]
        for i in np.flatnonzero(pd.notna(rules)):
            out[i] = json.dumps(texts[i], ensure_ascii=False)
    return out


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


def ingest_rows(rows: Sequence[tuple]) -> pd.DataFrame:
    """`qa_core.ingest_log` rows (tuples in INGEST_LOG_COLUMNS order), typed."""
    frame = pd.DataFrame(list(rows), columns=INGEST_LOG_COLUMNS)
    for col in ("rows_read", "rows_clean", "rows_quarantined"):
        frame[col] = frame[col].astype("Int64")
    return frame


def _file_log(files, clean: pd.DataFrame, quarantine: pd.DataFrame, spec: InputSpec, month: date) -> pd.DataFrame:
    """Per file: rows read (counted in the file on their own), clean and quarantined (each counted
    from its own frame)."""
    clean_n = clean[SOURCE_FILE].value_counts()
    quarantined_n = quarantine["source_file"].value_counts()
    return ingest_rows([
        (pd.Timestamp(month), spec.name, f.path, f.sha256, f.rows_read,
         int(clean_n.get(f.path, 0)), int(quarantined_n.get(f.path, 0)), READ, None)
        for f in files
    ])
