"""A terse Dagster logger for the CLI: one line per step start, materialization, check and failure.

The full event log stays in the Dagster instance (and the UI); the terminal shows progress:
`2026-04 · audits_clean · 2,991 rows · 0.4 s`.
"""

from __future__ import annotations

import logging
import sys
import time

import dagster as dg
from dagster._core.log_manager import get_log_record_metadata, has_log_record_metadata


def failure_message(event) -> str:
    """The cause of a failed step in one line: the underlying error's type and first line (SQLAlchemy's
    trailing "Background on this error at: …" line is no cause)."""
    err = event.event_specific_data.error
    cause = err.cause if err and err.cause else err
    lines = [ln.strip() for ln in (cause.message if cause else "").strip().splitlines()
             if ln.strip() and not ln.strip().startswith("(Background on this error")]
    if not lines:
        return "unknown error"
    return lines[0] if len(lines[0]) <= 300 else lines[0][:297] + "..."


def is_check_failure(event) -> bool:
    """A step that failed only because a blocking asset check failed."""
    err = event.event_specific_data.error
    cause = err.cause if err and err.cause else err
    return bool(cause and "DagsterAssetCheckFailedError" in (cause.cls_name or ""))


class _ProgressHandler(logging.Handler):
    def __init__(self, stream):
        super().__init__(logging.DEBUG)
        self.stream = stream
        self.started: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if not has_log_record_metadata(record):
            return
        meta = get_log_record_metadata(record)
        event = meta.get("dagster_event")
        if event is None:
            return
        tags = meta.get("job_tags") or {}
        month = str(tags.get("dagster/partition", ""))[:7]
        step = event.step_key or ""
        kind = event.event_type_value
        line = None
        if kind == "STEP_START":
            self.started[step] = time.monotonic()
            line = f"{month} · {step} · started"
        elif kind == "ASSET_MATERIALIZATION":
            md = event.event_specific_data.materialization.metadata
            rows = md.get("dagster/row_count")
            took = time.monotonic() - self.started.get(step, time.monotonic())
            shown = f"{rows.value:,} rows" if rows is not None else "written"
            line = f"{month} · {event.asset_key.to_user_string()} · {shown} · {took:.1f} s"
        elif kind == "ASSET_CHECK_EVALUATION":
            ev = event.event_specific_data
            if not ev.passed:
                line = f"{month} · check {ev.asset_key.to_user_string()}:{ev.check_name} FAILED · {ev.description or ''}"
        elif kind == "STEP_FAILURE":
            line = f"{month} · {step} · FAILED · {failure_message(event)}"
        elif kind == "STEP_SKIPPED":
            line = f"{month} · {step} · skipped (an upstream step or blocking check failed)"
        if line:
            self.stream.write(line + "\n")
            self.stream.flush()


@dg.logger(description="One terse line per step for the qa-pipeline CLI.")
def qa_progress(_init_context) -> logging.Logger:
    log = logging.getLogger("qa_pipeline.progress")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    log.handlers = [_ProgressHandler(sys.stderr)]
    return log
