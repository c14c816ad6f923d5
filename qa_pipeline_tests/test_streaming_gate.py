"""The streaming gate: chunk by chunk, the same clean rows, quarantine and file log as run_gate."""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import subprocess
import sys
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from qa_pipeline.domain.streaming_gate import (
    GateStream,
    RawFileReader,
    clean_schema,
    key_schema,
    raw_records,
    stream_gate,
)
from qa_pipeline.domain.validation import (
    AUDITS,
    ROSTER,
    RawInputError,
    raw_record_json,
    run_gate,
)
from qa_pipeline.resources.raw_store import RawStore, read_raw_file
from qa_pipeline.sample_data import SampleSpec, generate
from qa_pipeline_tests.conftest import VALID_AUDIT, audit, python_peak, write_csv

MARCH = date(2026, 3, 1)
FEBRUARY = date(2026, 2, 1)
DUPLICATE = "audit_id:duplicate"

ERROR_ROW = dict(action_moderator="approve", policy_moderator="NONE", error_severity="major",
                 root_cause="policy_knowledge")

# one row per row-local rule, a few rows breaking several rules, valid rows between them
BAD_ROWS = [
    audit(audit_id=""), audit(audit_id="   "), audit(audited_at="yesterday"), audit(audited_at=""),
    audit(audited_at="2026-04-02T00:00:00Z"), audit(decision_at="10/03/2026"),
    audit(decision_at="2026-03-11T00:00:00Z"), audit(content_id=""), audit(content_type="gif"),
    audit(queue="Hate Speech"), audit(site=" "), audit(team_type="vendor"), audit(market=""),
    audit(moderator_id=""), audit(auditor_id="MOD-1"), audit(action_moderator="delete"),
    audit(policy_moderator="hs1"), audit(policy_auditor=""),
    audit(action_moderator="approve", error_severity="minor", root_cause="process"),
    audit(error_severity="severe"), audit(error_severity="minor"),
    audit(**{**ERROR_ROW, "root_cause": "bad luck"}), audit(**{**ERROR_ROW, "root_cause": ""}),
    audit(root_cause="tooling"), audit(handle_time_s="fast"), audit(handle_time_s="-1"),
    audit(sampling_weight="0"), audit(sampling_weight="n/a"), audit(sampling_weight=""),
    # several rules at once, the folder month among them
    audit(queue="?", market="", audited_at="2026-02-27T00:00:00Z", decision_at="2026-02-20T00:00:00Z"),
    audit(content_type="gif", handle_time_s="x", sampling_weight="-1", auditor_comment="ünïcode \"quoted\", comma"),
]


def _crafted(tmp_path: Path) -> tuple[Path, list[Path]]:
    """Two audit files of March without a repeated id: rule-breaking rows among valid ones."""
    root = tmp_path / "raw"
    folder = root / "audits" / "2026-03"
    rows_a, rows_b = [], []
    for i, bad in enumerate(BAD_ROWS):
        # the sampling_weight rows go where the column is
        target = rows_a if i % 2 == 0 or bad["sampling_weight"] != VALID_AUDIT["sampling_weight"] else rows_b
        target.append(audit(audit_id=f"OK-{i}", auditor_comment=f"fine {i}"))
        target.append({**bad, "audit_id": bad["audit_id"] if bad["audit_id"] != "A-1" else f"BAD-{i}"})
    rows_b.append(audit(audit_id="OK-last", root_cause=None, auditor_comment=None, handle_time_s=None))
    # the second file lacks the optional sampling_weight column: 1.0 for its rows
    write_csv(folder / "b_vendor.csv", rows_b, [c for c in VALID_AUDIT if c != "sampling_weight"])
    write_csv(folder / "a_in_house.csv", rows_a, list(VALID_AUDIT))
    return root, sorted(folder.iterdir())


def _drain(stream: GateStream) -> tuple[pd.DataFrame, pd.DataFrame, pa.Table, list]:
    chunks = list(stream)
    clean = pa.concat_tables([c.clean for c in chunks]).to_pandas() if chunks else None
    quarantined = [c.quarantine for c in chunks if len(c.quarantine)]
    quarantine = pd.concat(quarantined, ignore_index=True) if quarantined else chunks[0].quarantine
    keys = pa.Table.from_batches([c.keys for c in chunks])
    return clean, quarantine, keys, chunks


def _assert_same_as_run_gate(root: Path, paths: list[Path], month: date, chunk_rows, spec=AUDITS):
    expected = run_gate([read_raw_file(p, root) for p in paths], spec, month)
    stream = stream_gate(paths, root, spec, month, chunk_rows=chunk_rows)
    clean, quarantine, keys, chunks = _drain(stream)
    pd.testing.assert_frame_equal(clean, expected.clean)
    pd.testing.assert_frame_equal(quarantine, expected.quarantine)
    pd.testing.assert_frame_equal(stream.files, expected.files)
    if chunk_rows is not None:
        assert max(c.rows_read for c in chunks) <= chunk_rows
    return expected, stream, keys, chunks


@pytest.mark.parametrize("chunk_rows", [1, 7, 1000, None])
def test_crafted_files_stream_to_exactly_what_run_gate_gives(tmp_path, chunk_rows):
    root, paths = _crafted(tmp_path)
    expected, stream, keys, chunks = _assert_same_as_run_gate(root, paths, MARCH, chunk_rows)
    assert len(expected.quarantine) == len(BAD_ROWS)  # every crafted bad row, each once
    assert (expected.quarantine["rules"].str.contains("; ")).sum() >= 2
    assert "audited_at:in_folder_month" in set(expected.quarantine["rules"].str.split("; ").explode())
    # the file without sampling_weight defaults it, per file
    vendor = expected.clean[expected.clean.source_file.str.endswith("b_vendor.csv")]
    assert len(vendor) and (vendor.sampling_weight == 1.0).all()
    # chunks never span files and follow file-name order, then row order
    order = [(c.source_file, c.first_row) for c in chunks]
    assert order == sorted(order)


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("generated") / "raw"
    generate(SampleSpec(months=["2026-02"], audits_per_month=3000, seed=3), out)
    return out


def _generated_paths(root: Path) -> list[Path]:
    return RawStore(raw_dir=str(root)).month_files("audits", FEBRUARY)


def _without_rule(quarantine: pd.DataFrame, rule: str) -> pd.DataFrame:
    """run_gate's quarantine as it reads without one rule: rows quarantined only by it leave."""
    parts = quarantine["rules"].str.split("; ")
    keep = parts.map(lambda r: r != [rule])
    out = quarantine[keep].copy()
    for i in out.index:
        rules = [r for r in parts[i] if r != rule]
        reasons = [t for t in quarantine.at[i, "reason"].split("; ") if "repeats an earlier row" not in t]
        out.loc[i, ["rule", "rules", "reason"]] = [rules[0], "; ".join(rules), "; ".join(reasons)]
    return out.reset_index(drop=True)


@pytest.mark.parametrize("chunk_rows", [1000, None])
def test_a_generated_month_streams_to_what_run_gate_gives_without_the_duplicate_rule(generated, chunk_rows):
    paths = _generated_paths(generated)
    expected = run_gate([read_raw_file(p, generated) for p in paths], AUDITS, FEBRUARY)
    stream = stream_gate(paths, generated, AUDITS, FEBRUARY, chunk_rows=chunk_rows)
    clean, quarantine, keys, chunks = _drain(stream)
    # the generator repeats one audit id: run_gate quarantines the later copy, the stream leaves
    # it to the cross-row step (its key is there, marked clean)
    dup_only = expected.quarantine[expected.quarantine["rules"] == DUPLICATE]
    assert len(dup_only) == 1
    at = list(zip(dup_only.source_file, dup_only.row_number, strict=True))
    in_stream = clean.set_index(["source_file", "source_row"]).index.isin(at)
    assert in_stream.sum() == 1
    pd.testing.assert_frame_equal(clean[~in_stream].reset_index(drop=True), expected.clean)
    pd.testing.assert_frame_equal(quarantine, _without_rule(expected.quarantine, DUPLICATE))
    assert len(quarantine) >= 5
    log = stream.files
    pd.testing.assert_frame_equal(log.drop(columns=["rows_clean", "rows_quarantined"]),
                                  expected.files.drop(columns=["rows_clean", "rows_quarantined"]))
    # the keys show the repeat, first read first
    k = keys.to_pandas()
    repeated = k[k.audit_id == clean.loc[in_stream, "audit_id"].iloc[0]].sort_values("read_order")
    assert len(repeated) == 2 and repeated.is_clean.all()
    assert (repeated.source_file.iloc[-1], repeated.source_row.iloc[-1]) == at[0]


@pytest.mark.parametrize("chunk_rows", [1, 7])
def test_an_excerpt_of_the_generated_month_in_tiny_chunks(generated, tmp_path, chunk_rows):
    """Every quarantined row of the generated month and the rows around them, one file per
    generated file, through chunks of 1 and 7 rows."""
    paths = _generated_paths(generated)
    expected = run_gate([read_raw_file(p, generated) for p in paths], AUDITS, FEBRUARY)
    root = tmp_path / "raw"
    excerpt = []
    for path in paths:
        rel = path.relative_to(generated).as_posix()
        with path.open(encoding="utf-8", newline="") as fh:
            rows = list(csv.reader(fh))
        bad = set(expected.quarantine.row_number[(expected.quarantine.source_file == rel)
                                                 & (expected.quarantine.rules != DUPLICATE)])
        keep = sorted({n + d for n in bad for d in (-1, 0, 1)} | set(range(1, 40)))
        out = root / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w", encoding="utf-8", newline="") as fh:
            csv.writer(fh).writerows([rows[0], *(rows[n] for n in keep if n < len(rows))])
        excerpt.append(out)
    got, *_ = _assert_same_as_run_gate(root, excerpt, FEBRUARY, chunk_rows)
    assert len(got.quarantine) >= 5 and len(got.clean) > 60


def test_rows_read_equal_clean_plus_quarantined_and_row_numbers_are_one_based(generated):
    paths = _generated_paths(generated)
    stream = stream_gate(paths, generated, AUDITS, FEBRUARY, chunk_rows=500)
    clean, quarantine, keys, chunks = _drain(stream)
    log = stream.files.set_index("source_file")
    for path in paths:
        rel = path.relative_to(generated).as_posix()
        with path.open(encoding="utf-8", newline="") as fh:
            data_rows = sum(1 for _ in csv.reader(fh)) - 1
        assert log.loc[rel, "rows_read"] == data_rows
        assert log.loc[rel, "rows_clean"] + log.loc[rel, "rows_quarantined"] == data_rows
        assert (clean.source_file == rel).sum() == log.loc[rel, "rows_clean"]
        assert (quarantine.source_file == rel).sum() == log.loc[rel, "rows_quarantined"]
        k = keys.filter(pc.equal(keys["source_file"], rel))
        assert k["source_row"].to_pylist() == list(range(1, data_rows + 1))
        assert pc.sum(k["is_clean"]).as_py() == log.loc[rel, "rows_clean"]
        got = sorted([*clean.source_row[clean.source_file == rel],
                      *quarantine.row_number[quarantine.source_file == rel]])
        assert got == list(range(1, data_rows + 1))
    assert keys["read_order"].to_pylist() == list(range(1, keys.num_rows + 1))
    assert keys.schema == key_schema(AUDITS)
    assert all(c.clean.schema == clean_schema(AUDITS) for c in chunks)
    # a quarantined row's number points at the row in the file (header not counted)
    q = quarantine.iloc[0]
    frame = pd.read_csv(generated / q.source_file, dtype="str", keep_default_na=False)
    assert json.loads(q.raw_record)["audit_id"] == frame.loc[q.row_number - 1, "audit_id"]


def test_sha256_is_that_of_the_file_bytes(generated, tmp_path):
    paths = _generated_paths(generated)
    stream = stream_gate(paths, generated, AUDITS, FEBRUARY, chunk_rows=1000)
    _drain(stream)
    for row in stream.files.itertuples():
        assert row.file_sha256 == hashlib.sha256((generated / row.source_file).read_bytes()).hexdigest()
    # a gzipped CSV is read through, its own (compressed) bytes hashed
    root = tmp_path / "raw"
    gz = root / "audits" / "2026-02" / "audits.csv.gz"
    gz.parent.mkdir(parents=True)
    gz.write_bytes(gzip.compress(paths[0].read_bytes()))
    stream = stream_gate([gz], root, AUDITS, FEBRUARY, chunk_rows=700)
    clean, quarantine, _, _ = _drain(stream)
    assert stream.files.file_sha256.iloc[0] == hashlib.sha256(gz.read_bytes()).hexdigest()
    expected = run_gate([read_raw_file(gz, root)], AUDITS, FEBRUARY)
    assert expected.files.file_sha256.iloc[0] == stream.files.file_sha256.iloc[0]
    assert len(clean) + len(quarantine) == expected.rows_read > 1000


def test_raw_records_are_the_quarantine_records(generated):
    paths = _generated_paths(generated)
    expected = run_gate([read_raw_file(p, generated) for p in paths], AUDITS, FEBRUARY)
    q = expected.quarantine
    assert len(q) >= 5
    wanted = {f: g.row_number.to_numpy() for f, g in q.groupby("source_file")}
    got = raw_records(paths, generated, wanted)
    assert got == {(f, n): r for f, n, r in zip(q.source_file, q.row_number, q.raw_record, strict=True)}
    # any row, clean ones too, reads as read_raw_file reads it; the last row of a file as well
    rel = paths[1].relative_to(generated).as_posix()
    frame = read_raw_file(paths[1], generated).frame
    rows = np.array([1, 2, 777, len(frame)])
    got = raw_records(paths, generated, {rel: rows})
    assert [got[(rel, int(n))] for n in rows] == raw_record_json(frame, rows - 1)
    # checked against the file the gate read, and never past its end
    with pytest.raises(RawInputError, match="changed since it was validated"):
        raw_records(paths, generated, {rel: [1]}, expected_sha256={rel: "0" * 64})
    sha = hashlib.sha256(paths[1].read_bytes()).hexdigest()
    checked = raw_records(paths, generated, {rel: [3]}, expected_sha256={rel: sha})
    assert checked == {(rel, 3): raw_record_json(frame, [2])[0]}
    with pytest.raises(RawInputError, match="row 999999 was asked for"):
        raw_records(paths, generated, {rel: [5, 999_999]})


def _parquet_month(tmp_path: Path) -> tuple[Path, list[Path]]:
    rows = [audit(audit_id=f"P-{i}") for i in range(9)]
    rows[2] = audit(audit_id="P-2", handle_time_s="-3")
    rows[4] = audit(audit_id="P-4", audited_at="2026-04-01T00:00:00Z")
    rows[6] = audit(audit_id="P-6", auditor_comment=None, root_cause=None, handle_time_s=None)
    rows[7] = audit(audit_id="P-7", queue="Bad Queue", decision_at="2026-03-11T00:00:00Z")
    frame = pd.DataFrame(rows)
    frame["audited_at"] = pd.to_datetime(frame["audited_at"], utc=True)
    frame["decision_at"] = pd.to_datetime(frame["decision_at"]).dt.tz_localize(None)  # naive = UTC
    frame["handle_time_s"] = pd.to_numeric(frame["handle_time_s"].replace("", None)).astype(float)
    frame["sampling_weight"] = frame["sampling_weight"].astype(float)
    frame["auditor_comment"] = frame["auditor_comment"].replace("", None)
    # extra integer columns with a null: a pandas Int64 column reads back as Int64, a plain
    # Parquet int64 column as float64 for the whole file (so 3.0 also in a chunk without the null)
    frame["batch_no"] = pd.array([1, 2, 3, None, 5, 6, 7, 8, 9], dtype="Int64")
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.append_column("plain_int", pa.array([1, 2, 3, None, 5, 6, 7, 8, 9], pa.int64()))
    root = tmp_path / "raw"
    folder = root / "audits" / "2026-03"
    folder.mkdir(parents=True)
    pq.write_table(table, folder / "a.parquet", row_group_size=4)
    write_csv(folder / "b.csv", [audit(audit_id="C-1"), audit(audit_id="C-2", market="")])
    return root, sorted(folder.iterdir())


@pytest.mark.parametrize("chunk_rows", [1, 2, 5, None])
def test_a_parquet_file_streams_like_run_gate_reads_it(tmp_path, chunk_rows):
    root, paths = _parquet_month(tmp_path)
    expected, stream, _, chunks = _assert_same_as_run_gate(root, paths, MARCH, chunk_rows)
    assert expected.quarantine.source_file.tolist() == ["audits/2026-03/a.parquet"] * 3 + ["audits/2026-03/b.csv"]
    assert expected.clean.decision_at.iloc[0] == pd.Timestamp("2026-03-09T08:30:00Z")
    records = [json.loads(r) for r in expected.quarantine.raw_record[:3]]
    assert records[0]["handle_time_s"] == -3.0
    assert '"batch_no": 3,' in expected.quarantine.raw_record[0]
    assert '"plain_int": 3.0}' in expected.quarantine.raw_record[0]
    assert records[1]["audited_at"] == "2026-04-01 00:00:00+00:00"
    parquet = paths[0]
    rel = parquet.relative_to(root).as_posix()
    assert stream.files.file_sha256.iloc[0] == hashlib.sha256(parquet.read_bytes()).hexdigest()
    q = expected.quarantine[expected.quarantine.source_file == rel]
    assert raw_records(paths, root, {rel: q.row_number.to_numpy()}) == dict(
        zip(zip(q.source_file, q.row_number, strict=True), q.raw_record, strict=True))
    # a row in a later row group only (the reader skips the groups before it)
    frame = read_raw_file(parquet, root).frame
    assert raw_records(paths, root, {rel: [9]})[(rel, 9)] == raw_record_json(frame, [8])[0]


def test_a_missing_column_rejects_the_file_before_any_chunk(tmp_path):
    root = tmp_path / "raw"
    folder = root / "audits" / "2026-03"
    write_csv(folder / "a.csv", [audit(audit_id=f"A-{i}") for i in range(5)])
    write_csv(folder / "z_short.csv", [audit()], [c for c in VALID_AUDIT if c != "queue"])
    stream = iter(stream_gate(sorted(folder.iterdir()), root, AUDITS, MARCH, chunk_rows=1))
    with pytest.raises(RawInputError, match=r"audits/2026-03/z_short\.csv: required column\(s\) missing: queue"):
        next(stream)


def test_an_unreadable_file_is_rejected_by_name(tmp_path):
    root = tmp_path / "raw"
    folder = root / "audits" / "2026-03"
    folder.mkdir(parents=True)
    (folder / "broken.parquet").write_bytes(b"this is not parquet")
    with pytest.raises(RawInputError, match=r"audits/2026-03/broken\.parquet: cannot be read as PARQUET"):
        list(stream_gate([folder / "broken.parquet"], root, AUDITS, MARCH))
    (folder / "empty.csv").write_bytes(b"")
    with pytest.raises(RawInputError, match=r"audits/2026-03/empty\.csv: cannot be read as CSV: No columns to parse"):
        list(stream_gate([folder / "empty.csv"], root, AUDITS, MARCH))
    with pytest.raises(RawInputError, match=r"audits/2026-03/empty\.csv: cannot be read as CSV: No columns to parse"):
        read_raw_file(folder / "empty.csv", root)
    # a row that breaks the CSV far into the file (a quote left open): that line is quarantined,
    # not the file, by both readers, at its row number
    good = write_csv(folder / "ragged.csv", [audit(audit_id=f"A-{i}") for i in range(20_000)], list(VALID_AUDIT))
    with good.open("a", encoding="utf-8") as fh:
        fh.write('"A-x,2026-03-10T12:00:00Z\n')
    expected, stream, _, _ = _assert_same_as_run_gate(root, [good], MARCH, 1000)
    q = expected.quarantine
    assert q[["row_number", "rule", "raw_record"]].values.tolist() == [
        [20_001, "line:malformed", '"\\"A-x,2026-03-10T12:00:00Z"']]
    assert stream.files[["rows_read", "rows_clean", "rows_quarantined"]].values.tolist() == [[20_001, 20_000, 1]]


def test_the_reader_reads_a_csv_exactly_as_read_raw_file(tmp_path):
    root = tmp_path / "raw"
    path = root / "roster" / "roster.csv"
    path.parent.mkdir(parents=True)
    text = ("\ufeff moderator_id ,site,site,,team_type,hire_date,language,status\r\n"
            'M1,"Dublin, IE",x,y,in_house,2024-01-05,"",active\r\n'
            "\r\n"
            'M2,"multi\nline",,,bpo,2024-02-01,en,"on_leave"\r\n'
            "M3,Ünïcode,NA,null,bpo,2024-02-01,NaN,inactive\r\n")
    path.write_bytes(text.encode("utf-8"))
    expected = read_raw_file(path, root)
    reader = RawFileReader(path, root)
    got = reader.to_frame(pa.Table.from_batches(list(reader.batches())))
    pd.testing.assert_frame_equal(got, expected.frame)
    assert reader.columns() == list(expected.frame.columns)
    assert reader.sha256 == expected.sha256 and reader.rows == 3
    _assert_same_as_run_gate(root, [path], MARCH, 1, spec=ROSTER)


def test_rows_breaking_a_row_local_rule_and_the_duplicate_rule_list_the_row_local_rule_first(tmp_path):
    root = tmp_path / "raw"
    folder = root / "audits" / "2026-03"
    write_csv(folder / "a.csv", [audit(audit_id="A-1"), audit(audit_id="A-1", queue="?")])
    gate = run_gate(RawStore(raw_dir=str(root)).read_month("audits", MARCH), AUDITS, MARCH)
    q = gate.quarantine.iloc[0]
    assert (q["rule"], q["rules"]) == ("queue:pattern", f"queue:pattern; {DUPLICATE}")
    assert q["reason"].startswith("queue must match") and "repeats an earlier row" in q["reason"]
    # the stream gives the row-local part, and the key with which SQL finds the repeat
    clean, quarantine, keys, _ = _drain(stream_gate(sorted(folder.iterdir()), root, AUDITS, MARCH))
    assert quarantine[["rule", "rules", "row_number"]].values.tolist() == [["queue:pattern", "queue:pattern", 2]]
    assert keys.to_pydict() == {"audit_id": ["A-1", "A-1"], "source_file": ["audits/2026-03/a.csv"] * 2,
                                "source_row": [1, 2], "read_order": [1, 2], "is_clean": [True, False]}


def _big_month(generated: Path, out: Path, copies: int) -> Path:
    """The generated month's rows `copies` times over (fresh audit ids): one large CSV."""
    with (generated / "audits" / "2026-02" / "audits_2026-02_vendors.csv").open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1:]
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for k in range(copies):
            w.writerows([[f"{r[0]}-{k}", *r[1:]] for r in body])
    return out


@pytest.fixture(scope="module")
def big_month(generated, tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("big") / "raw"
    return root, _big_month(generated, root / "audits" / "2026-02" / "big.csv", copies=160)


def test_streaming_holds_a_chunk_not_the_file_python_allocations(big_month):
    root, path = big_month
    rows = {}

    def consume(chunk_rows):
        def run():
            n = 0
            for chunk in stream_gate([path], root, AUDITS, FEBRUARY, chunk_rows=chunk_rows):
                n += chunk.rows_read
            rows[chunk_rows] = n
        return run

    whole = python_peak(consume(None))
    chunked = python_peak(consume(50_000))
    assert rows[None] == rows[50_000] > 290_000
    assert whole > 15 * 2**20  # the whole file really is held: the ratio means something
    assert chunked < 0.4 * whole, (chunked / 2**20, whole / 2**20)


MEASURE = """
import json, sys, tracemalloc
from datetime import date
from pathlib import Path
import pyarrow as pa
from qa_pipeline.domain.streaming_gate import stream_gate
from qa_pipeline.domain.validation import AUDITS
root, path, chunk_rows = Path(sys.argv[1]), Path(sys.argv[2]), json.loads(sys.argv[3])
tracemalloc.start()
n = sum(c.rows_read for c in stream_gate([path], root, AUDITS, date(2026, 2, 1), chunk_rows=chunk_rows))
print(json.dumps({"rows": n, "python": tracemalloc.get_traced_memory()[1],
                  "arrow": pa.default_memory_pool().max_memory()}))
"""


def test_streaming_holds_a_chunk_not_the_file_arrow_memory(big_month):
    """Text columns live in Arrow buffers, which tracemalloc does not see: Arrow's own peak, each
    run in a fresh process."""
    root, path = big_month

    def measure(chunk_rows):
        out = subprocess.run([sys.executable, "-c", MEASURE, str(root), str(path), json.dumps(chunk_rows)],
                             capture_output=True, text=True, check=True, cwd=Path(__file__).parents[1])
        return json.loads(out.stdout.strip().splitlines()[-1])

    whole, chunked = measure(None), measure(50_000)
    assert whole["rows"] == chunked["rows"] > 290_000
    assert whole["arrow"] > 100 * 2**20
    assert chunked["arrow"] + chunked["python"] < 0.5 * (whole["arrow"] + whole["python"]), (chunked, whole)
