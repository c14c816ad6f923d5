"""The corpus of malformed inputs: each case builds its bad file(s) on top of a small valid raw
folder and states the outcome the contract asks for.

A case is data: `Case(name, input, outcome, build, modes, month, publishes)`. `build(raw)` writes
the case's files into a copy of the base folder and returns a `Built`: the files it touched, the
rows that must be quarantined (file, 1-based row → the rule(s) it must carry), the patterns a
rejection message must match, the paths that must be logged as ignored. Outcomes:

- `quarantined`: exactly the listed rows of the touched files are quarantined, each carrying one of
  the listed rules in `rules` (a rule ending in `:` matches any rule of that column);
- `rejected`: the gate (or the month's run) fails with an error that matches every pattern (the
  file's name and the column or problem);
- `ignored`: the path is in `qa_core.ingest_log` with status `ignored` and a reason, nothing of it
  is read;
- `accepted`: every row of the touched files is clean.

For every file a case touches (rejected and ignored ones aside), `rows read = rows clean + rows
quarantined` is asserted with *rows read* counted here (`count_rows`: Python's `csv` module on the
bytes, pyarrow's Parquet metadata), never taken from the pipeline.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from qa_pipeline_tests.conftest import VALID_AUDIT

OUTCOMES = ("quarantined", "rejected", "ignored", "accepted")
BASE_MONTHS = ["2026-02", "2026-03"]
MONTH = "2026-03"
BASE_SEED = 5
BASE_AUDITS_PER_MONTH = 200
BASE_DISPUTES = 60  # March's disputes: enough rows that one bad dispute stays under the 2 % limit
CATALOGUE_FILLERS = 60
NULL_LITERALS = ("nan", "NaN", "NULL", "null", "None", "N/A")

# -- the base folder ------------------------------------------------------------------------------


def build_base(out: Path) -> Path:
    """Two generated months (200 audits each, no planted defect, no HateCheck sessions), every input
    of the contract but the optional policy catalogue, and 60 more valid disputes resolved in March."""
    from qa_pipeline.sample_data import SampleSpec, generate

    generate(SampleSpec(months=BASE_MONTHS, audits_per_month=BASE_AUDITS_PER_MONTH, seed=BASE_SEED,
                        bad_row_share=0.0, with_hatecheck=False), out)
    shutil.rmtree(out / "policies", ignore_errors=True)  # no catalogue: any non-empty code is valid (the cases add one)
    audits = [r for p in sorted((out / "audits" / MONTH).glob("*.csv")) for r in read_rows(p)]
    path = out / "disputes" / MONTH / "disputes.csv"
    disputes = read_rows(path) if path.exists() else []
    taken = {d["audit_id"] for d in disputes}
    extra = []
    for a in audits:
        if len(extra) == BASE_DISPUTES:
            break
        day = int(a["audited_at"][8:10])
        if a["audit_id"] in taken or not 1 <= day <= 25:
            continue
        extra.append({"dispute_id": f"FD-{len(extra):04d}", "audit_id": a["audit_id"],
                      "disputed_at": f"{MONTH}-{day + 1:02d}T09:00:00Z",
                      "resolved_at": f"{MONTH}-{day + 3:02d}T15:30:00Z",
                      "reason": "The moderator followed the escalation guideline",
                      "outcome": "overturned" if len(extra) % 5 == 0 else "upheld"})
    write_rows(path, disputes + extra, columns=DISPUTE_COLUMNS)
    return out


def policy_codes(raw: Path) -> list[str]:
    """Every policy code the base folder uses (the catalogue cases list them, plus fillers)."""
    codes = set()
    for p in (raw / "audits").rglob("*.csv"):
        for r in read_rows(p):
            codes |= {r["policy_moderator"], r["policy_auditor"]}
    for p in (raw / "calibration").rglob("*.csv"):
        for r in read_rows(p):
            codes |= {r.get("policy"), r.get("gold_policy")}
    for r in read_rows(raw / "policy_changes" / "policy_changes.csv"):
        codes.add(r["policy"])
    return sorted(c for c in codes if c and c != "NONE")


def write_catalogue(raw: Path, extra_rows: list[dict] | None = None, drop: str | None = None) -> tuple[str, list[int]]:
    """`policies/policies.csv` listing every code in use and fillers, then `extra_rows`."""
    rows = [{"policy": c, "name": f"Policy {c}", "queues": "*"} for c in policy_codes(raw)]
    rows += [{"policy": f"ZZ.{i}", "name": f"Filler {i}", "queues": "*"} for i in range(1, CATALOGUE_FILLERS + 1)]
    first = len(rows) + 1
    rows += extra_rows or []
    columns = [c for c in POLICY_COLUMNS if c != drop]
    rel = "policies/policies.csv"
    write_rows(raw / rel, rows, columns=columns)
    return rel, list(range(first, len(rows) + 1))


# -- reading and writing raw files ---------------------------------------------------------------

AUDIT_COLUMNS = list(VALID_AUDIT)
DISPUTE_COLUMNS = ["dispute_id", "audit_id", "disputed_at", "resolved_at", "reason", "outcome"]
RATING_COLUMNS = ["session_id", "session_date", "queue", "case_id", "rater_id", "rater_role", "action", "policy"]
GOLD_COLUMNS = ["session_id", "case_id", "gold_action", "gold_policy"]
ROSTER_COLUMNS = ["moderator_id", "site", "team_type", "hire_date", "language", "status"]
PC_COLUMNS = ["change_id", "policy", "effective_date", "change_type", "summary", "queues"]
EXPERIMENT_COLUMNS = ["experiment_id", "name", "hypothesis", "owner", "start_date", "end_date",
                      "primary_metric", "treatment_share"]
ASSIGNMENT_COLUMNS = ["experiment_id", "moderator_id", "arm"]
POLICY_COLUMNS = ["policy", "name", "queues"]


def read_rows(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8-sig") as fh:
        return list(csv.DictReader(fh))


def csv_text(rows: list[dict], columns: list[str], newline: str = "\n") -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator=newline)
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def write_rows(path: Path, rows: list[dict], columns: list[str] | None = None, *, newline: str = "\n",
               encoding: str = "utf-8", bom: bool = False) -> Path:
    """A CSV (`.csv`, `.CSV`, `.csv.gz`) or Parquet (`.parquet`, every column as text) file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = columns or list(rows[0])
    if path.suffix.lower() == ".parquet":
        frame = pd.DataFrame([{c: r.get(c) for c in columns} for r in rows], columns=columns, dtype="str")
        frame.to_parquet(path, index=False)
        return path
    data = (("\ufeff" if bom else "") + csv_text(rows, columns, newline)).encode(encoding)
    path.write_bytes(gzip.compress(data) if path.suffix.lower() == ".gz" else data)
    return path


def append_rows(path: Path, rows: list[dict]) -> list[int]:
    """Append rows to a CSV file (same columns); their 1-based row numbers."""
    existing = read_rows(path)
    with path.open(newline="", encoding="utf-8-sig") as fh:
        columns = next(csv.reader(fh))
    write_rows(path, existing + rows, columns=columns)
    return list(range(len(existing) + 1, len(existing) + len(rows) + 1))


def count_rows(path: Path) -> int:
    """Data rows of a raw file, counted independently of the pipeline: Parquet from its metadata;
    CSV (gzip or not, any encoding) by Python's `csv` module, header and blank lines not counted."""
    import pyarrow.parquet as pq

    if path.suffix.lower() == ".parquet":
        return pq.ParquetFile(path).metadata.num_rows
    data = path.read_bytes()
    if path.suffix.lower() == ".gz":
        data = gzip.decompress(data)
    text = data.decode("utf-8", errors="replace").removeprefix("\ufeff")
    records = [r for r in csv.reader(io.StringIO(text, newline="")) if r]
    return max(len(records) - 1, 0)


# -- cases ----------------------------------------------------------------------------------------


@dataclass
class Built:
    files: list[str] = field(default_factory=list)  # relative paths the case wrote
    quarantined: dict[tuple[str, int], tuple[str, ...]] = field(default_factory=dict)
    lines: dict[tuple[str, int], str] = field(default_factory=dict)  # raw_record of a malformed line
    error: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()
    values: dict[str, str] = field(default_factory=dict)  # month mode: values that must land intact

    def expect(self, rel: str, rows, *rules: str) -> Built:
        for row in [rows] if isinstance(rows, int) else rows:
            self.quarantined[(rel, row)] = rules
        return self


@dataclass(frozen=True)
class Case:
    name: str
    input: str
    outcome: str
    build: Callable[[Path], Built]
    modes: tuple[str, ...] = ("gate",)
    month: str = MONTH
    publishes: bool | None = None  # month mode: does the month's run publish
    after: str | None = None  # month mode: an extra check (see test_corpus.AFTER)
    note: str = ""

    def __post_init__(self):
        assert self.outcome in OUTCOMES, self.outcome
        assert "month" not in self.modes or self.publishes is not None, self.name


def input_of(rel: str) -> str:
    """The quarantine's `input` of a raw file, from its place in the layout."""
    top, _, rest = rel.partition("/")
    if top == "calibration":
        return "calibration_gold" if Path(rest).name.startswith("gold") else "calibration_ratings"
    if top == "experiments":
        return "assignments" if Path(rest).name.startswith("assignments") else "experiments"
    if top == "policies":
        return "policies"
    return top


def rule_matches(expected: str, rules: str) -> bool:
    got = [r.strip() for r in rules.split(";")]
    if expected.endswith(":"):
        return any(r.startswith(expected) for r in got)
    return expected in got


def A(tag: str, i: int, month: str = MONTH, **changes) -> dict:
    """A valid audit of `month` (an error-free removal under HS.1), with changes."""
    row = dict(VALID_AUDIT, audit_id=f"{tag}-{i}", audited_at=f"{month}-10T12:00:00Z",
               decision_at=f"{month}-09T08:30:00Z", moderator_id="MOD-1001", auditor_id="AUD-01",
               content_id=f"C-{tag}-{i}", site="Dublin", market="GB")
    row.update({k: ("" if v is None else v) for k, v in changes.items()})
    return row


def audit_file(raw: Path, name: str, rows: list[dict], month: str = MONTH, suffix: str = ".csv",
               columns: list[str] | None = None, **fmt) -> str:
    rel = f"audits/{month}/zz_{name}{suffix}"
    write_rows(raw / rel, rows, columns=columns or AUDIT_COLUMNS, **fmt)
    return rel


def five(tag: str, month: str = MONTH, **bad_changes) -> list[dict]:
    """Five valid audits with the third changed."""
    rows = [A(tag, i, month) for i in range(1, 6)]
    rows[2] = A(tag, 3, month, **bad_changes)
    return rows


def quarantine_third(name: str, rule: str | tuple[str, ...], **changes) -> Callable[[Path], Built]:
    def build(raw: Path) -> Built:
        rel = audit_file(raw, name, five(name, **changes))
        rules = rule if isinstance(rule, tuple) else (rule,)
        return Built(files=[rel]).expect(rel, 3, *rules)
    return build


def accepted_file(name: str, rows_fn: Callable[[], list[dict]], suffix: str = ".csv", **fmt) -> Callable[[Path], Built]:
    def build(raw: Path) -> Built:
        return Built(files=[audit_file(raw, name, rows_fn(), suffix=suffix, **fmt)])
    return build


def base_audit_id(raw: Path, month: str) -> str:
    """The first audit id of the month's first base file (valid: the base has no defect)."""
    first = sorted(p for p in (raw / "audits" / month).glob("audits_*.csv"))[0]
    return read_rows(first)[0]["audit_id"]


def lines_file(raw: Path, rel: str, columns: list[str], rows: list[dict], inserts: dict[int, str],
               newline: str = "\n") -> dict[int, str]:
    """A CSV whose data row `k` (1-based) is the raw line `inserts[k]` instead of a row."""
    body = csv_text(rows, columns, newline).split(newline)
    header, data = body[0], [b for b in body[1:] if b]
    for k in sorted(inserts):
        data.insert(k - 1, inserts[k])
    (raw / rel).parent.mkdir(parents=True, exist_ok=True)
    (raw / rel).write_bytes((newline.join([header, *data]) + newline).encode("utf-8"))
    return inserts


# audits ------------------------------------------------------------------------------------------


def _latin1(raw: Path) -> Built:
    """A Latin-1 file: the line with accents is not UTF-8 and is quarantined alone."""
    rows = five("latin1", auditor_comment="Décision conforme, café")
    rel = audit_file(raw, "latin1", rows, encoding="latin-1")
    return Built(files=[rel]).expect(rel, 3, "line:invalid_utf8")


def _invalid_utf8(raw: Path) -> Built:
    rel = audit_file(raw, "invalid_utf8", five("invalid_utf8", auditor_comment="MARK"))
    path = raw / rel
    path.write_bytes(path.read_bytes().replace(b"MARK", b"bad \xff\xfe\xfa bytes"))
    return Built(files=[rel]).expect(rel, 3, "line:invalid_utf8")


def _utf16(raw: Path) -> Built:
    """UTF-16 (with its byte-order mark): not even the header is UTF-8 text, so no column is found."""
    rel = audit_file(raw, "utf16", five("utf16"), encoding="utf-16")
    return Built(files=[rel], error=(re.escape(rel),))


def _crlf_quotes_newlines(raw: Path) -> Built:
    comment = 'He said "remove it", then\r\nchanged his mind; commas, too'
    rows = five("crlfq", auditor_comment=comment)
    rel = audit_file(raw, "crlf_quotes_newlines", rows, newline="\r\n", bom=True)
    return Built(files=[rel], values={"crlfq-3": comment})


def _embedded_newline(raw: Path) -> Built:
    rows = five("embnl", auditor_comment='line one\nline "two"\n\nline four')
    return Built(files=[audit_file(raw, "embedded_newline", rows)])


def _empty_file(raw: Path) -> Built:
    rel = f"audits/{MONTH}/zz_empty.csv"
    (raw / rel).write_bytes(b"")
    return Built(files=[rel], error=(re.escape(rel),))


def _header_only(raw: Path) -> Built:
    rel = f"audits/{MONTH}/zz_header_only.csv"
    (raw / rel).write_text(",".join(AUDIT_COLUMNS) + "\n", encoding="utf-8")
    return Built(files=[rel])


def _duplicate_within(raw: Path) -> Built:
    rows = [A("dupin", i) for i in range(1, 6)]
    rows[3] = A("dupin", 2)
    rel = audit_file(raw, "duplicate_within", rows)
    return Built(files=[rel]).expect(rel, 4, "audit_id:duplicate")


def _duplicate_across_files(raw: Path) -> Built:
    rows = five("dupfile")
    rows[2]["audit_id"] = base_audit_id(raw, MONTH)
    rel = audit_file(raw, "duplicate_across_files", rows)
    return Built(files=[rel]).expect(rel, 3, "audit_id:duplicate")


def _duplicate_across_months(raw: Path) -> Built:
    rows = five("dupmonth")
    rows[2]["audit_id"] = base_audit_id(raw, "2026-02")
    rel = audit_file(raw, "duplicate_across_months", rows)
    return Built(files=[rel]).expect(rel, 3, "audit_id:published_earlier")


def _published_later(raw: Path) -> Built:
    rows = five("publater", month="2026-02")
    rows[2]["audit_id"] = base_audit_id(raw, MONTH)
    rel = audit_file(raw, "published_later", rows, month="2026-02")
    return Built(files=[rel]).expect(rel, 3, "audit_id:published_later")


def _oversized(raw: Path) -> Built:
    big = ("word, " * 500_000)[:3_000_000]  # 3 MB in one quoted field, beyond the reader's 1 MiB blocks
    rows = five("oversized", auditor_comment=big)
    return Built(files=[audit_file(raw, "oversized_comment", rows)])


def _null_literals(raw: Path) -> Built:
    rows = [A("nulls", i) for i in range(1, 8)]
    rows[1]["moderator_id"] = "NULL"
    rows[3]["site"] = "None"
    rows[4]["market"] = "N/A"
    rel = audit_file(raw, "null_literals", rows)
    return (Built(files=[rel]).expect(rel, 2, "moderator_id:null_literal")
            .expect(rel, 4, "site:null_literal").expect(rel, 5, "market:null_literal"))


def _null_literals_each(raw: Path) -> Built:
    rows = [A("nullsx", i) for i in range(1, len(NULL_LITERALS) + 3)]
    for i, lit in enumerate(NULL_LITERALS):
        rows[i + 1]["content_id"] = lit
    rel = audit_file(raw, "null_literals_each", rows)
    return Built(files=[rel]).expect(rel, range(2, len(NULL_LITERALS) + 2), "content_id:null_literal")


def _trailing_space(raw: Path) -> Built:
    rows = [A("trail", i) for i in range(1, 6)]
    rows[3]["audit_id"] = rows[1]["audit_id"] + " "
    rel = audit_file(raw, "trailing_space_id", rows)
    return Built(files=[rel]).expect(rel, 4, "audit_id:")


def _missing_required(raw: Path) -> Built:
    rel = audit_file(raw, "missing_queue", five("missq"), columns=[c for c in AUDIT_COLUMNS if c != "queue"])
    return Built(files=[rel], error=(re.escape(rel), r"\bqueue\b"))


def _missing_optional(raw: Path) -> Built:
    rel = audit_file(raw, "no_weight", five("noweight"), columns=[c for c in AUDIT_COLUMNS if c != "sampling_weight"])
    return Built(files=[rel])


def _ragged(name: str, line_of: Callable[[dict], str], at: int = 3, total: int = 5) -> Callable[[Path], Built]:
    def build(raw: Path) -> Built:
        rows = [A(name, i) for i in range(1, total + 1)]
        bad = rows.pop(at - 1)
        rel = f"audits/{MONTH}/zz_{name}.csv"
        line = line_of(bad)
        lines_file(raw, rel, AUDIT_COLUMNS, rows, {at: line})
        built = Built(files=[rel]).expect(rel, at, "line:malformed")
        built.lines[(rel, at)] = line
        return built
    return build


def _short_line(row: dict) -> str:
    return ",".join(list(row.values())[:5])


def _long_line(row: dict) -> str:
    return csv_text([row], AUDIT_COLUMNS).splitlines()[1] + ",surplus"


def _unterminated(row: dict) -> str:
    row = dict(row, auditor_comment="REPLACE")
    return csv_text([row], AUDIT_COLUMNS).splitlines()[1].replace("REPLACE", '"never closed, 12.5')


def _parquet_int_timestamps(raw: Path) -> Built:
    rows = five("pqint")
    frame = pd.DataFrame(rows, columns=AUDIT_COLUMNS, dtype="str")
    frame["audited_at"] = pd.to_datetime(frame["audited_at"]).astype("int64") // 10**9  # epoch seconds
    rel = f"audits/{MONTH}/zz_parquet_int_timestamps.parquet"
    frame.to_parquet(raw / rel, index=False)
    return Built(files=[rel]).expect(rel, range(1, 6), "audited_at:iso8601")


def _parquet_text_numbers(raw: Path) -> Built:
    rel = audit_file(raw, "parquet_text_numbers", five("pqtxt", handle_time_s="abc"), suffix=".parquet")
    return Built(files=[rel]).expect(rel, 3, "handle_time_s:number")


def _parquet_double_ids(raw: Path) -> Built:
    """Parquet typed columns where text is expected: content_id as int64, handle_time_s as double."""
    frame = pd.DataFrame(five("pqdbl"), columns=AUDIT_COLUMNS, dtype="str")
    frame["content_id"] = range(1001, 1006)
    frame["handle_time_s"] = [12.5, float("inf"), 3.0, 4.0, 5.0]
    rel = f"audits/{MONTH}/zz_parquet_typed.parquet"
    frame.to_parquet(raw / rel, index=False)
    return Built(files=[rel]).expect(rel, 2, "handle_time_s:non_finite")


def _no_files(raw: Path) -> Built:
    for p in (raw / "audits" / MONTH).iterdir():
        p.unlink()
    return Built(error=(r"audits", re.escape(MONTH)))


def _ignored(rel: str, content: bytes = b"not a raw input\n") -> Callable[[Path], Built]:
    def build(raw: Path) -> Built:
        (raw / rel).parent.mkdir(parents=True, exist_ok=True)
        (raw / rel).write_bytes(content)
        return Built(ignored=(rel,))
    return build


def _ignored_folder(raw: Path) -> Built:
    rel = "audits/2026-3/zz_wrong_folder.csv"
    write_rows(raw / rel, five("wrongfolder"), columns=AUDIT_COLUMNS)
    return Built(ignored=(rel,))


def _unknown_policy_audits(raw: Path) -> Built:
    write_catalogue(raw)
    rows = five("unkpol", policy_auditor="XX.9", policy_moderator="XX.9")
    rel = audit_file(raw, "unknown_policy", rows)
    return Built(files=[rel]).expect(rel, 3, "policy_auditor:unknown_policy", "policy_moderator:unknown_policy")


def _free_policy_codes(raw: Path) -> Built:
    rows = [A("freepol", 1, policy_moderator="hate_speech.tier2", policy_auditor="hate_speech.tier2"),
            A("freepol", 2, policy_moderator="P4", policy_auditor="P4"),
            A("freepol", 3, policy_moderator="HS-2", policy_auditor="HS-2"),
            A("freepol", 4)]
    return Built(files=[audit_file(raw, "free_policy_codes", rows)])


AUDIT_CASES = [
    Case("audits_text_in_number", "audits", "quarantined", quarantine_third("text_number", "handle_time_s:number", handle_time_s="fast")),
    Case("audits_bad_timestamp", "audits", "quarantined", quarantine_third("bad_ts", "audited_at:iso8601", audited_at="10/03/2026 12:00")),
    Case("audits_latin1_bytes", "audits", "quarantined", _latin1),
    Case("audits_invalid_utf8", "audits", "quarantined", _invalid_utf8),
    Case("audits_utf16", "audits", "rejected", _utf16),
    Case("audits_utf8_bom", "audits", "accepted", accepted_file("bom", lambda: five("bom"), bom=True)),
    Case("audits_crlf", "audits", "accepted", accepted_file("crlf", lambda: five("crlf"), newline="\r\n")),
    Case("audits_bom_crlf_quotes_newline", "audits", "accepted", _crlf_quotes_newlines, modes=("gate", "month"), publishes=True,
         after="values_intact"),
    Case("audits_embedded_newlines", "audits", "accepted", _embedded_newline),
    Case("audits_nul_byte", "audits", "quarantined", quarantine_third("nul", "auditor_comment:nul_byte", auditor_comment="bad\x00byte")),
    Case("audits_empty_file", "audits", "rejected", _empty_file),
    Case("audits_header_only", "audits", "accepted", _header_only),
    Case("audits_out_of_month", "audits", "quarantined", quarantine_third(
        "out_of_month", "audited_at:in_folder_month", audited_at="2026-04-02T10:00:00Z", decision_at="2026-04-01T10:00:00Z")),
    Case("audits_reversed_dates", "audits", "quarantined", quarantine_third(
        "reversed", "decision_before_audit", decision_at="2026-03-11T08:30:00Z")),
    Case("audits_duplicate_within_file", "audits", "quarantined", _duplicate_within),
    Case("audits_duplicate_across_files", "audits", "quarantined", _duplicate_across_files),
    Case("audits_duplicate_across_months", "audits", "quarantined", _duplicate_across_months),
    Case("audits_held_by_later_month", "audits", "quarantined", _published_later, modes=("gate", "month"),
         month="2026-02", publishes=True),
    Case("audits_unknown_content_type", "audits", "quarantined", quarantine_third("ctype", "content_type:allowed_values", content_type="gif")),
    Case("audits_unknown_action", "audits", "quarantined", quarantine_third(
        "action", "action_auditor:allowed_values", action_auditor="delete")),
    Case("audits_queue_pattern", "audits", "quarantined", quarantine_third("queue", "queue:pattern", queue="Hate Speech")),
    Case("audits_3mb_comment", "audits", "accepted", _oversized),
    Case("audits_inf_number", "audits", "quarantined", quarantine_third("inf", "handle_time_s:non_finite", handle_time_s="inf")),
    Case("audits_infinity_weight", "audits", "quarantined", quarantine_third(
        "infinity", "sampling_weight:non_finite", sampling_weight="Infinity")),
    Case("audits_nan_number", "audits", "quarantined", quarantine_third(
        "nan", ("handle_time_s:non_finite", "handle_time_s:null_literal"), handle_time_s="NaN")),
    Case("audits_null_literals", "audits", "quarantined", _null_literals, modes=("gate", "month"), publishes=True),
    Case("audits_null_literal_spellings", "audits", "quarantined", _null_literals_each),
    Case("audits_id_trailing_space", "audits", "quarantined", _trailing_space),
    Case("audits_missing_required_column", "audits", "rejected", _missing_required, modes=("gate", "month"), publishes=False),
    Case("audits_missing_optional_column", "audits", "accepted", _missing_optional),
    Case("audits_short_line", "audits", "quarantined", _ragged("short_line", _short_line), modes=("gate", "month"), publishes=True),
    Case("audits_long_line", "audits", "quarantined", _ragged("long_line", _long_line)),
    Case("audits_unterminated_quote", "audits", "quarantined", _ragged("unterminated", _unterminated, at=5)),
    Case("audits_parquet", "audits", "accepted", accepted_file("parquet", lambda: five("pq"), suffix=".parquet")),
    Case("audits_parquet_int_timestamps", "audits", "quarantined", _parquet_int_timestamps),
    Case("audits_parquet_text_numbers", "audits", "quarantined", _parquet_text_numbers),
    Case("audits_parquet_typed_columns", "audits", "quarantined", _parquet_double_ids),
    Case("audits_csv_gz", "audits", "accepted", accepted_file("gz", lambda: five("gz"), suffix=".csv.gz")),
    Case("audits_upper_case_suffix", "audits", "accepted", accepted_file("upper", lambda: five("upper"), suffix=".CSV")),
    Case("audits_auditor_is_moderator", "audits", "quarantined", quarantine_third(
        "selfaudit", "auditor_not_moderator", auditor_id="MOD-1001")),
    Case("audits_severity_mismatch", "audits", "quarantined", quarantine_third(
        "severity", "severity_matches_error", action_auditor="restrict", root_cause="policy_knowledge")),
    Case("audits_root_cause_missing", "audits", "quarantined", quarantine_third(
        "rootcause", "root_cause_iff_error", action_auditor="restrict", error_severity="major")),
    Case("audits_negative_handle_time", "audits", "quarantined", quarantine_third("neg", "handle_time_s:min", handle_time_s="-3")),
    Case("audits_zero_weight", "audits", "quarantined", quarantine_third("zero_w", "sampling_weight:min", sampling_weight="0")),
    Case("audits_blank_content_id", "audits", "quarantined", quarantine_third("blank", "content_id:", content_id="   ")),
    Case("audits_free_policy_codes", "audits", "accepted", _free_policy_codes),
    Case("audits_month_without_files", "audits", "rejected", _no_files),
    Case("audits_ignored_txt", "audits", "ignored", _ignored(f"audits/{MONTH}/notes.txt"), modes=("month",), publishes=True),
    Case("audits_ignored_folder", "audits", "ignored", _ignored_folder, modes=("month",), publishes=True),
    Case("policies_unknown_code_in_audits", "policies", "quarantined", _unknown_policy_audits, modes=("month",), publishes=True),
]

# disputes ----------------------------------------------------------------------------------------


def D(tag: str, i: int, audit_id: str, **changes) -> dict:
    row = {"dispute_id": f"{tag}-{i}", "audit_id": audit_id, "disputed_at": f"{MONTH}-12T09:00:00Z",
           "resolved_at": f"{MONTH}-14T09:00:00Z", "reason": "Context was missing", "outcome": "upheld"}
    row.update(changes)
    return row


def _march_ids(raw: Path, n: int) -> list[str]:
    files = sorted((raw / "audits" / MONTH).glob("audits_*.csv"))
    return [r["audit_id"] for r in read_rows(files[-1])[-n:]]


def dispute_file(name: str, bad: dict | None = None, rule: str | tuple[str, ...] | None = None,
                 suffix: str = ".csv", **fmt) -> Callable[[Path], Built]:
    def build(raw: Path) -> Built:
        ids = _march_ids(raw, 4)
        rows = [D(f"FX{name}", i, ids[i]) for i in range(4)]
        if bad:
            rows[2].update(bad)
        rel = f"disputes/{MONTH}/zz_{name}{suffix}"
        write_rows(raw / rel, rows, columns=DISPUTE_COLUMNS, **fmt)
        built = Built(files=[rel])
        if rule:
            built.expect(rel, 3, *(rule if isinstance(rule, tuple) else (rule,)))
        return built
    return build


def _dispute_duplicate_within(raw: Path) -> Built:
    ids = _march_ids(raw, 4)
    rows = [D("FXdupw", i, ids[i]) for i in range(4)]
    rows[3]["dispute_id"] = rows[1]["dispute_id"]
    rel = f"disputes/{MONTH}/zz_duplicate.csv"
    write_rows(raw / rel, rows, columns=DISPUTE_COLUMNS)
    return Built(files=[rel]).expect(rel, 4, "dispute_id:duplicate")


def _dispute_duplicate_folders(raw: Path) -> Built:
    feb = base_audit_id(raw, "2026-02")
    write_rows(raw / "disputes/2026-02/disputes.csv",
               [D("FXfeb", 1, feb, disputed_at="2026-02-11T09:00:00Z", resolved_at="2026-02-12T09:00:00Z")],
               columns=DISPUTE_COLUMNS)
    ids = _march_ids(raw, 4)
    rows = [D("FXdupf", i, ids[i]) for i in range(4)]
    rows[2]["dispute_id"] = "FXfeb-1"
    rel = f"disputes/{MONTH}/zz_duplicate_folders.csv"
    write_rows(raw / rel, rows, columns=DISPUTE_COLUMNS)
    return Built(files=[rel, "disputes/2026-02/disputes.csv"]).expect(rel, 3, "dispute_id:")


def _dispute_missing_column(raw: Path) -> Built:
    rel = f"disputes/{MONTH}/zz_no_outcome.csv"
    ids = _march_ids(raw, 2)
    write_rows(raw / rel, [D("FXnoout", i, ids[i]) for i in range(2)],
               columns=[c for c in DISPUTE_COLUMNS if c != "outcome"])
    return Built(files=[rel], error=(re.escape(rel), r"\boutcome\b"))


def _dispute_missing_column_other_month(raw: Path) -> Built:
    rel = "disputes/2026-02/zz_no_outcome.csv"
    feb = base_audit_id(raw, "2026-02")
    write_rows(raw / rel, [D("FXnoout", 1, feb, disputed_at="2026-02-11T09:00:00Z", resolved_at="2026-02-12T09:00:00Z")],
               columns=[c for c in DISPUTE_COLUMNS if c != "outcome"])
    return Built(files=[rel], error=(re.escape(rel), r"\boutcome\b"))


def _dispute_unknown_audit(raw: Path) -> Built:
    ids = _march_ids(raw, 4)
    rows = [D("FXunk", i, ids[i]) for i in range(4)]
    rows[2]["audit_id"] = "A-DOES-NOT-EXIST"
    rel = f"disputes/{MONTH}/zz_unknown_audit.csv"
    write_rows(raw / rel, rows, columns=DISPUTE_COLUMNS)
    return Built(files=[rel]).expect(rel, 3, "audit_id:unknown_audit")


def _dispute_all_malformed(raw: Path) -> Built:
    ids = _march_ids(raw, 20)
    rows = [D("FXall", i, ids[i], outcome="maybe") for i in range(20)]
    rel = f"disputes/{MONTH}/zz_all_malformed.csv"
    write_rows(raw / rel, rows, columns=DISPUTE_COLUMNS)
    return Built(files=[rel], error=(re.escape("zz_all_malformed.csv"),)).expect(rel, range(1, 21), "outcome:allowed_values")


DISPUTE_CASES = [
    Case("disputes_reversed_dates", "disputes", "quarantined", dispute_file(
        "reversed", {"disputed_at": f"{MONTH}-20T09:00:00Z"}, "resolved_after_disputed")),
    Case("disputes_unknown_outcome", "disputes", "quarantined", dispute_file("outcome", {"outcome": "won"}, "outcome:allowed_values")),
    Case("disputes_out_of_month", "disputes", "quarantined", dispute_file(
        "out_of_month", {"disputed_at": "2026-02-10T09:00:00Z", "resolved_at": "2026-02-20T09:00:00Z"},
        "resolved_at:in_folder_month")),
    Case("disputes_duplicate_within_file", "disputes", "quarantined", _dispute_duplicate_within),
    Case("disputes_duplicate_across_folders", "disputes", "quarantined", _dispute_duplicate_folders),
    Case("disputes_missing_column", "disputes", "rejected", _dispute_missing_column),
    Case("disputes_missing_column_other_month", "disputes", "rejected", _dispute_missing_column_other_month,
         modes=("month",), publishes=True, after="other_month_blocked",
         note="the February folder's bad file blocks February only: March publishes"),
    Case("disputes_unknown_audit", "disputes", "quarantined", _dispute_unknown_audit, modes=("month",), publishes=True),
    Case("disputes_all_malformed", "disputes", "quarantined", _dispute_all_malformed, modes=("gate", "month"),
         publishes=False, after="block_names_file"),
    Case("disputes_nul_byte", "disputes", "quarantined", dispute_file("nul", {"reason": "a\x00b"}, "reason:nul_byte")),
    Case("disputes_bom_crlf", "disputes", "accepted", dispute_file("bom_crlf", bom=True, newline="\r\n")),
    Case("disputes_parquet", "disputes", "accepted", dispute_file("parquet", suffix=".parquet")),
    Case("disputes_null_literal", "disputes", "quarantined", dispute_file("nullid", {"dispute_id": "NULL"}, "dispute_id:null_literal")),
]

# calibration -------------------------------------------------------------------------------------


def R(session: str, case: str, rater: str, **changes) -> dict:
    row = {"session_id": session, "session_date": f"{MONTH}-13", "queue": "hate_speech", "case_id": case,
           "rater_id": rater, "rater_role": "auditor", "action": "remove", "policy": "HS.1"}
    row.update(changes)
    return row


def G(session: str, case: str, **changes) -> dict:
    row = {"session_id": session, "case_id": case, "gold_action": "remove", "gold_policy": "HS.1"}
    row.update(changes)
    return row


RATINGS = f"calibration/{MONTH}/ratings.csv"
GOLD = f"calibration/{MONTH}/gold.csv"


def appended(rel: str, rows_fn: Callable[[Path], list[dict]], rule: str | tuple[str, ...] | None,
             bad: tuple[int, ...] | None = None) -> Callable[[Path], Built]:
    """Rows appended to a base file; `bad` = positions among them that must be quarantined
    (default: all when a rule is given)."""
    def build(raw: Path) -> Built:
        numbers = append_rows(raw / rel, rows_fn(raw))
        built = Built(files=[rel])
        if rule:
            picked = numbers if bad is None else [numbers[i] for i in bad]
            built.expect(rel, picked, *(rule if isinstance(rule, tuple) else (rule,)))
        return built
    return build


def _first(raw: Path, rel: str) -> dict:
    return read_rows(raw / rel)[0]


def _ratings_duplicate(raw: Path) -> list[dict]:
    return [dict(_first(raw, RATINGS))]


def _pcodes(raw: Path) -> Built:
    """A calibration session coded with the organisation's own codes P1…P5 (item 5)."""
    ratings, gold = [], []
    for c in range(1, 6):
        code = f"P{c}"
        gold.append(G("FC-PCODES", f"pc-{c}", gold_action="remove", gold_policy=code))
        for r in range(1, 5):
            ratings.append(R("FC-PCODES", f"pc-{c}", f"AUD-0{r}", policy=code if r != 4 else "P1"))
    write_rows(raw / f"calibration/{MONTH}/ratings_pcodes.csv", ratings, columns=RATING_COLUMNS)
    write_rows(raw / f"calibration/{MONTH}/gold_pcodes.csv", gold, columns=GOLD_COLUMNS)
    return Built(files=[f"calibration/{MONTH}/ratings_pcodes.csv", f"calibration/{MONTH}/gold_pcodes.csv"])


def _ratings_latin1(raw: Path) -> Built:
    rel = f"calibration/{MONTH}/ratings_latin1.csv"
    rows = [R("FC-L1", "c1", "AUD-01"), R("FC-L1", "c1", "AUD-02", session_id="FC-Zürich")]
    write_rows(raw / rel, rows, columns=RATING_COLUMNS, encoding="latin-1")
    return Built(files=[rel]).expect(rel, 2, "line:invalid_utf8")


def _ratings_missing_column(raw: Path) -> Built:
    rel = f"calibration/{MONTH}/ratings_no_rater.csv"
    write_rows(raw / rel, [R("FC-NR", "c1", "AUD-01")], columns=[c for c in RATING_COLUMNS if c != "rater_id"])
    return Built(files=[rel], error=(re.escape(rel), r"\brater_id\b"))


def _ratings_ragged(raw: Path) -> Built:
    rel = f"calibration/{MONTH}/ratings_ragged.csv"
    rows = [R("FC-RAG", f"c{i}", "AUD-01") for i in range(1, 5)]
    line = "FC-RAG,2026-03-13,hate_speech,c9"
    lines_file(raw, rel, RATING_COLUMNS, rows, {2: line})
    built = Built(files=[rel]).expect(rel, 2, "line:malformed")
    built.lines[(rel, 2)] = line
    return built


def _ratings_header_only(raw: Path) -> Built:
    rel = f"calibration/{MONTH}/ratings_empty.csv"
    (raw / rel).write_text(",".join(RATING_COLUMNS) + "\n", encoding="utf-8")
    return Built(files=[rel])


def _gold_empty(raw: Path) -> Built:
    rel = f"calibration/{MONTH}/gold_extra.csv"
    (raw / rel).write_bytes(b"")
    return Built(files=[rel], error=(re.escape(rel),))


def _unknown_policy_ratings(raw: Path) -> Built:
    write_catalogue(raw)
    return appended(RATINGS, lambda r: [R("FC-UNK", "c1", "AUD-01", policy="QQ.7")], "policy:unknown_policy")(raw)


CALIBRATION_CASES = [
    Case("ratings_unknown_role", "calibration_ratings", "quarantined", appended(
        RATINGS, lambda r: [R("FC-ROLE", "c1", "AUD-01", rater_role="lead")], "rater_role:allowed_values")),
    Case("ratings_bad_date", "calibration_ratings", "quarantined", appended(
        RATINGS, lambda r: [R("FC-DATE", "c1", "AUD-01", session_date="13/03/2026")], "session_date:date")),
    Case("ratings_duplicate_key", "calibration_ratings", "quarantined", appended(
        RATINGS, _ratings_duplicate, "session_id+case_id+rater_id:duplicate")),
    Case("ratings_own_policy_codes", "calibration_ratings", "accepted", _pcodes, modes=("gate", "month"), publishes=True,
         after="pcodes_session_published"),
    Case("ratings_latin1", "calibration_ratings", "quarantined", _ratings_latin1),
    Case("ratings_missing_column", "calibration_ratings", "rejected", _ratings_missing_column),
    Case("ratings_short_line", "calibration_ratings", "quarantined", _ratings_ragged),
    Case("ratings_header_only", "calibration_ratings", "accepted", _ratings_header_only),
    Case("ratings_null_literal", "calibration_ratings", "quarantined", appended(
        RATINGS, lambda r: [R("FC-NULL", "c1", "None")], "rater_id:null_literal")),
    Case("policies_unknown_code_in_ratings", "policies", "quarantined", _unknown_policy_ratings, modes=("month",), publishes=True),
    Case("gold_approve_with_policy", "calibration_gold", "quarantined", appended(
        GOLD, lambda r: [G("FC-GAP", "c1", gold_action="approve", gold_policy="HS.1")], "gold_approve_iff_policy_none")),
    Case("gold_duplicate", "calibration_gold", "quarantined", appended(
        GOLD, lambda r: [dict(_first(r, GOLD))], "session_id+case_id:duplicate"), modes=("gate", "month"), publishes=False),
    Case("gold_empty_file", "calibration_gold", "rejected", _gold_empty),
    Case("gold_null_literal", "calibration_gold", "quarantined", appended(
        GOLD, lambda r: [G("FC-GNULL", "c1", gold_action="null")], "gold_action:null_literal")),
    Case("gold_unknown_action", "calibration_gold", "quarantined", appended(
        GOLD, lambda r: [G("FC-GACT", "c1", gold_action="delete")], "gold_action:allowed_values")),
    Case("calibration_ignored_xlsx", "calibration_ratings", "ignored", _ignored(f"calibration/{MONTH}/ratings.xlsx", b"PK\x03\x04"),
         modes=("month",), publishes=True),
]

# roster, policy changes, experiments, assignments, catalogue --------------------------------------

ROSTER = "roster/roster.csv"
PCS = "policy_changes/policy_changes.csv"
EXPS = "experiments/experiments.csv"
ASSIGN = "experiments/assignments.csv"


def RO(mod: str, **changes) -> dict:
    row = {"moderator_id": mod, "site": "Dublin", "team_type": "in_house", "hire_date": "2024-05-01",
           "language": "en", "status": "active"}
    row.update(changes)
    return row


def PC(cid: str, **changes) -> dict:
    row = {"change_id": cid, "policy": "HS.1", "effective_date": "2026-03-05", "change_type": "clarification",
           "summary": "Clarifies quoted slurs", "queues": "hate_speech"}
    row.update(changes)
    return row


def EX(eid: str, **changes) -> dict:
    row = {"experiment_id": eid, "name": "Fault case", "hypothesis": "none", "owner": "qa",
           "start_date": "2026-02-01", "end_date": "2026-03-31", "primary_metric": "accuracy", "treatment_share": "0.5"}
    row.update(changes)
    return row


def _roster_all_unknown(raw: Path) -> Built:
    rows = read_rows(raw / ROSTER)
    for r in rows:
        r["status"] = "on_leave"
    write_rows(raw / ROSTER, rows, columns=ROSTER_COLUMNS)
    return Built(files=[ROSTER]).expect(ROSTER, range(1, len(rows) + 1), "status:allowed_values")


def _roster_parquet(raw: Path) -> Built:
    rows = read_rows(raw / ROSTER)
    (raw / ROSTER).unlink()
    rel = "roster/roster.parquet"
    write_rows(raw / rel, rows, columns=ROSTER_COLUMNS)
    return Built(files=[rel])


def _roster_bom_crlf(raw: Path) -> Built:
    write_rows(raw / ROSTER, read_rows(raw / ROSTER), columns=ROSTER_COLUMNS, bom=True, newline="\r\n")
    return Built(files=[ROSTER])


def _missing(rel: str, columns: list[str], drop: str) -> Callable[[Path], Built]:
    def build(raw: Path) -> Built:
        write_rows(raw / rel, read_rows(raw / rel), columns=[c for c in columns if c != drop])
        return Built(files=[rel], error=(re.escape(rel), rf"\b{drop}\b"))
    return build


def _policies_duplicate(raw: Path) -> Built:
    rel, rows = write_catalogue(raw, [{"policy": "HS.1", "name": "Hate speech again", "queues": "*"}])
    return Built(files=[rel]).expect(rel, rows, "policy:duplicate")


def _policies_missing_column(raw: Path) -> Built:
    rel, _ = write_catalogue(raw, drop="policy")
    return Built(files=[rel], error=(re.escape(rel), r"\bpolicy\b"))


OTHER_CASES = [
    Case("roster_future_hire_date", "roster", "quarantined", appended(
        ROSTER, lambda r: [RO("MOD-FUTURE", hire_date="2031-01-01")], "hire_date:in_future"), modes=("gate", "month"), publishes=True),
    Case("roster_unknown_status", "roster", "quarantined", appended(
        ROSTER, lambda r: [RO("MOD-STATUS", status="on_leave")], "status:allowed_values")),
    Case("roster_every_status_unknown", "roster", "quarantined", _roster_all_unknown, modes=("gate", "month"), publishes=False,
         after="no_step_crashed"),
    Case("roster_duplicate_id", "roster", "quarantined", appended(
        ROSTER, lambda r: [dict(_first(r, ROSTER))], "moderator_id:duplicate")),
    Case("roster_bad_date", "roster", "quarantined", appended(
        ROSTER, lambda r: [RO("MOD-DATE", hire_date="2023-13-45")], "hire_date:date")),
    Case("roster_id_trailing_space", "roster", "quarantined", appended(
        ROSTER, lambda r: [dict(_first(r, ROSTER), moderator_id=_first(r, ROSTER)["moderator_id"] + " ")], "moderator_id:")),
    Case("roster_parquet", "roster", "accepted", _roster_parquet),
    Case("roster_bom_crlf", "roster", "accepted", _roster_bom_crlf),
    Case("roster_missing_column", "roster", "rejected", _missing(ROSTER, ROSTER_COLUMNS, "hire_date")),
    Case("roster_ignored_backup", "roster", "ignored", _ignored("roster/roster.csv.bak"), modes=("month",), publishes=True),
    Case("policy_changes_unknown_type", "policy_changes", "quarantined", appended(
        PCS, lambda r: [PC("PC-TYPE", change_type="rewrite")], "change_type:allowed_values"), modes=("gate", "month"), publishes=False),
    Case("policy_changes_queue_list", "policy_changes", "quarantined", appended(
        PCS, lambda r: [PC("PC-Q", queues="Hate Speech;spam")], "queues:pattern")),
    Case("policy_changes_bad_date", "policy_changes", "quarantined", appended(
        PCS, lambda r: [PC("PC-D", effective_date="5 March 2026")], "effective_date:date")),
    Case("policy_changes_duplicate", "policy_changes", "quarantined", appended(
        PCS, lambda r: [dict(_first(r, PCS))], "change_id:duplicate")),
    Case("policy_changes_own_code", "policy_changes", "accepted", appended(
        PCS, lambda r: [PC("PC-OWN", policy="hate_speech.tier2")], None)),
    Case("policy_changes_missing_column", "policy_changes", "rejected", _missing(PCS, PC_COLUMNS, "effective_date")),
    Case("experiments_end_before_start", "experiments", "quarantined", appended(
        EXPS, lambda r: [EX("EXP-REV", start_date="2026-03-31", end_date="2026-02-01")], "end_after_start"),
         modes=("gate", "month"), publishes=False),
    Case("experiments_zero_share", "experiments", "quarantined", appended(
        EXPS, lambda r: [EX("EXP-ZERO", treatment_share="0")], "treatment_share:min")),
    Case("experiments_infinite_share", "experiments", "quarantined", appended(
        EXPS, lambda r: [EX("EXP-INF", treatment_share="inf")], "treatment_share:non_finite")),
    Case("experiments_unknown_metric", "experiments", "quarantined", appended(
        EXPS, lambda r: [EX("EXP-MET", primary_metric="revenue")], "primary_metric:allowed_values")),
    Case("experiments_duplicate", "experiments", "quarantined", appended(
        EXPS, lambda r: [dict(_first(r, EXPS))], "experiment_id:duplicate")),
    Case("assignments_unknown_experiment", "assignments", "quarantined", appended(
        ASSIGN, lambda r: [{"experiment_id": "EXP-99", "moderator_id": "MOD-1001", "arm": "control"}],
        "experiment_id:unknown_experiment"), modes=("month",), publishes=True),
    Case("assignments_unknown_arm", "assignments", "quarantined", appended(
        ASSIGN, lambda r: [{"experiment_id": "EXP-01", "moderator_id": "MOD-NEW", "arm": "placebo"}], "arm:allowed_values")),
    Case("assignments_duplicate", "assignments", "quarantined", appended(
        ASSIGN, lambda r: [dict(_first(r, ASSIGN))], "experiment_id+moderator_id:duplicate")),
    Case("policies_duplicate_code", "policies", "quarantined", _policies_duplicate, modes=("month",), publishes=True),
    Case("policies_missing_column", "policies", "rejected", _policies_missing_column, modes=("month",), publishes=False),
    Case("disputes_ignored_folder", "disputes", "ignored", _ignored("disputes/march/disputes.csv",
                                                                    b"dispute_id,audit_id\nX,Y\n"), modes=("month",), publishes=True),
]

CASES = [*AUDIT_CASES, *DISPUTE_CASES, *CALIBRATION_CASES, *OTHER_CASES]
assert len({c.name for c in CASES}) == len(CASES), "case names are unique"


def by_mode(mode: str) -> list[Case]:
    return [c for c in CASES if mode in c.modes]


def raw_record_holds(raw_record: str, line: str) -> bool:
    """A malformed line's `raw_record` is the line (as JSON text, or inside a JSON object)."""
    try:
        value = json.loads(raw_record)
    except (TypeError, ValueError):
        return line.strip() in str(raw_record)
    if isinstance(value, str):
        return value.strip("\r\n") == line
    if isinstance(value, dict):
        return any(isinstance(v, str) and v.strip("\r\n") == line for v in value.values())
    return line in str(value)
