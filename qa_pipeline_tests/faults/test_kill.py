"""SIGKILL trials: a real `qa-pipeline run` process killed at seeded random moments.

Version A: January and February published from raw data v1. Version B: February run once on data v2
(80 more audits, a changed disputes file) over a copy of A. Each trial restores A (the DuckDB file,
its WAL, the Dagster instance and the report folder), starts the run on v2, SIGKILLs its process
group at a seeded random moment — two trials in three anywhere in the run (a delay within the run
time last measured in that lane), one in three within half a second of the start of a publication
step (the month's own figures, or those that read other months: one transaction each) — and checks
that every published
partition (per month for monthly tables, whole for the others) equals A's or B's completely, that
no publication is seen half done, then re-runs without a kill: it must succeed, give B, and leave no
run of the instance marked STARTED.

Knobs: QA_FAULTS_KILL_TRIALS (20), QA_FAULTS_KILL_SEED, QA_FAULTS_KILL_LANES (trials at a time, 2).
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from qa_pipeline_tests.faults import corpus, summary, tables

pytestmark = pytest.mark.faults_long

TRIALS = int(os.environ.get("QA_FAULTS_KILL_TRIALS", "20"))
SEED = int(os.environ.get("QA_FAULTS_KILL_SEED", "20260310"))
LANES = max(1, int(os.environ.get("QA_FAULTS_KILL_LANES", "2")))
MONTHS = ["2026-01", "2026-02"]
MONTH = "2026-02"
RUN_TIMEOUT_S = 600
ROWS_TABLES = ["qa_core.audits_clean", "qa_core.audits_quarantine"]


def _env(folder: Path, raw: Path) -> dict:
    return {**os.environ, "QA_RAW_DIR": str(raw), "QA_WAREHOUSE_URL": f"duckdb:///{folder}/wh.duckdb",
            "QA_REPORTS_DIR": str(folder / "reports"), "DAGSTER_HOME": str(folder / "dagster_home"),
            "PYTHONUNBUFFERED": "1"}


def _command(months: str) -> list[str]:
    return [sys.executable, "-m", "qa_pipeline.cli", "run", "--month", months]


def _run(folder: Path, raw: Path, months: str) -> subprocess.CompletedProcess:
    return subprocess.run(_command(months), env=_env(folder, raw), cwd=folder, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S)


def _restore(src: Path, dest: Path) -> None:
    """A's state into `dest`: the warehouse file and its WAL, the instance, the reports."""
    dest.mkdir(parents=True)
    for name in ("wh.duckdb", "wh.duckdb.wal"):
        if (src / name).exists():
            shutil.copyfile(src / name, dest / name)
    for name in ("dagster_home", "reports"):
        if (src / name).exists():
            shutil.copytree(src / name, dest / name)


def _disputes(raw: Path, version: int) -> None:
    """February's disputes: v1 20 disputes; v2 five outcomes flipped and five more disputes."""
    audits = [r for p in sorted((raw / "audits" / MONTH).glob("audits_*.csv")) for r in corpus.read_rows(p)]
    audits = [a for a in audits if 1 <= int(a["audited_at"][8:10]) <= 24][: 25]
    rows = []
    for i, a in enumerate(audits[: 20 if version == 1 else 25]):
        day = int(a["audited_at"][8:10])
        outcome = "overturned" if i % 2 == 0 else "upheld"
        if version == 2 and i < 5:
            outcome = "upheld" if outcome == "overturned" else "overturned"
        rows.append({"dispute_id": f"KD-{i:03d}", "audit_id": a["audit_id"], "disputed_at": f"{MONTH}-{day + 1:02d}T10:00:00Z",
                     "resolved_at": f"{MONTH}-{day + 3:02d}T10:00:00Z", "reason": "Context", "outcome": outcome})
    corpus.write_rows(raw / "disputes" / MONTH / "disputes.csv", rows, columns=corpus.DISPUTE_COLUMNS)


def _late_audits(raw: Path, n: int = 80) -> None:
    rows = [corpus.A("late", i, month=MONTH, site="BPO-Z", action_auditor="approve", policy_auditor="NONE",
                     error_severity="major", root_cause="policy_knowledge") for i in range(n)]
    corpus.write_rows(raw / "audits" / MONTH / "zz_late.csv", rows, columns=corpus.AUDIT_COLUMNS)


@dataclass
class World:
    root: Path
    v2: Path
    a_dir: Path
    a: dict
    b: dict
    duration: float


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    from qa_pipeline.sample_data import SampleSpec, generate

    root = tmp_path_factory.mktemp("kill")
    v1, v2 = root / "raw_v1", root / "raw_v2"
    generate(SampleSpec(months=MONTHS, audits_per_month=400, seed=SEED % 10_000, with_hatecheck=False), v1)
    _disputes(v1, 1)
    shutil.copytree(v1, v2)
    _disputes(v2, 2)
    _late_audits(v2)

    a_dir = root / "A"
    a_dir.mkdir()
    first = _run(a_dir, v1, f"{MONTHS[0]}..{MONTHS[-1]}")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    a = tables.canonical(tables.snapshot(a_dir / "wh.duckdb"), folder=root)

    b_dir = root / "B"
    _restore(a_dir, b_dir)
    started = time.monotonic()
    second = _run(b_dir, v2, MONTH)
    duration = time.monotonic() - started
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    b = tables.canonical(tables.snapshot(b_dir / "wh.duckdb"), folder=root)
    changed = [d for d in tables.diff(a, b) if f"[{MONTH}-01]" in d]
    assert any(d.startswith("qa_core.audits_clean") for d in changed), "v2 must change the month"
    assert any(d.startswith("qa_core.disputes") for d in tables.diff(a, b)), "v2 must change the disputes"
    return World(root, v2, a_dir, a, b, duration)


STEP_LINE = re.compile(r"·\s*(?P<step>[\w.]+)\s*·\s*(?P<what>.+)$")


PUBLICATION_STEPS = ("month_publication", "cross_month_publication")


def phase_of(output: str, completed: bool) -> str:
    """Where the run was when it was killed, from its progress lines."""
    if completed:
        return "completed before the kill"
    started, finished = [], set()
    for line in output.splitlines():
        m = STEP_LINE.search(line)
        if not m:
            continue
        (started.append if m["what"].strip() == "started" else finished.add)(m["step"])
    published = [s for s in PUBLICATION_STEPS if s in finished]
    running = [s for s in PUBLICATION_STEPS if s in started and s not in finished]
    if running:
        return f"inside {running[0]}"
    if len(published) == len(PUBLICATION_STEPS):
        return "after the publications (report)"
    if published:
        return f"after {published[-1]}"
    if not started:
        return "start-up (before the first step)"
    return "staging steps"


def started_runs(home: Path) -> list[str]:
    """Runs the instance still holds as STARTED (or STARTING)."""
    import dagster as dg
    from dagster._core.storage.dagster_run import DagsterRunStatus

    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs(filters=dg.RunsFilter(statuses=[DagsterRunStatus.STARTED, DagsterRunStatus.STARTING]))
        return [r.run_id[:8] for r in runs]


def _started_line(step: str) -> str:
    return f"{step} · started"
LANE_DURATION: dict[int, float] = {}
"""Per lane (thread): how long the last complete run took, under the load of the moment."""


def _kill_moment(world: World, i: int, rng: random.Random) -> tuple[str, float]:
    """Two trials in three: a random moment of the whole run; one in three: a random moment of the
    first half second after a publication step starts (where its one transaction runs)."""
    if i % 3 == 2:  # alternately the month's own publication and the cross-month one
        return PUBLICATION_STEPS[(i // 3) % len(PUBLICATION_STEPS)], rng.uniform(0.0, 0.5)
    duration = LANE_DURATION.get(threading.get_ident(), world.duration)
    return "time", rng.uniform(0.02, 1.0) * duration


def _start_and_kill(folder: Path, world: World, mode: str, delay: float) -> tuple[bool, int, str]:
    log = folder / "killed_run.log"
    with log.open("w") as out:
        proc = subprocess.Popen(_command(MONTH), env=_env(folder, world.v2), cwd=folder, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            if mode in PUBLICATION_STEPS:
                deadline = time.monotonic() + RUN_TIMEOUT_S
                while proc.poll() is None and _started_line(mode) not in log.read_text(errors="replace"):
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.02)
            proc.wait(timeout=delay)
            completed = True
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the run's own process group, started above
            proc.wait()
            completed = False
    return completed, proc.returncode, log.read_text(errors="replace")


def trial(world: World, i: int) -> dict:
    rng = random.Random(SEED * 1000 + i)
    mode, delay = _kill_moment(world, i, rng)
    folder = world.root / f"trial{i:02d}"
    _restore(world.a_dir, folder)
    completed, returncode, output = _start_and_kill(folder, world, mode, delay)
    result = {"trial": i, "mode": mode, "delay_s": round(delay, 2), "phase": phase_of(output, completed),
              "returncode": returncode, "problems": [], "rows_lost": 0}
    try:
        state = tables.canonical(tables.snapshot(folder / "wh.duckdb"), folder=world.root)
        verdicts, problems = tables.judge_state(state, world.a, world.b)
        result["state"] = tables.state_label(verdicts)
        result["problems"] += problems
        if problems:
            result["rows_lost"] = min(tables.rows_differing(state, world.a, ROWS_TABLES),
                                      tables.rows_differing(state, world.b, ROWS_TABLES))
    except Exception as exc:  # noqa: BLE001 — an unreadable warehouse is an inconsistent state
        result["problems"].append(f"the warehouse cannot be read after the kill: {exc}")
    result["inconsistent"] = int(bool(result["problems"]))

    started = time.monotonic()
    rerun = _run(folder, world.v2, MONTH)
    LANE_DURATION[threading.get_ident()] = time.monotonic() - started
    result["rerun_returncode"] = rerun.returncode
    if rerun.returncode != 0:
        result["problems"].append(f"the re-run failed: {(rerun.stdout + rerun.stderr)[-1500:]}")
    else:
        after = tables.canonical(tables.snapshot(folder / "wh.duckdb"), folder=world.root)
        differences = tables.diff(after, world.b)
        if differences:
            result["problems"].append(f"the re-run does not give B: {differences[:8]}")
            result["rows_lost"] += tables.rows_differing(after, world.b, ROWS_TABLES)
    zombies = started_runs(folder / "dagster_home")
    if zombies:
        result["problems"].append(f"runs still STARTED in the instance after the re-run: {zombies}")
    result["ok"] = not result["problems"]
    summary.record("trial", f"trial{i:02d}", **result)
    if result["ok"]:
        shutil.rmtree(folder, ignore_errors=True)
    return result


def test_sigkill_trials_leave_every_partition_whole(world):
    with ThreadPoolExecutor(max_workers=LANES) as pool:
        results = list(pool.map(lambda i: trial(world, i), range(TRIALS)))
    lines = [f"trial {r['trial']:02d} killed {r['delay_s']:5.2f}s into "
             f"{r['mode'] if r['mode'] != 'time' else 'the run'} ({r['phase']}): "
             f"state {r.get('state', '?')}, re-run rc {r.get('rerun_returncode')}"
             + (f" — {'; '.join(r['problems'])}" if r["problems"] else "") for r in results]
    print("\n".join(lines))
    assert len(results) >= 20 or TRIALS < 20
    bad = [line for line, r in zip(lines, results, strict=True) if not r["ok"]]
    assert not bad, f"{len(bad)} of {len(results)} trials not consistent:\n" + "\n".join(bad)
