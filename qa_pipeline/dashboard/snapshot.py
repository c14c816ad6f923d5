"""The dashboard's published snapshot: every `qa_reporting` table as a Parquet file.

Layout of `QA_DASHBOARD_DIR` (default `QA_REPORTS_DIR/dashboard`, i.e. `data/reports/dashboard`):

```
snapshots/<published-at>-<id>/<table>.parquet   one file per qa_reporting table
snapshots/<published-at>-<id>/manifest.json     tables, rows per table, when, from which run
current.json                                    {"snapshot": "<published-at>-<id>"}
```

A new snapshot is written beside the old ones and made current by replacing `current.json`
(`os.replace`, atomic on POSIX and Windows): a reader sees the old snapshot or the new one, never
half of one. The last `KEEP` snapshots stay on disk, so a reader that resolved the pointer just
before a swap can still finish reading its files.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from qa_pipeline.schemas import warehouse as wh
from qa_pipeline.settings import resolve_path

POINTER = "current.json"
MANIFEST = "manifest.json"
KEEP = 3


def dashboard_dir(reports_dir: str | os.PathLike | None = None) -> Path:
    """`QA_DASHBOARD_DIR`, default `dashboard/` in the reports folder (`reports_dir`, else
    `QA_REPORTS_DIR`); relative paths resolve against the project root."""
    configured = os.environ.get("QA_DASHBOARD_DIR", "").strip()
    if configured:
        return resolve_path(configured)
    if reports_dir is None:
        reports_dir = os.environ.get("QA_REPORTS_DIR", "data/reports")
    return resolve_path(reports_dir) / "dashboard"


def reporting_tables() -> list[str]:
    """Every published table of `qa_reporting` (data contract §5), new ones included as soon as
    they are defined in `schemas/warehouse.py`."""
    return sorted(t.fullname for t in wh.metadata.tables.values() if t.schema == wh.REPORTING)


def file_name(table_name: str) -> str:
    return table_name.split(".", 1)[1] + ".parquet"


@dataclass(frozen=True)
class Snapshot:
    path: Path
    manifest: dict

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def tables(self) -> dict[str, int]:
        """Rows per table, as written."""
        return dict(self.manifest["tables"])

    def read(self, table_name: str) -> pd.DataFrame:
        """A table of the snapshot; an empty frame with the table's columns when it was not
        published yet (an optional or a newer table)."""
        if table_name not in self.manifest["tables"]:
            table = wh.table(table_name)
            return pd.DataFrame({c.name: pd.Series(dtype="object") for c in table.columns})
        return pq.read_table(self.path / file_name(table_name)).to_pandas(date_as_object=False)


def write_snapshot(frames: dict[str, pd.DataFrame], root: Path, run_id: str = "") -> Snapshot:
    """Write the frames as a new snapshot and make it current; prune all but the last `KEEP`."""
    published = datetime.now(UTC)
    name = f"{published:%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:8]}"
    snapshots = root / "snapshots"
    tmp = snapshots / f".{name}.tmp"
    tmp.mkdir(parents=True)
    counts = {}
    for table_name, frame in frames.items():
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp / file_name(table_name))
        counts[table_name] = len(frame)
    manifest = {"published_at": published.isoformat(), "run_id": run_id, "tables": counts}
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    final = snapshots / name
    tmp.rename(final)
    pointer_tmp = root / f".{POINTER}.{name}"
    pointer_tmp.write_text(json.dumps({"snapshot": name}), encoding="utf-8")
    os.replace(pointer_tmp, root / POINTER)
    _prune(snapshots, keep=name)
    return Snapshot(final, manifest)


def _prune(snapshots: Path, keep: str) -> None:
    done = sorted((p for p in snapshots.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)
    for old in done[:-KEEP]:
        if old.name != keep:
            shutil.rmtree(old, ignore_errors=True)


def current_snapshot(root: Path | None = None) -> Snapshot | None:
    """The current snapshot, or None when the pipeline has not published one yet."""
    root = root or dashboard_dir()
    pointer = root / POINTER
    if not pointer.exists():
        return None
    name = json.loads(pointer.read_text(encoding="utf-8"))["snapshot"]
    path = root / "snapshots" / name
    return Snapshot(path, json.loads((path / MANIFEST).read_text(encoding="utf-8")))
