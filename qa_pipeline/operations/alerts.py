"""Alerts: a failed run, a failed blocking check, an overdue publication — by e-mail and Slack.

One message per run, built from the run's event log: the month, each failed check (asset, check,
whether it blocks, its description) with the first failing rules and their row counts (the gates'
`quarantine_rule_counts` metadata), each failed step with its error's first line, and the run's
address in the Dagster UI (`QA_DAGSTER_URL`). Nothing of a row's content travels: rule names and
counts, file names, and an error's first line after redaction (`domain.redaction`).

- `run_failure_alerts` (a run-failure sensor): every failed run of the code location. A blocking check
  that fails stops its step, so the run fails and this message names the check.
- `check_failure_alerts` (a run-status sensor on success): a run that succeeded although an
  ERROR-severity check failed in it — the publication deadline's freshness check
  (`operations.freshness`) above all, which blocks nothing.
- `qa-pipeline run` sends the same message for a failed run of its own (those runs have no code
  location, so the sensors do not see them).

Channels (`settings.AlertChannels`): e-mail through `smtplib` when `QA_ALERT_SMTP_HOST` is set (port,
TLS mode, login, sender and recipients from the environment), Slack through an incoming webhook when
`QA_SLACK_WEBHOOK_URL` is set. A channel that fails makes the sensor's tick fail (visible in the UI,
and the run is tried again at the next tick).
"""

from __future__ import annotations

import json
import re
import smtplib
import ssl
import urllib.request
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

import dagster as dg

from qa_pipeline.domain.redaction import redact_text
from qa_pipeline.progress import failure_message, is_check_failure
from qa_pipeline.settings import AlertChannels, Operations

RULE_COUNTS = "quarantine_rule_counts"
"""The gates' check metadata naming the quarantined rows per first-failing rule (JSON: rule → rows)."""
FIRST_RULES = 5
PUBLICATIONS = ("month_publication", "cross_month_publication")
_PARTITION_IN_TEXT = re.compile(r"partition ([0-9]{4}-[0-9]{2})-01")


@dataclass(frozen=True)
class FailedCheck:
    asset: str
    check: str
    blocking: bool
    description: str
    rules: tuple[tuple[str, int], ...] = ()
    month: str | None = None

    @property
    def name(self) -> str:
        return f"{self.asset}:{self.check}"

    @property
    def freshness(self) -> bool:
        return self.check.startswith("freshness_check") or "overdue" in self.description.lower()


@dataclass(frozen=True)
class FailedStep:
    step: str
    error: str


@dataclass(frozen=True)
class Alert:
    """What one message says about one run."""

    run_id: str
    job: str
    status: str  # the run's status: FAILURE, SUCCESS
    month: str | None
    url: str
    checks: tuple[FailedCheck, ...] = ()
    steps: tuple[FailedStep, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)
    published: tuple[str, ...] = ()  # the publication assets this run materialized before it ended

    @property
    def headline(self) -> str:
        if self.checks and all(c.freshness for c in self.checks):
            return "publication overdue"
        if self.status == "FAILURE":
            return "run failed"
        return "check failed"

    def subject(self) -> str:
        what = ", ".join(c.name for c in self.checks[:2]) or ", ".join(s.step for s in self.steps[:2])
        month = f"{self.month}: " if self.month else ""
        return f"[qa-pipeline] {month}{self.headline}" + (f" — {what}" if what else "")

    def text(self) -> str:
        lines = [
            f"Month: {self.month or '(no month)'}",
            f"Run: {self.run_id} (job {self.job}) — {self.status}",
            f"Open: {self.url}",
        ]
        if self.tags.get("qa/delivery"):
            lines.append(f"Started by a delivery: {self.tags['qa/delivery']}")
        if self.checks:
            lines += ["", "Failed checks:"]
            for c in self.checks:
                kind = "blocking" if c.blocking else "non-blocking"
                lines.append(f"- {c.name} ({kind}){f' [{c.month}]' if c.month and c.month != self.month else ''}: "
                             f"{c.description}")
                if c.rules:
                    lines.append("  first failing rules: " + ", ".join(f"{r} {n:,}" for r, n in c.rules))
        if self.steps:
            lines += ["", "Failed steps:"]
            lines += [f"- {s.step}: {s.error}" for s in self.steps]
        if self.status == "FAILURE" and self.published:
            lines += ["", f"Published by this run before it failed: {', '.join(self.published)}."]
        elif self.status == "FAILURE":
            lines += ["", "Nothing of this run was published: the previous version of the month stays published."]
        return "\n".join(lines) + "\n"

    def slack_payload(self) -> dict:
        return {"text": f"*{self.subject()}*\n{self.text()}"}


def _short(text: str | None, limit: int = 400) -> str:
    text = redact_text(" ".join((text or "").split()))
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _rules(metadata) -> tuple[tuple[str, int], ...]:
    value = metadata.get(RULE_COUNTS)
    if value is None:
        return ()
    raw = value.value if hasattr(value, "value") else value
    if isinstance(raw, str):
        raw = json.loads(raw)
    items = raw.items() if isinstance(raw, dict) else raw
    ranked = sorted(((str(r), int(n)) for r, n in items), key=lambda rn: (-rn[1], rn[0]))  # most rows first
    return tuple(ranked[:FIRST_RULES])


def _month_of(partition: str | None) -> str | None:
    return partition[:7] if partition else None


def failed_check(evaluation) -> FailedCheck:
    month = _month_of(evaluation.partition)
    if month is None:
        found = _PARTITION_IN_TEXT.search(evaluation.description or "")
        month = found.group(1) if found else None
    return FailedCheck(
        asset=evaluation.asset_key.to_user_string(), check=evaluation.check_name,
        blocking=bool(evaluation.blocking), description=_short(evaluation.description),
        rules=_rules(evaluation.metadata), month=month,
    )


def alert_from_events(run: dg.DagsterRun, events, base_url: str | None = None, status: str | None = None) -> Alert | None:
    """The alert about `run` from its events (DagsterEvent or EventLogEntry), or None when nothing
    in it needs telling: no failed ERROR-severity check and, for a run that did not fail, nothing else."""
    checks, steps, published = [], [], []
    for event in events:
        event = getattr(event, "dagster_event", event)
        if event is None:
            continue
        kind = event.event_type_value
        if kind == "ASSET_CHECK_EVALUATION":
            ev = event.event_specific_data
            if not ev.passed and ev.severity == dg.AssetCheckSeverity.ERROR:
                checks.append(failed_check(ev))
        elif kind == "STEP_FAILURE" and not is_check_failure(event):
            steps.append(FailedStep(event.step_key or "", _short(failure_message(event), 300)))
        elif kind == "ASSET_MATERIALIZATION" and event.asset_key.to_user_string() in PUBLICATIONS:
            published.append(event.asset_key.to_user_string())
    status = status or run.status.value
    if status != "FAILURE" and not checks:
        return None
    base = (base_url or Operations.from_env().dagster_url).rstrip("/")
    month = _month_of(run.tags.get("dagster/partition")) or next((c.month for c in checks if c.month), None)
    return Alert(run_id=run.run_id, job=run.job_name, status=status, month=month, url=f"{base}/runs/{run.run_id}",
                 checks=tuple(sorted(checks, key=lambda c: (not c.blocking, c.name))),  # blocking first
                 steps=tuple(steps), published=tuple(published),
                 tags={k: v for k, v in run.tags.items() if k.startswith("qa/")})


def alert_for_run(instance: dg.DagsterInstance, run: dg.DagsterRun, status: str | None = None) -> Alert | None:
    events = instance.all_logs(run.run_id, of_type={dg.DagsterEventType.ASSET_CHECK_EVALUATION,
                                                    dg.DagsterEventType.STEP_FAILURE,
                                                    dg.DagsterEventType.ASSET_MATERIALIZATION})
    return alert_from_events(run, events, status=status)


# -- channels -------------------------------------------------------------------------------------

def email_message(alert: Alert, channels: AlertChannels) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = alert.subject()
    msg["From"] = channels.sender
    msg["To"] = ", ".join(channels.recipients)
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    msg["Message-ID"] = make_msgid(domain=channels.sender.rpartition("@")[2] or None)
    msg["X-QA-Run-Id"] = alert.run_id
    if alert.month:
        msg["X-QA-Month"] = alert.month
    msg.set_content(alert.text())
    return msg


def send_email(alert: Alert, channels: AlertChannels) -> None:
    msg = email_message(alert, channels)
    context = ssl.create_default_context()
    if channels.smtp_tls == "ssl":
        server = smtplib.SMTP_SSL(channels.smtp_host, channels.port(), timeout=channels.timeout_seconds,
                                  context=context)
    else:
        server = smtplib.SMTP(channels.smtp_host, channels.port(), timeout=channels.timeout_seconds)
    with server:
        if channels.smtp_tls == "starttls":
            server.starttls(context=context)
        if channels.smtp_user:
            server.login(channels.smtp_user, channels.smtp_password)
        server.send_message(msg)


def send_slack(alert: Alert, channels: AlertChannels) -> None:
    body = json.dumps(alert.slack_payload()).encode()
    request = urllib.request.Request(channels.slack_webhook_url, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=channels.timeout_seconds) as response:
        answer = response.read().decode(errors="replace").strip()
        if response.status != 200 or answer not in ("ok", ""):
            raise RuntimeError(f"Slack webhook answered {response.status}: {answer[:200]}")


class AlertNotSent(RuntimeError):
    """A channel refused or could not be reached (the message names which and why)."""


def send(alert: Alert, channels: AlertChannels | None = None) -> list[str]:
    """Send `alert` on every configured channel; the channels used. Every channel is tried; when one
    fails, AlertNotSent names each failure after the others were tried."""
    channels = channels or AlertChannels.from_env()
    problems = channels.problems()
    if problems:
        raise AlertNotSent("alert configuration: " + "; ".join(problems))
    used, failures = [], []
    for name, enabled, fn in (("e-mail", channels.email, send_email), ("slack", channels.slack, send_slack)):
        if not enabled:
            continue
        try:
            fn(alert, channels)
            used.append(name)
        except Exception as exc:  # every channel is tried; the failures are raised together
            failures.append(f"{name}: {type(exc).__name__}: {exc}")
    if failures:
        raise AlertNotSent(f"alert about run {alert.run_id} not sent by " + "; ".join(failures))
    return used


# -- sensors --------------------------------------------------------------------------------------

NO_CHANNEL = "no alert channel configured (QA_ALERT_SMTP_HOST, QA_SLACK_WEBHOOK_URL)"


def _deliver(context, alert: Alert | None):
    channels = AlertChannels.from_env()
    if alert is None:
        return dg.SkipReason("nothing to tell")
    if not channels.any:
        return dg.SkipReason(f"{NO_CHANNEL}: {alert.subject()}")
    used = send(alert, channels)
    context.log.info(f"alert sent by {', '.join(used)}: {alert.subject()}")
    return None


@dg.run_failure_sensor(
    name="run_failure_alerts",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "A failed run (a blocking check that failed, or a step that raised) is told by e-mail "
        "(QA_ALERT_SMTP_*) and Slack (QA_SLACK_WEBHOOK_URL): the month, each failed check with its first "
        "failing rules and counts, each failed step, and the run's address (QA_DAGSTER_URL)."
    ),
)
def run_failure_alerts(context: dg.RunFailureSensorContext):
    return _deliver(context, alert_for_run(context.instance, context.dagster_run, status="FAILURE"))


@dg.run_status_sensor(
    name="check_failure_alerts",
    run_status=dg.DagsterRunStatus.SUCCESS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "A run that succeeded although an ERROR-severity asset check failed in it — the publication "
        "deadline's freshness check above all — is told like a failed run."
    ),
)
def check_failure_alerts(context: dg.RunStatusSensorContext):
    return _deliver(context, alert_for_run(context.instance, context.dagster_run, status="SUCCESS"))


def alert_cli_failure(result, say=print) -> None:
    """`qa-pipeline run`: tell a failed run of the CLI like the sensors tell the daemon's."""
    channels = AlertChannels.from_env()
    if not channels.any or result.success:
        return
    alert = alert_from_events(result.dagster_run, result.all_events, status="FAILURE")
    if alert is None:
        return
    try:
        used = send(alert, channels)
        say(f"alert sent by {', '.join(used)}: {alert.subject()}")
    except AlertNotSent as exc:
        say(f"alert NOT sent: {exc}")
