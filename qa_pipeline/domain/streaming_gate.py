"""The validation gate in bounded memory: raw files read in chunks, row-local rules per chunk.

`stream_gate` reads the files of one input and month in file-name order, each in chunks of at
most `chunk_rows` rows (CSV through pyarrow's streaming reader, every column as text and an empty
cell missing, exactly as `resources.raw_store.read_raw_file`, which uses the same reader; Parquet
by record batches), hashes each file's bytes while it reads them, and runs on every chunk the same
row-local rules as `validation.run_gate` (`validation.check_rows`: parsing, the pandera model, the
catalogue and references, the folder month). Per chunk it yields the clean rows (an Arrow table of
the typed columns + source_file + source_row), the quarantined rows (`QUARANTINE_COLUMNS`,
row-local rules only) and, for every row read, its key and whether it is clean, so that the
cross-row rules (a key repeated within the month, a key published for an earlier month) can run in
SQL over all rows read. After the last chunk, `GateStream.files` is the per-file log (rows read —
counted on their own, see below — and clean / quarantined before the cross-row rules, sha256 of
the file's bytes).

Before a CSV file is read, one pass of Python's `csv` module over its bytes (`scan_csv`) counts
its records — the `rows_read` of the identity check, independent of the reader whose rows the gate
splits —, finds the longest record (the reader's block is sized to hold it: a 3 MB comment is one
row like any other) and the records that are not rows of the header's width (a ragged line, a quote
left open: `line:malformed`) or not valid UTF-8 (`line:invalid_utf8`). Those are quarantined as
lines, in their places, not the file. A Parquet file's rows are counted from its metadata.

`raw_records` re-reads chosen rows of the files as the quarantine records them (`raw_record`),
for rows that only the cross-row rules quarantine.

Nothing here holds more than one chunk of a file, its quarantined rows, the bad lines of the
file being read, and the CSV reader's read-ahead (a few dozen blocks of 1 MiB — or of the longest
record — in Arrow's memory pool).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import sys
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from qa_pipeline.domain.validation import (
    LINE_COLUMNS,
    LINE_INVALID_UTF8,
    LINE_MALFORMED,
    READ,
    SOURCE_FILE,
    SOURCE_ROW,
    InputSpec,
    RawFile,
    RawInputError,
    check_columns,
    check_rows,
    empty_quarantine,
    ingest_rows,
    quarantine_rows,
    raw_record_json,
)

DEFAULT_CHUNK_ROWS = 100_000
CSV_BLOCK_BYTES = 1 << 20  # bytes pyarrow's CSV reader parses at a time (~5k audit rows)
MAX_CSV_BLOCK_BYTES = 1 << 30  # a record larger than this cannot be read (the file is rejected)
SCAN_BUFFER_BYTES = 1 << 20
MAX_BAD_LINES = 100_000
MAX_BAD_LINE_BYTES = 256 << 20
"""A file with more unusable lines than this is rejected whole: it is not a CSV of its header."""
IS_CLEAN = "is_clean"
READ_ORDER = "read_order"

# -- reading one raw file in chunks ---------------------------------------------------------------


def read_error(rel: str, path: Path, exc: BaseException) -> RawInputError:
    """The file is rejected whole, by name (the one wording of `read_raw_file` and the stream)."""
    if isinstance(exc, RawInputError):
        return exc
    text = str(exc).strip()
    if "Empty CSV file" in text:  # pyarrow's wording; what the reader says:
        text = "No columns to parse from file"
    reason = text.splitlines()[0] if text else type(exc).__name__
    return RawInputError(f"{rel}: cannot be read as {'PARQUET' if is_parquet(path) else 'CSV'}: {reason}")


def is_parquet(path: Path) -> bool:
    """`.parquet`, in any case; anything else the raw store lists is CSV (`.csv`, `.csv.gz`)."""
    return Path(path).name.lower().endswith(".parquet")


def is_gzip(path: Path) -> bool:
    return Path(path).name.lower().endswith(".gz")


CSV_CONVERT = pa_csv.ConvertOptions(
    # every column as text, an empty cell missing; UTF-8 is checked by the record scan
    # (`scan_csv`), line by line, not by the reader for the whole block
    null_values=[""], strings_can_be_null=True, default_column_type=pa.large_string(), check_utf8=False,
)


def _csv_names(raw_names: Sequence[str]) -> list[str]:
    """Column names: a blank one is `Unnamed: i`, a repeated one `x.1` (as pandas names them), then
    stripped of whitespace."""
    names = [n if n != "" else f"Unnamed: {i}" for i, n in enumerate(raw_names)]
    counts: defaultdict[str, int] = defaultdict(int)
    for i, col in enumerate(names):
        cur = counts[col]
        while cur > 0:
            counts[col] = cur + 1
            col = f"{col}.{cur}"
            cur = counts[col]
        names[i] = col
        counts[col] = cur + 1
    return [str(n).strip() for n in names]


@dataclass(frozen=True)
class BadLine:
    """A CSV record the reader cannot use as a row: quarantined as a line."""

    index: int  # 0-based among the file's data records
    rule: str  # LINE_MALFORMED or LINE_INVALID_UTF8
    reason: str
    text: str  # the record's text as in the file (invalid bytes replaced by U+FFFD)


@dataclass(frozen=True)
class CsvScan:
    """One pass of Python's `csv` module over a CSV file's bytes (decompressed for `.gz`): the
    count that the gate's identity check compares with the rows it split, and what the reader
    needs to read every record."""

    header: tuple[str, ...]
    records: int  # data records (the header and empty lines not counted)
    max_record_bytes: int
    bad_lines: tuple[BadLine, ...]
    sha256: str
    invalid_bytes: tuple[int, ...] = ()
    """Offsets (in the decompressed bytes) of the bytes that are not valid UTF-8: the reader is
    handed `?` in their place, so that it never fails on them (their lines are `line:invalid_utf8`)."""


class _Counted(io.RawIOBase):
    """The bytes of a stream, as read: hashed (when asked), counted, and checked as UTF-8.

    Invalid UTF-8 is found block by block (cut at a character boundary); the offsets of invalid
    bytes, in the stream's coordinates, wait in `invalid` for the record scan to claim them."""

    def __init__(self, fh, hasher=None, check_utf8: bool = False):
        super().__init__()
        self._fh = fh
        self._hasher = hasher
        self._check = check_utf8
        self._carry = b""
        self._carry_at = 0
        self.offset = 0
        self.invalid: deque[int] = deque()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self._fh.readinto(buffer) or 0
        view = memoryview(buffer)[:n]
        if self._hasher is not None:
            self._hasher.update(view)
        if self._check:
            self._utf8(bytes(view), final=n == 0)
        self.offset += n
        return n

    def _utf8(self, data: bytes, final: bool) -> None:
        buf = self._carry + data
        at = self._carry_at
        cut = len(buf)
        if not final:  # keep an unfinished character for the next block
            for k in range(1, min(4, len(buf)) + 1):
                b = buf[-k]
                if b < 0x80:
                    cut = len(buf) - k + 1
                    break
                if b >= 0xC0:
                    cut = len(buf) - k
                    break
        block, self._carry, self._carry_at = buf[:cut], buf[cut:], at + cut
        try:
            block.decode("utf-8")
        except UnicodeDecodeError:
            pos = 0
            for line in block.split(b"\n"):
                self._invalid_in(line, at + pos)
                pos += len(line) + 1

    def _invalid_in(self, line: bytes, at: int) -> None:
        pos = 0
        while pos < len(line):
            try:
                line[pos:].decode("utf-8")
                return
            except UnicodeDecodeError as exc:
                end = exc.start + max(1, exc.end - exc.start)
                self.invalid.extend(range(at + pos + exc.start, at + pos + end))
                pos += end


def _utf8_text(raw: str) -> str:
    """A record read as Latin-1 (one character per byte) as the UTF-8 text it is."""
    return raw.encode("latin-1").decode("utf-8", errors="replace")


def scan_csv(path: Path, rel: str) -> CsvScan:
    """Count the records of a CSV file with Python's `csv` module (RFC 4180 quoting, `\\r\\n`,
    `\\n` or `\\r` line ends) and find the records that are not rows of the header's width or
    not valid UTF-8. Independent of pyarrow's reader, whose rows the gate splits: the identity
    check compares the two."""
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # a field may be megabytes long
    hasher = hashlib.sha256()
    try:
        with open(path, "rb", buffering=0) as fh:
            hashed = _Counted(fh, hasher)
            source = gzip.GzipFile(fileobj=io.BufferedReader(hashed, SCAN_BUFFER_BYTES), mode="rb") if is_gzip(path) \
                else hashed
            counted = _Counted(source, check_utf8=True)
            text = io.TextIOWrapper(io.BufferedReader(counted, SCAN_BUFFER_BYTES), encoding="latin-1", newline="")
            consumed = [0]
            lines: list[str] = []

            def feed():
                for line in text:
                    consumed[0] += len(line)
                    lines.append(line)
                    yield line

            reader = csv.reader(feed())
            header = None
            records = max_bytes = 0
            bad: list[BadLine] = []
            bad_bytes = 0
            invalid_bytes: list[int] = []
            start = 0
            for row in reader:
                end = consumed[0]
                size = end - start
                max_bytes = max(max_bytes, size)
                invalid = False
                while counted.invalid and counted.invalid[0] < end:  # the invalid bytes up to this record's end
                    offset = counted.invalid.popleft()
                    invalid_bytes.append(offset)
                    if offset >= start:
                        invalid = True
                if row:
                    if header is None:
                        if invalid or any("\x00" in f for f in row):
                            raise RawInputError(f"{rel}: cannot be read as CSV: its header is not UTF-8 text "
                                                "(invalid bytes or NUL characters: is the file UTF-16 or Latin-1?)")
                        header = row
                    else:
                        if len(row) != len(header) or invalid:
                            record = _utf8_text("".join(lines)).rstrip("\r\n")
                            if len(row) != len(header):
                                spans = record.count("\n") + record.count("\r") - record.count("\r\n")
                                reason = (f"the line has {len(row)} field(s), the header {len(header)}"
                                          + (f" (it runs over {spans + 1} lines: a quote left open?)" if spans else ""))
                                bad.append(BadLine(records, LINE_MALFORMED, reason, record))
                            else:
                                bad.append(BadLine(records, LINE_INVALID_UTF8,
                                                   "the line is not valid UTF-8 (invalid bytes shown as \ufffd)", record))
                            bad_bytes += len(record)
                            if len(bad) > MAX_BAD_LINES or bad_bytes > MAX_BAD_LINE_BYTES:
                                raise RawInputError(
                                    f"{rel}: cannot be read as CSV: more than {min(len(bad), MAX_BAD_LINES):,} "
                                    f"lines ({bad_bytes:,} bytes) are not rows of the header's {len(header)} "
                                    "fields or not UTF-8 — the file does not have its header's layout")
                        records += 1
                lines.clear()
                start = end
            if header is None:
                raise RawInputError(f"{rel}: cannot be read as CSV: No columns to parse from file")
            names = [_utf8_text(n) for n in header]
            names[0] = names[0].removeprefix("\ufeff")
            invalid_bytes += counted.invalid
            return CsvScan(header=tuple(_csv_names(names)), records=records, max_record_bytes=max_bytes,
                           bad_lines=tuple(bad), sha256=hasher.hexdigest(), invalid_bytes=tuple(invalid_bytes))
    except RawInputError:
        raise
    except (OSError, EOFError, csv.Error, ValueError, gzip.BadGzipFile) as exc:
        raise read_error(rel, path, exc) from exc


class _HashingReader(io.RawIOBase):
    """A read-only file that hashes every byte it hands out (the file is read once).

    `read` fills buffers of Arrow's memory pool: the CSV reader's read-ahead blocks live where
    the rest of the Arrow data lives, not as Python bytes.
    """

    def __init__(self, path: Path):
        super().__init__()
        self._fh = open(path, "rb", buffering=0)  # noqa: SIM115 (closed by close())
        self.sha256 = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1):
        if size is None or size < 0:
            return self.readall()
        buffer = pa.allocate_buffer(size, resizable=True)
        n = self._fh.readinto(memoryview(buffer)) or 0
        buffer.resize(n)
        self.sha256.update(buffer)
        return buffer

    def readinto(self, buffer) -> int:
        n = self._fh.readinto(buffer) or 0
        self.sha256.update(memoryview(buffer)[:n])
        return n

    def readall(self) -> bytes:
        data = self._fh.readall()
        self.sha256.update(data)
        return data

    def drain(self) -> None:
        """Hash what the reader did not ask for (nothing, for a CSV read to its end)."""
        for block in iter(lambda: self._fh.read(1 << 20), b""):
            self.sha256.update(block)

    def close(self) -> None:
        self._fh.close()
        super().close()


class RawFileReader:
    """One raw file, read in record batches; after a full read, `sha256` and `rows` are known.

    `batches()` yields Arrow record batches whose column names are the file's (blank → `Unnamed:
    i`, repeated → `x.1`, stripped), CSV columns all text; `to_frame()` turns a table of them into
    the pandas frame the gate checks. A CSV record the reader cannot use as a row (`BadLine`) is a
    row of missing values with its rule, reason and text in the `LINE_COLUMNS`, in its place, so
    that row numbers count every record. `rows_counted` is the file's data rows counted on their
    own: by `scan_csv` (Python's `csv` module) or from the Parquet metadata.
    """

    def __init__(self, path: Path, root: Path):
        self.path = Path(path)
        self.rel = self.path.relative_to(root).as_posix()
        self.parquet = is_parquet(self.path)
        self.sha256: str | None = None
        self.rows = 0
        self.float_ints: list[str] = []
        self.schema: pa.Schema | None = None
        self._scan: CsvScan | None = None
        self.parser_skipped = 0

    def scan(self) -> CsvScan:
        if self.parquet:
            raise ValueError("a Parquet file has no CSV scan")
        if self._scan is None:
            self._scan = scan_csv(self.path, self.rel)
        return self._scan

    @property
    def rows_counted(self) -> int:
        """The file's data rows, counted independently of the rows the reader yields."""
        try:
            if self.parquet:
                return int(pq.ParquetFile(self.path).metadata.num_rows)
            return self.scan().records
        except (OSError, pa.ArrowException, ValueError) as exc:
            raise read_error(self.rel, self.path, exc) from exc

    def columns(self) -> list[str]:
        """The column names, from the CSV header (the record scan) or the Parquet footer."""
        try:
            if self.parquet:
                schema = pq.read_schema(self.path)
                return [str(c).strip() for c in schema.empty_table().to_pandas().columns]
            return list(self.scan().header)
        except (OSError, pa.ArrowException, ValueError, EOFError) as exc:
            raise read_error(self.rel, self.path, exc) from exc

    def batches(self, batch_rows: int | None = None, hash_bytes: bool = True,
                row_groups: Sequence[int] | None = None) -> Iterator[pa.RecordBatch]:
        try:
            yield from (self._parquet_batches(batch_rows, hash_bytes, row_groups) if self.parquet
                        else self._csv_batches(hash_bytes))
        except (OSError, pa.ArrowException, ValueError, UnicodeDecodeError) as exc:
            raise read_error(self.rel, self.path, exc) from exc

    def _csv_batches(self, hash_bytes: bool) -> Iterator[pa.RecordBatch]:
        scan = self.scan()
        names = list(scan.header)
        lines = bool(scan.bad_lines)
        self.schema = pa.schema([pa.field(n, pa.large_string()) for n in
                                 [*names, *(LINE_COLUMNS if lines else ())]])
        self.rows = 0
        if scan.records == 0:  # a header and nothing else (pyarrow cannot read a lone header line)
            if hash_bytes:
                self.sha256 = scan.sha256
            return
        block = max(CSV_BLOCK_BYTES, scan.max_record_bytes + 4096)
        if block > MAX_CSV_BLOCK_BYTES:
            raise RawInputError(f"{self.rel}: cannot be read as CSV: a record of {scan.max_record_bytes:,} bytes "
                                f"is larger than {MAX_CSV_BLOCK_BYTES:,}")
        self.parser_skipped = 0

        def skip(_row) -> str:  # a record of the wrong width: the scan has it as a BadLine
            self.parser_skipped += 1
            return "skip"

        raw = _HashingReader(self.path)
        reader = None
        try:
            reader = pa_csv.open_csv(_decompressed(raw, self.path, scan.invalid_bytes),
                                     read_options=pa_csv.ReadOptions(block_size=block),
                                     parse_options=pa_csv.ParseOptions(newlines_in_values=True,
                                                                       invalid_row_handler=skip),
                                     convert_options=CSV_CONVERT)
            if len(reader.schema.names) != len(names):
                raise RawInputError(f"{self.rel}: cannot be read as CSV: the reader sees {len(reader.schema.names)} "
                                    f"columns in the header, the record scan {len(names)}")
            for batch in _with_lines(reader, names, scan.bad_lines, self.rel):
                self.rows += batch.num_rows
                yield batch
            if hash_bytes:
                raw.drain()
                self.sha256 = raw.sha256.hexdigest()
                if self.sha256 != scan.sha256:
                    raise RawInputError(f"{self.rel}: changed while it was read (sha256 {scan.sha256} when "
                                        f"its records were counted, {self.sha256} when they were read)")
        finally:  # also when the caller stops early: the reader (and its read-ahead), then the file
            if reader is not None:
                reader.close()
            raw.close()

    def _parquet_batches(self, batch_rows, hash_bytes: bool, row_groups) -> Iterator[pa.RecordBatch]:
        # Parquet is read by row group from its footer on, not front to back: its bytes are
        # hashed in one sequential pass of their own (compressed, so small next to a CSV).
        if hash_bytes:
            with open(self.path, "rb") as fh:
                self.sha256 = hashlib.file_digest(fh, "sha256").hexdigest()
        pf = pq.ParquetFile(self.path)
        self.schema = pf.schema_arrow
        self.float_ints = _ints_with_nulls(pf)
        self.rows = 0
        for batch in pf.iter_batches(batch_size=batch_rows or 65_536, row_groups=row_groups):
            self.rows += batch.num_rows
            yield batch

    def read_table(self) -> pa.Table:
        """The whole file as one table (small inputs: `read_raw_file`)."""
        batches = list(self.batches())
        if batches:
            return pa.Table.from_batches(batches)
        return self.schema.empty_table()

    def to_frame(self, table: pa.Table) -> pd.DataFrame:
        """The rows as the gate reads them: the same dtypes and values, whatever the chunk."""
        return _to_frame(table, self.parquet, self.float_ints)


def _with_lines(reader, names: list[str], bad_lines: Sequence[BadLine], rel: str = "") -> Iterator[pa.RecordBatch]:
    """The reader's rows with the scan's bad lines in their places (a malformed line is not among
    the reader's rows; a line that is not UTF-8 is, and is replaced)."""
    if not bad_lines:
        for batch in reader:
            yield batch.rename_columns(names)
        return
    schema = pa.schema([pa.field(n, pa.large_string()) for n in [*names, *LINE_COLUMNS]])
    pending = deque(bad_lines)
    at = 0  # index of the next record

    def line_row(bad: BadLine) -> pa.RecordBatch:
        arrays = [pa.nulls(1, pa.large_string()) for _ in names]
        arrays += [pa.array([v], pa.large_string()) for v in (bad.rule, bad.reason, bad.text)]
        return pa.RecordBatch.from_arrays(arrays, schema=schema)

    for batch in reader:
        n = batch.num_rows
        batch = pa.RecordBatch.from_arrays([*batch.columns, *(pa.nulls(n, pa.large_string()) for _ in LINE_COLUMNS)],
                                           schema=schema)
        i = 0
        while True:
            if pending and pending[0].index < at:  # the reader yielded a row the scan holds as a bad line
                raise RawInputError(f"{rel}: cannot be read as CSV: the reader and the record count disagree "
                                    f"at record {pending[0].index + 1}")
            if pending and pending[0].index == at:
                bad = pending.popleft()
                yield line_row(bad)
                at += 1
                if bad.rule == LINE_INVALID_UTF8:  # the reader's copy of the row is dropped
                    i += 1
                continue
            if i >= n:
                break
            take = n - i if not pending else min(n - i, pending[0].index - at)
            yield batch.slice(i, take)
            i += take
            at += take
    for bad in pending:  # malformed lines at the end of the file
        yield line_row(bad)


def _to_frame(table: pa.Table, parquet: bool, float_ints: Sequence[str]) -> pd.DataFrame:
    # pandas turns an integer column holding a null into float64 for the whole file; do the same
    # in every chunk, so that a value reads the same whichever chunk it is in
    for name in float_ints:
        i = table.schema.get_field_index(name)
        table = table.set_column(i, table.schema.field(i).with_type(pa.float64()), table.column(i).cast(pa.float64()))
    frame = table.to_pandas()
    if parquet:
        frame.columns = [str(c).strip() for c in frame.columns]
    if not (isinstance(frame.index, pd.RangeIndex) and frame.index.start == 0):
        frame = frame.reset_index(drop=True)
    return frame


def _decompressed(fh, path: Path, invalid_bytes: Sequence[int] = ()):
    """The bytes pyarrow parses: decompressed (`.csv.gz` is read like `.csv`), with `?` in place of
    the bytes that are not UTF-8 (never a quote, delimiter or line end, so the records are the same)."""
    if not invalid_bytes:
        return pa.CompressedInputStream(pa.PythonFile(fh, mode="r"), "gzip") if is_gzip(path) else fh
    source = gzip.GzipFile(fileobj=fh, mode="rb") if is_gzip(path) else fh
    return _Patched(source, invalid_bytes)


class _Patched(io.RawIOBase):
    """A stream with `?` at the given offsets."""

    def __init__(self, source, offsets: Sequence[int]):
        super().__init__()
        self._source = source
        self._offsets = offsets
        self._next = 0
        self._pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self._source.readinto(buffer) or 0
        view = memoryview(buffer)
        end = self._pos + n
        while self._next < len(self._offsets) and self._offsets[self._next] < end:
            view[self._offsets[self._next] - self._pos] = 0x3F  # '?'
            self._next += 1
        self._pos = end
        return n


def _ints_with_nulls(pf: pq.ParquetFile) -> list[str]:
    """Integer columns that pandas reads as float64 from the whole file: a null somewhere, and
    no pandas metadata making them a nullable integer (`Int64`) column."""
    meta = pf.metadata
    leaves = {meta.schema.column(j).path: j for j in range(meta.num_columns)}
    as_pandas = pf.schema_arrow.empty_table().to_pandas().dtypes
    out = []
    for field in pf.schema_arrow:
        if (not pa.types.is_integer(field.type) or field.name not in leaves or field.name not in as_pandas
                or not isinstance(as_pandas[field.name], np.dtype)):
            continue
        stats = [meta.row_group(g).column(leaves[field.name]).statistics for g in range(meta.num_row_groups)]
        if all(st is not None and st.has_null_count for st in stats):
            nulls = sum(st.null_count for st in stats)
        else:  # no statistics: count them
            nulls = pf.read(columns=[field.name]).column(0).null_count
        if nulls:
            out.append(field.name)
    return out


def _rechunk(batches: Iterable[pa.RecordBatch], rows: int | None) -> Iterator[pa.Table]:
    """Tables of exactly `rows` rows (the last one shorter); the whole input when `rows` is None."""
    pending: list[pa.RecordBatch] = []
    have = 0
    for batch in batches:
        while batch.num_rows:
            take = batch.num_rows if rows is None else min(rows - have, batch.num_rows)
            pending.append(batch.slice(0, take))
            have += take
            batch = batch.slice(take)
            if rows is not None and have == rows:
                yield pa.Table.from_batches(pending)
                pending, have = [], 0
    if pending:
        yield pa.Table.from_batches(pending)


# -- the gate -------------------------------------------------------------------------------------

def _arrow_type(spec: InputSpec, column: str) -> pa.DataType:
    if column in spec.timestamps or column in spec.dates:
        return pa.timestamp("us", tz="UTC")
    if column in spec.numbers:
        return pa.float64()
    return pa.string()


def clean_schema(spec: InputSpec) -> pa.Schema:
    """The clean rows: the spec's columns typed as `run_gate(...).clean` types them, then
    source_file and source_row."""
    return pa.schema([*(pa.field(c, _arrow_type(spec, c)) for c in spec.columns),
                      pa.field(SOURCE_FILE, pa.string()), pa.field(SOURCE_ROW, pa.int64())])


def key_columns(spec: InputSpec) -> list[str]:
    key = spec.unique_key
    return [] if key is None else [key] if isinstance(key, str) else list(key)


def key_schema(spec: InputSpec) -> pa.Schema:
    """Every row read: its key column(s) as the gate compares them (text, an empty cell null),
    where it was read, its place in read order and whether the row-local rules passed it."""
    return pa.schema([*(pa.field(c, pa.string()) for c in key_columns(spec)),
                      pa.field(SOURCE_FILE, pa.string()), pa.field(SOURCE_ROW, pa.int64()),
                      pa.field(READ_ORDER, pa.int64()), pa.field(IS_CLEAN, pa.bool_())])


@dataclass(frozen=True)
class GateChunk:
    """Consecutive rows of one file after the row-local rules."""

    source_file: str
    first_row: int  # 1-based row number (among the file's data rows) of the chunk's first row
    rows_read: int
    clean: pa.Table  # clean_schema(spec)
    quarantine: pd.DataFrame  # QUARANTINE_COLUMNS, row-local rules only
    keys: pa.RecordBatch  # key_schema(spec): one row per row read, clean or not


@dataclass(frozen=True)
class _Task:
    """One chunk to check, with everything `_check_chunk` needs."""

    spec: InputSpec
    month: date
    folder_month: date | None
    source_file: str
    parquet: bool
    float_ints: tuple[str, ...]
    table: pa.Table
    first_row: int
    read_order: int  # rows read before this chunk, over the whole stream


def _check_chunk(task: _Task) -> GateChunk:
    spec = task.spec
    raw = _to_frame(task.table, task.parquet, task.float_ints)
    n = len(raw)
    parsed, failures = check_rows(raw, spec, task.folder_month)
    bad = np.unique(failures["row"].to_numpy(dtype="int64"))
    is_clean = np.ones(n, dtype=bool)
    is_clean[bad] = False
    rows = np.arange(task.first_row, task.first_row + n, dtype="int64")
    source = pa.repeat(pa.scalar(task.source_file, pa.string()), n)
    typed = pa.Table.from_pandas(parsed[list(spec.columns)], preserve_index=False)
    typed = typed.append_column(SOURCE_FILE, source).append_column(SOURCE_ROW, pa.array(rows))
    typed = typed.cast(clean_schema(spec))
    clean = typed if len(bad) == 0 else typed.filter(pa.array(is_clean))
    quarantine = quarantine_rows(
        failures, bad, np.full(len(bad), task.source_file, dtype=object), rows[bad],
        raw_record_json(raw, bad), spec, task.month) if len(bad) else empty_quarantine()
    keys = pa.RecordBatch.from_arrays(
        [*(typed.column(k).combine_chunks() for k in key_columns(spec)), source, pa.array(rows),
         pa.array(np.arange(task.read_order + 1, task.read_order + n + 1, dtype="int64")), pa.array(is_clean)],
        schema=key_schema(spec))
    return GateChunk(source_file=task.source_file, first_row=task.first_row, rows_read=n, clean=clean,
                     quarantine=quarantine, keys=keys)


class GateStream:
    """The chunks of `stream_gate`; iterate once, then read `files` (the per-file log)."""

    def __init__(self, paths: Sequence[Path], root: Path, spec: InputSpec, month: date,
                 chunk_rows: int | None = DEFAULT_CHUNK_ROWS, folder_month: date | None = None):
        if chunk_rows is not None and chunk_rows < 1:
            raise ValueError("chunk_rows must be at least 1 (or None for whole files)")
        self.root = Path(root)
        self.readers = sorted((RawFileReader(Path(p), self.root) for p in paths), key=lambda r: r.rel)
        self.spec = spec
        self.month = month
        self.folder_month = folder_month if folder_month is not None or not spec.folder_month_column else month
        self.chunk_rows = chunk_rows
        self._log: list[tuple] | None = None
        self._started = False

    def __iter__(self) -> Iterator[GateChunk]:
        if self._started:
            raise RuntimeError("a GateStream is read once")
        self._started = True
        # every file's columns first: a file lacking a required column is rejected before any
        # row of the month goes anywhere (as run_gate rejects it before validating anything)
        for reader in self.readers:
            check_columns(RawFile(reader.rel, pd.DataFrame(columns=reader.columns()), ""), self.spec)
        yield from self._account(map(_check_chunk, self._tasks()))

    def _tasks(self) -> Iterator[_Task]:
        read_order = 0
        for reader in self.readers:
            first_row = 1
            for table in _rechunk(reader.batches(self.chunk_rows), self.chunk_rows):
                yield _Task(self.spec, self.month, self.folder_month, reader.rel, reader.parquet,
                            tuple(reader.float_ints), table, first_row, read_order)
                first_row += table.num_rows
                read_order += table.num_rows

    def _account(self, chunks: Iterable[GateChunk]) -> Iterator[GateChunk]:
        counts = {r.rel: [0, 0] for r in self.readers}
        for chunk in chunks:
            counts[chunk.source_file][0] += chunk.clean.num_rows
            counts[chunk.source_file][1] += len(chunk.quarantine)
            yield chunk
        # rows read: counted in the file on their own (csv module / Parquet metadata), not the
        # rows the chunks held
        self._log = [(pd.Timestamp(self.month), self.spec.name, r.rel, r.sha256, r.rows_counted, *counts[r.rel],
                      READ, None) for r in self.readers]

    @property
    def files(self) -> pd.DataFrame:
        """Per file (`validation.INGEST_LOG_COLUMNS`): month, input, source_file, file_sha256,
        rows_read (counted in the file on their own), rows_clean, rows_quarantined (by the row-local
        rules), status `read`."""
        if self._log is None:
            raise RuntimeError("the file log is known once every chunk has been read")
        return ingest_rows(self._log)


def stream_gate(paths: Sequence[Path], root: Path, spec: InputSpec, month: date,
                chunk_rows: int | None = DEFAULT_CHUNK_ROWS, folder_month: date | None = None) -> GateStream:
    """The row-local validation gate over `paths` (files under `root`), chunk by chunk.

    Files are read in name order (their path relative to `root`), each in chunks of at most
    `chunk_rows` rows (None: a file at a time); a chunk never spans two files. A file that cannot
    be read, or lacks a required column, raises RawInputError naming it (a missing column before
    any chunk is yielded; an unreadable row when the reader reaches it). `month` labels the rows
    and `folder_month` (default: `month`) is the month the folder-month rule checks, as in
    `run_gate`.
    """
    return GateStream(paths, root, spec, month, chunk_rows=chunk_rows, folder_month=folder_month)


def raw_records(paths: Sequence[Path], root: Path, wanted: Mapping[str, Iterable[int]],
                expected_sha256: Mapping[str, str] | None = None) -> dict[tuple[str, int], str]:
    """`raw_record` JSON of chosen rows, as the quarantine holds it, read again from the files.

    `wanted` maps a source_file (relative to `root`, as the gate names it) to 1-based row numbers.
    Only those files are read, each once, front to back, and only as far as its last wanted row —
    or to its end when `expected_sha256` names it, to check the file is the one the gate read
    (RawInputError if not). Returns {(source_file, row_number): JSON}; a row number beyond the
    file's end raises RawInputError.
    """
    by_rel = {Path(p).relative_to(root).as_posix(): Path(p) for p in paths}
    unknown = sorted(set(wanted) - set(by_rel))
    if unknown:
        raise ValueError(f"not among the paths given: {', '.join(unknown)}")
    out: dict[tuple[str, int], str] = {}
    for rel in sorted(wanted):
        rows = np.unique(np.fromiter(wanted[rel], dtype="int64"))
        if len(rows) == 0:
            continue
        if rows[0] < 1:
            raise ValueError(f"{rel}: row numbers are 1-based, got {rows[0]}")
        check = (expected_sha256 or {}).get(rel)
        reader = RawFileReader(by_rel[rel], root)
        groups = None
        offset = 0
        if reader.parquet and not check:  # skip the row groups before the first wanted row
            groups, offset = _row_groups_from(by_rel[rel], int(rows[0]))
        last = int(rows[-1])
        batches = reader.batches(hash_bytes=bool(check), row_groups=groups)
        try:
            for batch in batches:
                lo, hi = np.searchsorted(rows, [offset + 1, offset + batch.num_rows + 1])
                if hi > lo:  # the wanted rows of this batch, taken before they become pandas
                    frame = reader.to_frame(pa.Table.from_batches([batch.take(pa.array(rows[lo:hi] - offset - 1))]))
                    records = raw_record_json(frame, np.arange(len(frame)))
                    out.update({(rel, int(n)): r for n, r in zip(rows[lo:hi], records, strict=True)})
                offset += batch.num_rows
                if offset >= last and not check:
                    break
        finally:
            batches.close()  # the file, now
        if check and reader.sha256 != check:
            raise RawInputError(f"{rel}: changed since it was validated (sha256 {reader.sha256}, "
                                f"validated {check})")
        if offset < last:
            raise RawInputError(f"{rel}: has {offset} rows, row {last} was asked for")
    return out


def _row_groups_from(path: Path, first_row: int) -> tuple[list[int], int]:
    meta = pq.ParquetFile(path).metadata
    start, groups, offset = 0, [], 0
    for g in range(meta.num_row_groups):
        n = meta.row_group(g).num_rows
        if start + n < first_row and not groups:
            offset = start + n
        else:
            groups.append(g)
        start += n
    return groups, offset
