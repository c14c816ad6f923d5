"""The fault suite's summary: one line at the end of the session, the figures in `results.json`.

Every case and trial records its outcome (`record(...)`) as one JSON file in a records folder
shared by the pytest-xdist workers; the controlling process prints the summary and writes the same
figures to `qa_pipeline_tests/faults/results.json` (gitignored). Loaded by `faults/conftest.py`
and, because pytest-xdist's controller never loads a sub-folder's conftest, by `-p` in the
Makefile's test targets.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from collections import Counter
from pathlib import Path

OUTCOMES = ("quarantined", "rejected", "ignored", "accepted")
HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results.json"
RECORDS_ENV = "QA_FAULTS_RECORDS"


def _records_dir() -> Path | None:
    """The session's records folder, made by the controlling process (None: no summary is made in
    this session — pytest-xdist without `-p qa_pipeline_tests.faults.summary` — nothing to record)."""
    value = os.environ.get(RECORDS_ENV)
    return Path(value) if value else None


def record(kind: str, name: str, **fields) -> None:
    """One outcome of the session: kind = case | trial | repeat | hostile."""
    folder = _records_dir()
    if folder is None:
        return
    folder.mkdir(parents=True, exist_ok=True)
    payload = {"kind": kind, "name": name, **fields}
    (folder / f"{kind}-{uuid.uuid4().hex}.json").write_text(json.dumps(payload, default=str))


def pytest_configure(config):
    if hasattr(config, "workerinput"):  # an xdist worker: the controller made the folder
        return
    folder = Path(tempfile.mkdtemp(prefix="qa_faults_records_"))
    os.environ[RECORDS_ENV] = str(folder)  # inherited by the xdist workers it starts


def summarize(records: list[dict]) -> dict:
    cases = [r for r in records if r["kind"] == "case"]
    trials = [r for r in records if r["kind"] == "trial"]
    by_case: dict[str, dict] = {}
    for r in cases:  # a case may run through the gate and through a month run: one case
        seen = by_case.setdefault(r["name"], {"expected": r["expected"], "ok": True, "modes": [],
                                              "rows_lost": 0, "input": r.get("input")})
        seen["ok"] = seen["ok"] and r["ok"]
        seen["modes"].append(r["mode"])
        seen["rows_lost"] += int(r.get("rows_lost") or 0)
    outcomes = Counter(c["expected"] for c in by_case.values())
    repeat = [r for r in records if r["kind"] == "repeat"]
    others = [r for r in records if r["kind"] in ("repeat", "hostile")]
    return {
        "cases": len(by_case),
        "outcomes": {k: outcomes.get(k, 0) for k in OUTCOMES},
        "inputs": dict(sorted(Counter(c["input"] for c in by_case.values()).items())),
        "case_runs": {"gate": sum("gate" in c["modes"] for c in by_case.values()),
                      "month": sum("month" in c["modes"] for c in by_case.values())},
        "cases_failed": sorted(n for n, c in by_case.items() if not c["ok"]),
        "failures": {f"{r['name']} [{r['mode']}]": r.get("detail", "") for r in sorted(cases, key=lambda r: r["name"])
                     if not r["ok"]},
        "kill_trials": len(trials),
        "inconsistent_states": sum(int(t.get("inconsistent", 0)) for t in trials)
        + sum(not r["ok"] for r in repeat),
        "rows_lost": sum(c["rows_lost"] for c in by_case.values())
        + sum(int(t.get("rows_lost", 0)) for t in trials),
        "trials_failed": sorted(t["name"] for t in trials if not t["ok"]),
        "trial_moments": dict(sorted(Counter(t.get("phase", "?") for t in trials).items())),
        "trials": [{k: t.get(k) for k in ("name", "mode", "delay_s", "phase", "state", "rerun_returncode", "ok", "problems")}
                   for t in sorted(trials, key=lambda t: t["name"])],
        "other_checks": {r["name"]: ("ok" if r["ok"] else f"FAILED: {r.get('detail', '')}") for r in others},
    }


def summary_line(s: dict) -> str:
    o = s["outcomes"]
    return (f"fault suite: {s['cases']} cases ({', '.join(f'{k} {o[k]}' for k in OUTCOMES)}), "
            f"{s['kill_trials']} kill trials, {s['inconsistent_states']} inconsistent states, "
            f"{s['rows_lost']} rows lost")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if hasattr(config, "workerinput"):
        return
    folder = _records_dir()
    if folder is None or not folder.is_dir():
        return
    records = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
    shutil.rmtree(folder, ignore_errors=True)
    if not records:
        return
    s = summarize(records)
    s["summary"] = summary_line(s)
    if s["cases_failed"]:
        s["summary"] += f"; {len(s['cases_failed'])} case(s) not as expected"
    RESULTS.write_text(json.dumps(s, indent=2) + "\n")
    terminalreporter.write_sep("=", "fault suite")
    terminalreporter.write_line(s["summary"])
    if s["cases_failed"]:
        terminalreporter.write_line("not as expected: " + ", ".join(s["cases_failed"]))
    for name, verdict in s["other_checks"].items():
        terminalreporter.write_line(f"{name}: {verdict[:300]}")
    if s["trials_failed"]:
        terminalreporter.write_line("kill trials not consistent: " + ", ".join(s["trials_failed"]))
    terminalreporter.write_line(f"figures: {RESULTS.relative_to(HERE.parents[1])}")


