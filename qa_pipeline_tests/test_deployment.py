"""Run it for real: `dagster-webserver` and `dagster-daemon` against one PostgreSQL instance (the
README's "Running at scale"); a month's files are copied into the raw folder, the raw-folder sensor
starts the run, and the run succeeds — seen through the webserver's GraphQL API. And `dg` lists the
project's definitions."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import sqlalchemy as sa

from qa_pipeline.sample_data import SampleSpec, generate
from qa_pipeline_tests.test_alerts import free_port

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

RUNS = """
query Runs($sensor: String!) {
  runsOrError(filter: {tags: [{key: "dagster/sensor_name", value: $sensor}]}) {
    ... on Runs { results { runId status tags { key value } } }
    ... on PythonError { message }
  }
}
"""
FAILURE_EVENTS = """
query Logs($runId: ID!) {
  logsForRun(runId: $runId) { ... on EventConnection { events {
    __typename ... on MessageEvent { message } } } }
}
"""
INSTIGATORS = """
{
  repositoriesOrError { ... on RepositoryConnection { nodes { sensors { name sensorState { status } } } } }
  assetNodeOrError(assetKey: {path: ["month_publication"]}) { ... on AssetNode {
    assetChecksOrError { ... on AssetChecks { checks { name blocking } } } } }
}
"""


def graphql(base: str, query: str, variables: dict | None = None) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    req = urllib.request.Request(f"{base}/graphql", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        answer = json.loads(resp.read())
    assert "errors" not in answer, answer["errors"]
    return answer["data"]


def start(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    out = log.open("wb")
    # its own process group: the daemon's code server and run processes are stopped with it
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def tail(path: Path, chars: int = 4000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


@pytest.mark.postgres
@pytest.mark.slow
def test_the_daemon_runs_a_delivered_month_and_the_webserver_shows_it_succeed(tmp_path, postgres_url):
    url = sa.make_url(postgres_url)
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{url.database}_dagster"')
    admin.dispose()
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.postgres.yaml", home / "dagster.yaml")  # as the README prescribes
    delivery, raw = tmp_path / "delivery", tmp_path / "raw"
    generate(SampleSpec(months=["2026-01"], audits_per_month=150, seed=4, with_hatecheck=False), delivery)
    raw.mkdir()
    env = {**os.environ, "DAGSTER_HOME": str(home), "QA_RAW_DIR": str(raw), "QA_WAREHOUSE_URL": postgres_url,
           "QA_REPORTS_DIR": str(tmp_path / "reports"),
           "DAGSTER_PG_HOST": url.host, "DAGSTER_PG_PORT": str(url.port), "DAGSTER_PG_USER": url.username,
           "DAGSTER_PG_PASSWORD": url.password or "", "DAGSTER_PG_DB": f"{url.database}_dagster",
           "QA_RAW_SENSOR_INTERVAL_SECONDS": "2", "QA_RAW_SETTLE_SECONDS": "0",
           "QA_FRESHNESS_SENSOR_INTERVAL_SECONDS": "3600"}
    for name in ("QA_ALERT_SMTP_HOST", "QA_SLACK_WEBHOOK_URL"):
        env.pop(name, None)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    logs = {"webserver": tmp_path / "webserver.log", "daemon": tmp_path / "daemon.log"}
    webserver = start([str(BIN / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
                      env, logs["webserver"])
    daemon = start([str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"], env, logs["daemon"])

    def explain() -> str:
        return "\n".join(f"--- {name}\n{tail(path)}" for name, path in logs.items())

    try:
        started = time.monotonic()
        deadline = started + float(os.environ.get("QA_TEST_DEPLOYMENT_TIMEOUT", "600"))  # a loaded machine is slow
        while True:
            try:
                urllib.request.urlopen(f"{base}/server_info", timeout=5).read()
                break
            except OSError:
                assert webserver.poll() is None and daemon.poll() is None, explain()
                assert time.monotonic() < deadline, "webserver did not come up\n" + explain()
                time.sleep(0.5)
        shown = graphql(base, INSTIGATORS)
        sensors = {s["name"]: s["sensorState"]["status"]
                   for repo in shown["repositoriesOrError"]["nodes"] for s in repo["sensors"]}
        assert {n: sensors.get(n) for n in ("raw_delivery_sensor", "run_failure_alerts", "check_failure_alerts",
                                            "publication_deadline_sensor")} == dict.fromkeys(
            ("raw_delivery_sensor", "run_failure_alerts", "check_failure_alerts", "publication_deadline_sensor"),
            "RUNNING")
        checks = {c["name"]: c["blocking"] for c in shown["assetNodeOrError"]["assetChecksOrError"]["checks"]}
        assert checks.get("freshness_check") is False  # the publication deadline, visible on the asset

        up = time.monotonic()
        # the month's files land in the raw folder
        shutil.copytree(delivery, raw, dirs_exist_ok=True)
        runs: list[dict] = []
        while time.monotonic() < deadline:
            runs = graphql(base, RUNS, {"sensor": "raw_delivery_sensor"})["runsOrError"]["results"]
            if runs and runs[0]["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
                break
            assert daemon.poll() is None, "the daemon stopped\n" + explain()
            time.sleep(2)
        assert runs, "the sensor started no run\n" + explain()
        print(f"deployment: services up in {up - started:.0f} s, run ended {time.monotonic() - up:.0f} s after "
              "the delivery")
        assert len(runs) == 1
        run = runs[0]
        if run["status"] != "SUCCESS":
            events = graphql(base, FAILURE_EVENTS, {"runId": run["runId"]})["logsForRun"]["events"]
            messages = [e.get("message", "") for e in events if "Failure" in e["__typename"]]
            pytest.fail(f"run {run['runId']} ended {run['status']}: {messages[:5]}\n" + explain())
        tags = {t["key"]: t["value"] for t in run["tags"]}
        assert tags["dagster/partition"] == "2026-01-01"
        assert tags["dagster/run_key"].startswith("raw:2026-01:")
        delivered = [p for p in delivery.rglob("*") if p.is_file() and p.name not in ("README.md", ".sample.json")]
        assert tags["qa/delivery"].startswith(f"{len(delivered)} file(s): ")  # every data file of the delivery
    finally:
        stop(daemon)
        stop(webserver)
    # the run, in the one PostgreSQL instance; the month published in the warehouse
    dagster_db = sa.create_engine(url.set(database=f"{url.database}_dagster"))
    with dagster_db.connect() as conn:
        statuses = dict(conn.exec_driver_sql("select run_id, status from runs").fetchall())
    dagster_db.dispose()
    assert statuses[run["runId"]] == "SUCCESS"
    warehouse = sa.create_engine(postgres_url)
    with warehouse.connect() as conn:
        assert conn.exec_driver_sql("select count(*) from qa_core.publications where month = '2026-01-01'").scalar() >= 1
    warehouse.dispose()


def test_dg_checks_and_lists_the_definitions(tmp_path):
    env = {**os.environ, "VIRTUAL_ENV": str(Path(sys.executable).parents[1]), "DAGSTER_HOME": str(tmp_path),
           "QA_RAW_DIR": str(tmp_path / "raw"), "QA_WAREHOUSE_URL": f"duckdb:///{tmp_path}/wh.duckdb",
           "QA_REPORTS_DIR": str(tmp_path / "reports")}
    listed = subprocess.run([str(BIN / "dg"), "list", "defs", "--json"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr[-3000:]
    defs = json.loads(listed.stdout[listed.stdout.index("{"):])
    assets = {a["asset_key"] for a in defs["assets"]}
    assert {"validated_audits", "audits_clean", "quality_metrics", "month_publication", "cross_month_publication"} <= assets
    assert {"raw_delivery_sensor", "run_failure_alerts", "check_failure_alerts", "publication_deadline_sensor",
            "month_refresh_sensor"} <= {s["name"] for s in defs["sensors"]}
    assert "monthly_quality" in {j["name"] for j in defs["jobs"]}
