"""The Dagster UI and its GraphQL API, served for real on loopback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

QUERY = """
{
  assetNodes { assetKey { path } groupName description hasAssetChecks
               assetChecksOrError { ... on AssetChecks { checks { name blocking } } } }
  repositoriesOrError { ... on RepositoryConnection { nodes { name
      schedules { name cronSchedule executionTimezone pipelineName } } } }
}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, data: bytes | None = None) -> bytes:
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.read()


def test_the_webserver_serves_the_asset_graph_checks_and_schedule(tmp_path):
    port = _free_port()
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "home"), "QA_RAW_DIR": str(tmp_path / "raw"),
           "QA_WAREHOUSE_URL": f"duckdb:///{tmp_path}/wh.duckdb", "QA_REPORTS_DIR": str(tmp_path / "reports")}
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    server = subprocess.Popen(
        [sys.executable, "-m", "dagster_webserver", "-w", str(ROOT / "workspace.yaml"), "-h", "127.0.0.1",
         "-p", str(port)], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                info = json.loads(_get(f"{base}/server_info"))
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    out = server.stdout.read().decode() if server.stdout else ""
                    pytest.fail(f"webserver did not come up:\n{out[-3000:]}")
                time.sleep(1)
        assert "dagster_webserver_version" in info
        answer = json.loads(_get(f"{base}/graphql", json.dumps({"query": QUERY}).encode()))
        assert "errors" not in answer, answer.get("errors")
        nodes = {"/".join(n["assetKey"]["path"]): n for n in answer["data"]["assetNodes"]}
        for asset in ("validated_audits", "audits_clean", "quality_metrics", "error_trends",
                      "calibration_agreement", "policy_change_impact", "experiment_readout"):
            assert asset in nodes, asset
            assert nodes[asset]["description"] and nodes[asset]["groupName"] != "default"
        checks = {c["name"]: c["blocking"] for c in nodes["validated_audits"]["assetChecksOrError"]["checks"]}
        # the audits' gate (blocking), the policy catalogue's (the audits' policy codes are checked
        # against it) and the raw layout's warning check (files and folders no input reads)
        assert checks == {"quarantined_share_within_limit": True, "every_row_accounted_for": True,
                          "policies_quarantined_share_within_limit": True,
                          "policies_every_row_accounted_for": True, "every_file_read": False}
        assert nodes["quality_metrics"]["hasAssetChecks"]
        schedules = [s for repo in answer["data"]["repositoriesOrError"]["nodes"] for s in repo["schedules"]]
        assert sorted((s["name"], s["cronSchedule"], s["executionTimezone"], s["pipelineName"]) for s in schedules) == [
            ("early_warning_daily_schedule", "0 7 * * *", "UTC", "early_warning_daily"),
            ("monthly_quality_schedule", "0 6 2 * *", "UTC", "monthly_quality")]
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
