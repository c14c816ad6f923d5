"""The raw landing folder (`QA_RAW_DIR`): lists and reads files, never writes, moves or deletes.

The layout (data contract §2): monthly inputs in `YYYY-MM` folders (`audits`, `disputes`,
`calibration` with `ratings*` and `gold*` files), snapshot inputs as one file (`roster/roster`,
`policy_changes/policy_changes`, `experiments/experiments` and `experiments/assignments`, the
optional `policies/policies`), and the optional expert re-audits (`reaudits/YYYY-MM/`). A data
file is `.csv`, `.csv.gz` or `.parquet`, the suffix in any case. Everything else under
`QA_RAW_DIR` — another file, a folder whose name is not a month (`2026-3`, `2026-03-old`), a folder
no input reads, a hidden file, a second copy of a snapshot input — is listed by `layout_report`
with the reason it is not read, for the ingest log and the layout warning: nothing is skipped
silently. An input added later is one entry of `LAYOUT`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import dagster as dg

from qa_pipeline.domain.months import month_key, month_start
from qa_pipeline.domain.streaming_gate import RawFileReader, read_error
from qa_pipeline.domain.validation import RawFile, RawInputError
from qa_pipeline.settings import resolve_path

SUFFIXES = (".csv.gz", ".csv", ".parquet")
"""Data file suffixes, matched case-insensitively (`.CSV`, `.Parquet`); `.csv.gz` is read as CSV."""
_MONTH_FOLDER = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])")


@dataclass(frozen=True)
class MonthlyInput:
    """An input delivered in `<folder>/YYYY-MM/` folders; `prefixes`: the files' name prefixes
    (`ratings`, `gold`), `("",)` for any data file."""

    prefixes: tuple[str, ...] = ("",)


@dataclass(frozen=True)
class SnapshotInput:
    """An input delivered as one file per name (`roster`, …) in `<folder>/`."""

    stems: tuple[str, ...]


LAYOUT: dict[str, MonthlyInput | SnapshotInput] = {
    "audits": MonthlyInput(),
    "disputes": MonthlyInput(),
    "calibration": MonthlyInput(prefixes=("ratings", "gold")),
    "roster": SnapshotInput(stems=("roster",)),
    "policy_changes": SnapshotInput(stems=("policy_changes",)),
    "experiments": SnapshotInput(stems=("experiments", "assignments")),
    "policies": SnapshotInput(stems=("policies",)),
    "reaudits": MonthlyInput(),
}
"""Every input folder the pipeline reads (data contract §2)."""


def data_suffix(name: str) -> str | None:
    """`.csv`, `.csv.gz` or `.parquet` when `name` is a data file's name (any case), else None."""
    lower = name.lower()
    return next((s for s in SUFFIXES if lower.endswith(s) and len(lower) > len(s)), None)


def data_stem(name: str) -> str:
    suffix = data_suffix(name)
    return name[:-len(suffix)] if suffix else name


def is_month_folder(name: str) -> bool:
    """Exactly `YYYY-MM` (ASCII digits, a month 01–12)."""
    return _MONTH_FOLDER.fullmatch(name) is not None


def _is_data_file(path: Path, prefix: str = "") -> bool:
    return (path.is_file() and not path.name.startswith(".") and data_suffix(path.name) is not None
            and path.name.lower().startswith(prefix.lower()))


def read_raw_file(path: Path, root: Path) -> RawFile:
    """Read one CSV (all columns as text, empty cell = missing) or Parquet file, whole.

    For small inputs; a month of audits goes through `domain.streaming_gate.stream_gate`. Both read
    through the same reader (`streaming_gate.RawFileReader`), so a file reads the same either way:
    the record scan counts its rows on its own (`RawFile.rows_counted`), a line the reader cannot
    use is a row of its own (`line:malformed`, `line:invalid_utf8`), a record of any size is read.
    """
    reader = RawFileReader(path, root)
    try:
        table = reader.read_table()
        frame = reader.to_frame(table)
    except RawInputError:
        raise
    except Exception as exc:  # any reader error: the file is rejected whole, by name
        raise read_error(reader.rel, path, exc) from exc
    return RawFile(path=reader.rel, frame=frame, sha256=reader.sha256, rows_counted=reader.rows_counted)


@dataclass(frozen=True)
class LayoutEntry:
    """A file or folder under `QA_RAW_DIR` that no input reads."""

    path: str  # relative to QA_RAW_DIR, POSIX; a folder ends with `/`
    reason: str
    month: date | None  # the month folder it lies in; None when it belongs to no month
    known_extra: bool = False  # a file expected there (QA_RAW_KNOWN_EXTRAS): logged, not warned about


class RawStore(dg.ConfigurableResource):
    """Read-only access to `QA_RAW_DIR`."""

    raw_dir: str

    @property
    def root(self) -> Path:
        return resolve_path(self.raw_dir)

    def _rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix() + ("/" if path.is_dir() else "")

    def month_files(self, input_name: str, month: date, prefix: str = "") -> list[Path]:
        """The data files of `<input>/YYYY-MM/` (those starting with `prefix`, any case), in name order."""
        folder = self.root / input_name / month_key(month)
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir() if _is_data_file(p, prefix))

    def month_paths(self, input_name: str, month: date, prefix: str = "", required: bool = True) -> list[Path]:
        """The month's files (in name order), for `stream_gate`; none when required: RawInputError."""
        files = self.month_files(input_name, month, prefix)
        if not files and required:
            folder = self.root / input_name / month_key(month)
            raise RawInputError(f"no {input_name} file for {month_key(month)}: {folder} has no "
                                f"{prefix}*.csv, {prefix}*.csv.gz or {prefix}*.parquet file")
        return files

    def read_month(self, input_name: str, month: date, prefix: str = "", required: bool = True) -> list[RawFile]:
        return [read_raw_file(p, self.root) for p in self.month_paths(input_name, month, prefix, required)]

    def snapshot_path(self, relative: str) -> Path | None:
        """The file of a snapshot input such as `roster/roster.csv`: any data file of that folder
        whose name is the stem with a data suffix (`roster.csv`, `roster.CSV`, `roster.csv.gz`,
        `roster.parquet`); of several, the first in name order (the others are reported by
        `layout_report`)."""
        candidates = self._snapshot_candidates(relative)
        return candidates[0] if candidates else None

    def _snapshot_candidates(self, relative: str) -> list[Path]:
        rel = Path(relative)
        folder, stem = self.root / rel.parent, data_stem(rel.name).lower()
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir() if _is_data_file(p) and data_stem(p.name).lower() == stem)

    def read_single(self, relative: str, required: bool = True) -> list[RawFile]:
        """A snapshot input such as `roster/roster.csv` (its `.csv.gz` and `.parquet` twins, in any
        case, are accepted too)."""
        path = self.snapshot_path(relative)
        if path is None:
            if required:
                stem = data_stem(Path(relative).name)
                raise RawInputError(f"{self.root / relative} is missing (expected {relative} or "
                                    f"{stem}.csv.gz / {stem}.parquet in {Path(relative).parent}/)")
            return []
        return [read_raw_file(path, self.root)]

    def available_months(self, input_name: str = "audits") -> list[str]:
        """The `YYYY-MM` folders of an input (other folders are reported by `layout_report`)."""
        folder = self.root / input_name
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if p.is_dir() and is_month_folder(p.name))

    def layout_report(self, known_extras: tuple[str, ...] = ()) -> list[LayoutEntry]:
        """Every file and folder under `QA_RAW_DIR` that no input reads, with the reason, in path
        order. `known_extras`: names of files at the top that are expected there (the sample's
        README.md) — reported too, marked `known_extra`."""
        root = self.root
        if not root.is_dir():
            return []
        out: list[LayoutEntry] = []
        for entry in sorted(root.iterdir()):
            if entry.is_dir() and entry.name in LAYOUT:
                spec = LAYOUT[entry.name]
                out += (self._monthly_report(entry, spec) if isinstance(spec, MonthlyInput)
                        else self._snapshot_report(entry, spec))
            elif entry.is_dir():
                out.append(LayoutEntry(self._rel(entry), "not an input folder of the raw layout "
                                       f"({', '.join(LAYOUT)}): nothing in it is read", None))
            elif entry.name in known_extras:
                out.append(LayoutEntry(self._rel(entry), "a known file that is not an input (QA_RAW_KNOWN_EXTRAS)",
                                       None, known_extra=True))
            else:
                out.append(LayoutEntry(self._rel(entry), "a file at the top of the raw folder: inputs are read "
                                       "from their folders only", None))
        return out

    def _monthly_report(self, folder: Path, spec: MonthlyInput) -> list[LayoutEntry]:
        out = []
        expected = " or ".join(f"{p}*" for p in spec.prefixes if p) or "any name"
        for entry in sorted(folder.iterdir()):
            rel = self._rel(entry)
            if entry.is_dir() and is_month_folder(entry.name):
                month = month_start(entry.name)
                for item in sorted(entry.iterdir()):
                    why = self._why_not_read(item, spec.prefixes, expected)
                    if why:
                        out.append(LayoutEntry(self._rel(item), why, month))
            elif entry.is_dir():
                out.append(LayoutEntry(rel, f"not a month folder (YYYY-MM): nothing in {rel} is read", None))
            else:
                out.append(LayoutEntry(rel, f"a file directly in {folder.name}/: its files are read from "
                                       f"{folder.name}/YYYY-MM/ only", None))
        return out

    def _snapshot_report(self, folder: Path, spec: SnapshotInput) -> list[LayoutEntry]:
        out = []
        read = {self.snapshot_path(f"{folder.name}/{stem}.csv") for stem in spec.stems} - {None}
        for entry in sorted(folder.iterdir()):
            if entry in read:
                continue
            rel = self._rel(entry)
            if entry.is_dir():
                out.append(LayoutEntry(rel, f"a folder in {folder.name}/: nothing in it is read", None))
            elif _is_data_file(entry) and data_stem(entry.name).lower() in spec.stems:
                chosen = next(p for p in read if data_stem(p.name).lower() == data_stem(entry.name).lower())
                out.append(LayoutEntry(rel, f"another copy of the same input: {self._rel(chosen)} is read "
                                       "(the first in name order)", None))
            else:
                why = ("a hidden file" if entry.name.startswith(".") else "not a .csv, .csv.gz or .parquet file"
                       if data_suffix(entry.name) is None else "not an input file")
                names = ", ".join(f"{s}.csv" for s in spec.stems)
                out.append(LayoutEntry(rel, f"{why}: {folder.name}/ holds {names} (or .csv.gz / .parquet)", None))
        return out

    @staticmethod
    def _why_not_read(item: Path, prefixes: tuple[str, ...], expected: str) -> str | None:
        """Why a file of a month folder is not read; None when it is read."""
        if item.is_dir():
            return "a folder inside a month folder: nothing in it is read"
        if item.name.startswith("."):
            return "a hidden file"
        if data_suffix(item.name) is None:
            return "not a .csv, .csv.gz or .parquet file"
        if not any(item.name.lower().startswith(p.lower()) for p in prefixes):
            return f"not a file this input reads (file names {expected})"
        return None
