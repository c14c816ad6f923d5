"""The validation gate in bounded memory: raw files read in chunks, row-local rules per chunk.

`stream_gate` reads the files of one input and month in file-name order, each in chunks of at
most `chunk_rows` rows (CSV through pyarrow's streaming reader, every column as text and an empty
cell missing, exactly as `resources.raw_store.read_raw_file`; Parquet by record batches), hashes
each file's bytes while it reads them, and runs on every chunk the same row-local rules as
`validation.run_gate` (`validation.check_rows`: parsing, the pandera model, the folder month).
Per chunk it yields the clean rows (an Arrow table of the typed columns + source_file +
source_row), the quarantined rows (`QUARANTINE_COLUMNS`, row-local rules only) and, for every row
read, its key and whether it is clean, so that the cross-row rules (a key repeated within the
month, a key published for an earlier month) can run in SQL over all rows read. After the last
chunk, `GateStream.files` is the per-file log (rows read / clean / quarantined before the
cross-row rules, sha256 of the file's bytes).

`raw_records` re-reads chosen rows of the files as the quarantine records them (`raw_record`),
for rows that only the cross-row rules quarantine.

Nothing here holds more than one chunk of a file, its quarantined rows, and the CSV reader's
read-ahead (a few dozen 1 MiB blocks, in Arrow's memory pool).
"""

from __future__ import annotations

import gzip
import hashlib
import io
from collections import defaultdict
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
    SOURCE_FILE,
    SOURCE_ROW,
    InputSpec,
    RawFile,
    RawInputError,
    check_columns,
    check_rows,
    empty_quarantine,
    quarantine_rows,
    raw_record_json,
)

DEFAULT_CHUNK_ROWS = 100_000
CSV_BLOCK_BYTES = 1 << 20  # bytes pyarrow's CSV reader parses at a time (~5k audit rows)
HEADER_BLOCK_BYTES = 1 << 20
IS_CLEAN = "is_clean"
READ_ORDER = "read_order"

# -- reading one raw file in chunks ---------------------------------------------------------------


def read_error(rel: str, path: Path, exc: BaseException) -> RawInputError:
    """The file is rejected whole, by name (the one wording of `read_raw_file` and the stream)."""
    text = str(exc).strip()
    if "Empty CSV file" in text:  # pyarrow's wording; pandas (read_raw_file) says:
        text = "No columns to parse from file"
    reason = text.splitlines()[0] if text else type(exc).__name__
    return RawInputError(f"{rel}: cannot be read as {path.suffix[1:].upper()}: {reason}")


def is_parquet(path: Path) -> bool:
    return path.suffix == ".parquet"  # as read_raw_file: anything else is read as CSV


CSV_CONVERT = pa_csv.ConvertOptions(
    # read_raw_file: pd.read_csv(dtype="str", keep_default_na=False, na_values=[""], engine="pyarrow")
    null_values=[""], strings_can_be_null=True, default_column_type=pa.large_string(),
)


def _csv_names(raw_names: Sequence[str]) -> list[str]:
    """Column names as pandas' pyarrow engine gives them (blank → `Unnamed: i`, repeats → `x.1`),
    then stripped as read_raw_file strips them."""
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

    `batches()` yields Arrow record batches whose column names are those of `read_raw_file`
    (deduplicated and stripped), CSV columns all text; `to_frame()` turns a table of them into
    the pandas frame `read_raw_file` would have given for those rows.
    """

    def __init__(self, path: Path, root: Path):
        self.path = Path(path)
        self.rel = self.path.relative_to(root).as_posix()
        self.parquet = is_parquet(self.path)
        self.sha256: str | None = None
        self.rows = 0
        self.float_ints: list[str] = []

    def columns(self) -> list[str]:
        """The column names, from the CSV header (the file's first lines only) or the Parquet footer."""
        try:
            if self.parquet:
                schema = pq.read_schema(self.path)
                return [str(c).strip() for c in schema.empty_table().to_pandas().columns]
            opener = gzip.open if self.path.suffix.lower() == ".gz" else open
            with opener(self.path, "rb") as fh:
                head = fh.read(HEADER_BLOCK_BYTES)
            if len(head) == HEADER_BLOCK_BYTES and b"\n" in head:
                head = head[:head.rindex(b"\n") + 1]  # whole lines only
            try:
                return _csv_names(_csv_header(pa.BufferReader(head)))
            except pa.ArrowInvalid:  # the cut fell inside a quoted field: read the file's start
                return _csv_names(_csv_header(pa.input_stream(str(self.path), compression="detect")))
        except (OSError, pa.ArrowException, ValueError, EOFError) as exc:
            raise read_error(self.rel, self.path, exc) from exc

    def batches(self, batch_rows: int | None = None, hash_bytes: bool = True,
                row_groups: Sequence[int] | None = None) -> Iterator[pa.RecordBatch]:
        try:
            yield from (self._parquet_batches(batch_rows, hash_bytes, row_groups) if self.parquet
                        else self._csv_batches(hash_bytes))
        except (OSError, pa.ArrowException, ValueError) as exc:
            raise read_error(self.rel, self.path, exc) from exc

    def _csv_batches(self, hash_bytes: bool) -> Iterator[pa.RecordBatch]:
        raw = _HashingReader(self.path)
        reader = None
        try:
            reader = pa_csv.open_csv(_decompressed(raw, self.path),
                                     read_options=pa_csv.ReadOptions(block_size=CSV_BLOCK_BYTES),
                                     convert_options=CSV_CONVERT)
            names = _csv_names(reader.schema.names)
            self.rows = 0
            for batch in reader:
                self.rows += batch.num_rows
                yield batch.rename_columns(names)
            if hash_bytes:
                raw.drain()
                self.sha256 = raw.sha256.hexdigest()
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
        self.float_ints = _ints_with_nulls(pf)
        self.rows = 0
        for batch in pf.iter_batches(batch_size=batch_rows or 65_536, row_groups=row_groups):
            self.rows += batch.num_rows
            yield batch

    def to_frame(self, table: pa.Table) -> pd.DataFrame:
        """The rows as `read_raw_file` reads them: the same dtypes and values, whatever the chunk."""
        return _to_frame(table, self.parquet, self.float_ints)


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


def _csv_header(source) -> list[str]:
    reader = pa_csv.open_csv(source, read_options=pa_csv.ReadOptions(block_size=HEADER_BLOCK_BYTES, use_threads=False),
                             convert_options=CSV_CONVERT)
    try:
        return reader.schema.names
    finally:
        reader.close()


def _decompressed(fh, path: Path):
    if path.suffix.lower() == ".gz":  # `.csv.gz` is read like `.csv` (pandas infers it from the name)
        return pa.CompressedInputStream(pa.PythonFile(fh, mode="r"), "gzip")
    return fh


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
        self._log = [(pd.Timestamp(self.month), self.spec.name, r.rel, r.sha256, r.rows, *counts[r.rel])
                     for r in self.readers]

    @property
    def files(self) -> pd.DataFrame:
        """Per file: month, input, source_file, file_sha256, rows_read, rows_clean, rows_quarantined
        (clean and quarantined by the row-local rules)."""
        if self._log is None:
            raise RuntimeError("the file log is known once every chunk has been read")
        return pd.DataFrame(self._log, columns=["month", "input", "source_file", "file_sha256", "rows_read",
                                                "rows_clean", "rows_quarantined"])


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
