"""The report folder (QA_REPORTS_DIR): one folder per month, the site index at the top."""

from __future__ import annotations

import dagster as dg

from qa_pipeline.settings import resolve_path


class ReportStore(dg.ConfigurableResource):
    """QA_REPORTS_DIR: one folder per month, the site index at the top."""

    reports_dir: str

    def write(self, relative: str, data: bytes | str) -> str:
        path = resolve_path(self.reports_dir) / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        tmp.replace(path)
        return str(path)
