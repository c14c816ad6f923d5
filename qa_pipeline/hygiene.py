"""Operational hygiene of CLI runs: runs whose process died, and one writer at a time on DuckDB.

- Every run the CLI starts carries its process in its tags (`qa/host`, `qa/pid`, `qa/pid_start`).
  A run killed with its process (SIGKILL, OOM, a closed terminal) never reports its end and would
  stay `STARTED` in the Dagster instance for ever, holding a slot of the run queue. At its next
  start the CLI marks such runs failed, saying why. (Runs launched by the daemon are watched by
  Dagster's own run monitoring, enabled in the instance's `dagster.yaml`.)
- DuckDB allows one writing process. The CLI holds an exclusive lock file beside the database
  (`<database>.run.lock`) while it runs months; a second `qa-pipeline run` fails at once with one
  line that says which command, process and Dagster run hold the warehouse.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from qa_pipeline.settings import Settings

HOST, PID, PID_START = "qa/host", "qa/pid", "qa/pid_start"


class WarehouseBusy(RuntimeError):
    """Another process holds the DuckDB warehouse."""


def _start_ticks(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def process_tags() -> dict[str, str]:
    pid = os.getpid()
    return {HOST: socket.gethostname(), PID: str(pid), PID_START: _start_ticks(pid) or ""}


def _alive(pid: int, start: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: it exists
    now = _start_ticks(pid)
    return not (start and now and now != start)


def fail_dead_runs() -> list[str]:
    """Mark failed the runs of this host whose process is gone; one line per run marked."""
    import dagster as dg

    lines = []
    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs(filters=dg.RunsFilter(
            statuses=[dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING]))
        for run in runs:
            tags = run.tags
            if tags.get(HOST) != socket.gethostname() or not tags.get(PID, "").isdigit():
                continue
            pid = int(tags[PID])
            if pid == os.getpid() or _alive(pid, tags.get(PID_START, "")):
                continue
            month = tags.get("dagster/partition", "?")[:7]
            instance.report_run_failed(run, f"the process that ran it (pid {pid} on {tags[HOST]}) is gone; "
                                            "marked failed by qa-pipeline at its next start")
            lines.append(f"run {run.run_id[:8]} ({month}) was left STARTED by a process that died (pid {pid}): "
                         "marked failed; its staged rows were never published")
    return lines


def _lock_path(settings: Settings) -> Path | None:
    url = settings.warehouse_url
    prefix = "duckdb:///"
    if not url.startswith(prefix) or ":memory:" in url:
        return None
    return Path(url[len(prefix):].split("?")[0] + ".run.lock")


def _holder_run(pid: int) -> str:
    """The Dagster run the holding process is executing, when the instance knows it."""
    import dagster as dg

    try:
        with dg.DagsterInstance.get() as instance:
            runs = instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED],
                                                           tags={PID: str(pid), HOST: socket.gethostname()}), limit=1)
    except Exception:  # the instance itself may be busy; the lock file says enough
        return ""
    return f", Dagster run {runs[0].run_id[:8]} ({runs[0].tags.get('dagster/partition', '?')[:7]})" if runs else ""


@contextmanager
def warehouse_hold(settings: Settings, command: str) -> Iterator[None]:
    """Hold the DuckDB warehouse for this process (nothing to do on PostgreSQL); WarehouseBusy when
    another process holds it."""
    path = _lock_path(settings)
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")  # noqa: SIM115 - held for the duration of the context
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            try:
                holder = json.loads(handle.read() or "{}")
            except ValueError:
                holder = {}
            pid = holder.get("pid")
            since = holder.get("since", "?")
            raise WarehouseBusy(
                f"another run holds the warehouse {path.with_suffix('').with_suffix('')}: "
                f"`{holder.get('command', 'qa-pipeline')}` (pid {pid}, since {since}"
                f"{_holder_run(pid) if isinstance(pid, int) else ''}); DuckDB allows one writing process: "
                "wait for it to finish, or stop it") from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "command": command,
                                 "since": f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC"}))
        handle.flush()
        yield
    finally:
        handle.close()  # releases the lock
