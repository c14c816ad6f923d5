"""Alerts about a failed run, sent for real: an SMTP server (aiosmtpd) and a Slack-like webhook
(http.server), both started here on loopback; the mail is received and parsed.

The failed run is a real one: the audit gate of a month into which bad rows were planted (rule
counts known by construction) fails its blocking check.
"""

from __future__ import annotations

import csv
import email
import json
import shutil
import socket
import subprocess
import threading
from email import policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest

from qa_pipeline.assets.common import QualityConfig
from qa_pipeline.operations import alerts
from qa_pipeline.resources.raw_store import RawStore
from qa_pipeline.resources.warehouse import Warehouse, dispose_engines
from qa_pipeline.sample_data import SampleSpec, generate

# the plain-text server of these tests takes a login without TLS, on loopback only
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

BAD_TIMESTAMPS = 7
DUPLICATES = 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Inbox:
    def __init__(self):
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_server(tmp_path, request):
    """An SMTP server on loopback with a login (alerts/secret); `request.param`: `none` or `starttls`
    (a self-signed certificate for 127.0.0.1, trusted through SSL_CERT_FILE)."""
    import ssl

    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    mode = getattr(request, "param", "none")
    inbox = Inbox()
    tls_context = None
    if mode == "starttls":
        cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                        str(cert), "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                       check=True, capture_output=True)
        tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls_context.load_cert_chain(cert, key)
        request.getfixturevalue("monkeypatch").setenv("SSL_CERT_FILE", str(cert))

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and auth_data.login == b"alerts" and auth_data.password == b"secret"
        return AuthResult(success=ok)

    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, authenticator=authenticator,
                            auth_required=True, auth_require_tls=mode != "none", tls_context=tls_context,
                            require_starttls=mode == "starttls")
    controller.start()
    try:
        yield mode, port, inbox
    finally:
        controller.stop()


@pytest.fixture
def webhook():
    """A Slack-like incoming webhook on loopback: records the JSON bodies, answers `ok`."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append({"content_type": self.headers["Content-Type"], "body": json.loads(body)})
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/services/T000/B000/XXXX", received
    finally:
        server.shutdown()


def configure(monkeypatch, mode: str, port: int, webhook_url: str = "") -> None:
    monkeypatch.setenv("QA_ALERT_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("QA_ALERT_SMTP_PORT", str(port))
    monkeypatch.setenv("QA_ALERT_SMTP_TLS", mode)
    monkeypatch.setenv("QA_ALERT_SMTP_USER", "alerts")
    monkeypatch.setenv("QA_ALERT_SMTP_PASSWORD", "secret")
    monkeypatch.setenv("QA_ALERT_FROM", "qa-pipeline@example.org")
    monkeypatch.setenv("QA_ALERT_TO", "quality-oncall@example.org, data-eng@example.org")
    monkeypatch.setenv("QA_DAGSTER_URL", "https://dagster.example.org/")
    if webhook_url:
        monkeypatch.setenv("QA_SLACK_WEBHOOK_URL", webhook_url)
    else:
        monkeypatch.delenv("QA_SLACK_WEBHOOK_URL", raising=False)


@pytest.fixture(scope="module")
def failed_gate_run(tmp_path_factory):
    """A real run of February's audit gate that fails: 7 rows with an unreadable `audited_at` and 4
    repeated audit ids planted in a third file (the generated rows are all valid)."""
    from qa_pipeline.assets.ingest import validated_audits

    tmp = tmp_path_factory.mktemp("alerts")
    raw = tmp / "raw"
    generate(SampleSpec(months=["2026-01", "2026-02"], audits_per_month=150, seed=9, bad_row_share=0.0,
                        with_hatecheck=False), raw)
    source = raw / "audits" / "2026-02" / "audits_2026-02_in_house.csv"
    with source.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    planted = [{**r, "audit_id": f"PLANTED-{i}", "audited_at": "the day before yesterday"}
               for i, r in enumerate(rows[:BAD_TIMESTAMPS])]
    planted += [dict(r) for r in rows[BAD_TIMESTAMPS:BAD_TIMESTAMPS + DUPLICATES]]  # ids read earlier
    with (raw / "audits" / "2026-02" / "zz_redelivered.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(planted)
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([validated_audits], partition_key="2026-02-01", instance=instance, raise_on_error=False,
                            resources={"raw_store": RawStore(raw_dir=str(raw)),
                                       "warehouse": Warehouse(url=f"duckdb:///{tmp}/wh.duckdb"),
                                       "quality_config": QualityConfig()})
    assert not result.success
    read = 0
    for path in (raw / "audits" / "2026-02").glob("*.csv"):
        with path.open(newline="") as fh:
            read += sum(1 for _ in csv.DictReader(fh))
    yield instance, result, read
    dispose_engines()
    shutil.rmtree(tmp, ignore_errors=True)


def _received(inbox: Inbox) -> email.message.EmailMessage:
    assert len(inbox.messages) == 1
    sender, recipients, content = inbox.messages[0]
    assert sender == "qa-pipeline@example.org"
    assert recipients == ["quality-oncall@example.org", "data-eng@example.org"]
    return email.message_from_bytes(content, policy=policy.default)


@pytest.mark.parametrize("smtp_server", ["none", "starttls"], indirect=True)
def test_a_failed_gate_is_mailed_with_month_check_rules_and_link(failed_gate_run, smtp_server, monkeypatch):
    mode, port, inbox = smtp_server
    instance, result, read = failed_gate_run
    configure(monkeypatch, mode, port)
    run = instance.get_run_by_id(result.run_id)
    failure = next(e for e in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE))
    context = dg.build_run_status_sensor_context(
        sensor_name="run_failure_alerts", dagster_event=failure.dagster_event, dagster_instance=instance,
        dagster_run=run).for_run_failure()
    alerts.run_failure_alerts(context)

    mail = _received(inbox)
    assert mail["Subject"] == ("[qa-pipeline] 2026-02: run failed — validated_audits:quarantined_share_within_limit")
    assert mail["X-QA-Month"] == "2026-02" and mail["X-QA-Run-Id"] == run.run_id
    body = mail.get_content().replace("\r\n", "\n")
    assert "Month: 2026-02" in body
    assert f"Open: https://dagster.example.org/runs/{run.run_id}" in body
    share = (BAD_TIMESTAMPS + DUPLICATES) / read
    assert (f"- validated_audits:quarantined_share_within_limit (blocking): audits of 2026-02: {share:.2%} of "
            f"{read} rows quarantined (above the 2.00% limit)") in body
    # the first failing rules with their counts, as planted (most first)
    assert f"  first failing rules: audited_at:iso8601 {BAD_TIMESTAMPS}, audit_id:duplicate {DUPLICATES}" in body
    assert f"audits/2026-02/zz_redelivered.csv: {BAD_TIMESTAMPS + DUPLICATES} of {BAD_TIMESTAMPS + DUPLICATES}" in body
    assert "Nothing of this run was published" in body  # the gate stopped the run before publication
    # nothing of a row travels: no moderator or auditor id, no comment
    assert "MOD-" not in body and "AUD-" not in body


def test_slack_gets_the_same_message_and_a_dead_channel_is_named(failed_gate_run, webhook, monkeypatch):
    instance, result, _ = failed_gate_run
    url, received = webhook
    configure(monkeypatch, "none", free_port(), url)  # nothing listens on the SMTP port
    alert = alerts.alert_for_run(instance, instance.get_run_by_id(result.run_id), status="FAILURE")
    with pytest.raises(alerts.AlertNotSent, match=r"e-mail: ConnectionRefusedError"):
        alerts.send(alert)
    # Slack was tried all the same
    assert len(received) == 1 and received[0]["content_type"] == "application/json"
    text = received[0]["body"]["text"]
    assert text.startswith(f"*{alert.subject()}*\n")
    assert "audited_at:iso8601 7, audit_id:duplicate 4" in text and f"/runs/{result.run_id}" in text


def test_an_incomplete_configuration_says_what_is_missing(monkeypatch):
    monkeypatch.setenv("QA_ALERT_SMTP_HOST", "127.0.0.1")
    for name in ("QA_ALERT_FROM", "QA_ALERT_TO", "QA_ALERT_SMTP_USER", "QA_ALERT_SMTP_PASSWORD", "QA_ALERT_SMTP_TLS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("QA_ALERT_SMTP_PASSWORD", "secret")
    alert = alerts.Alert(run_id="r1", job="monthly_quality", status="FAILURE", month="2026-02", url="u")
    with pytest.raises(alerts.AlertNotSent) as caught:
        alerts.send(alert)
    message = str(caught.value)
    assert "QA_ALERT_FROM" in message and "QA_ALERT_TO" in message and "QA_ALERT_SMTP_USER" in message


def test_the_cli_mails_its_own_failed_run(failed_gate_run, smtp_server, monkeypatch):
    mode, port, inbox = smtp_server
    _, result, _ = failed_gate_run
    configure(monkeypatch, mode, port)
    said: list[str] = []
    alerts.alert_cli_failure(result, say=said.append)
    assert said == [f"alert sent by e-mail: {_received(inbox)['Subject']}"]
    assert "validated_audits:quarantined_share_within_limit" in said[0]


def test_alert_sensors_are_registered_and_running():
    from qa_pipeline.definitions import defs

    for name in ("run_failure_alerts", "check_failure_alerts"):
        sensor = defs.resolve_sensor_def(name)
        assert sensor.default_status == dg.DefaultSensorStatus.RUNNING and sensor.description
