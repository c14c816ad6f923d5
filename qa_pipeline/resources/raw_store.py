"""The raw landing folder (`QA_RAW_DIR`): lists and reads files, never writes, moves or deletes."""

from __future__ import annotations

import hashlib
from datetime import date
from pathlib import Path

import dagster as dg
import pandas as pd

from qa_pipeline.domain.months import month_key
from qa_pipeline.domain.streaming_gate import is_parquet, read_error
from qa_pipeline.domain.validation import RawFile, RawInputError
from qa_pipeline.settings import resolve_path

SUFFIXES = (".csv", ".parquet")


def read_raw_file(path: Path, root: Path) -> RawFile:
    """Read one CSV (all columns as text, empty cell = missing) or Parquet file, whole.

    For small inputs; a month of audits goes through `domain.streaming_gate.stream_gate`, which
    reads the same files the same way in bounded chunks.
    """
    rel = path.relative_to(root).as_posix()
    try:
        data = path.read_bytes()
        if is_parquet(path):
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, dtype="str", keep_default_na=False, na_values=[""],
                                encoding="utf-8", engine="pyarrow")
    except Exception as exc:  # any reader error: the file is rejected whole, by name
        raise read_error(rel, path, exc) from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    return RawFile(path=rel, frame=frame, sha256=hashlib.sha256(data).hexdigest())


class RawStore(dg.ConfigurableResource):
    """Read-only access to `QA_RAW_DIR`."""

    raw_dir: str

    @property
    def root(self) -> Path:
        return resolve_path(self.raw_dir)

    def month_files(self, input_name: str, month: date, prefix: str = "") -> list[Path]:
        folder = self.root / input_name / month_key(month)
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir()
                      if p.suffix in SUFFIXES and p.name.startswith(prefix) and p.is_file())

    def month_paths(self, input_name: str, month: date, prefix: str = "", required: bool = True) -> list[Path]:
        """The month's files (in name order), for `stream_gate`; none when required: RawInputError."""
        files = self.month_files(input_name, month, prefix)
        if not files and required:
            folder = self.root / input_name / month_key(month)
            raise RawInputError(f"no {input_name} file for {month_key(month)}: {folder} has no "
                                f"{prefix}*.csv or {prefix}*.parquet file")
        return files

    def read_month(self, input_name: str, month: date, prefix: str = "", required: bool = True) -> list[RawFile]:
        return [read_raw_file(p, self.root) for p in self.month_paths(input_name, month, prefix, required)]

    def read_single(self, relative: str, required: bool = True) -> list[RawFile]:
        """A snapshot input such as `roster/roster.csv` (its `.parquet` twin is accepted too)."""
        path = self.root / relative
        candidates = [p for p in (path, path.with_suffix(".parquet")) if p.is_file()]
        if not candidates:
            if required:
                raise RawInputError(f"{path} is missing (expected {relative} or its .parquet twin)")
            return []
        return [read_raw_file(candidates[0], self.root)]

    def available_months(self, input_name: str = "audits") -> list[str]:
        folder = self.root / input_name
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if p.is_dir() and len(p.name) == 7)
