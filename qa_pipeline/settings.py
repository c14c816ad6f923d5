"""Paths and thresholds, in one place.

Every figure a reader of the report may ask about ("why is 100 the minimum?") is here with its
default, and every default can be overridden from the environment (`QA_<NAME>` in upper case), so
that a run is reproducible from its environment alone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

PROJECT_ROOT = Path(os.environ.get("QA_PROJECT_ROOT", Path(__file__).resolve().parents[1]))
PARTITIONS_START = "2024-01-01"


def resolve_path(value: str | os.PathLike) -> Path:
    """Relative paths resolve against the project root, never the current directory."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else PROJECT_ROOT / path


def resolve_url(url: str) -> str:
    """A DuckDB URL with a relative file path is made absolute against the project root."""
    prefix = "duckdb:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
        return prefix + str(resolve_path(url[len(prefix):]))
    return url


@dataclass(frozen=True)
class Thresholds:
    """Decision thresholds of the published figures (data contract §3, §4)."""

    target_accuracy: float = 0.95
    """Quality target: accuracy below it is 'below target' in reports and recommendations."""
    max_invalid_fraction: float = 0.02
    """A month whose quarantined share of audit rows exceeds this fails the validation gate."""
    min_n: int = 100
    """Fewest audits a segment needs in both months before a trend alert or a drift flag."""
    min_alert_delta: float = 0.01
    """Smallest rise of an error rate (absolute) that may raise an alert."""
    alert_q: float = 0.05
    """Benjamini–Hochberg q below which a change is significant."""
    p_chart_months: int = 6
    """Months of history behind the p-chart centre line."""
    p_chart_min_months: int = 3
    """Fewest months of history for a p-chart."""
    drift_z: float = 3.0
    """|z| above which an auditor's flag rate counts as drift."""
    margin: float = 0.02
    """Half-width of the 95 % interval the sampling plan aims for."""
    min_gold_accuracy: float = 0.80
    """Calibration raters below this accuracy against gold are flagged."""
    min_moderator_audits: int = 20
    """Fewest audits before a moderator can be named below target."""
    policy_window_days: int = 28
    """Days before / after a policy change compared in the impact analysis."""
    srm_alpha: float = 0.001
    """SRM chi-square p below which an experiment is invalid."""
    theme_min_people: int = 3
    """k of the comment themes' k-anonymity: a term reaches `qa_reporting.comment_themes` (and the
    report) in a scope only when the error comments holding it there were written by at least k
    distinct auditors about at least k distinct moderators; 1 turns the rule off."""

    early_warning_months: int = 3
    """Months before the month whose published error rates are each segment's early-warning baseline."""
    early_warning_odds_ratio: float = 2.0
    """The rise the early-warning CUSUM is tuned to detect: the odds of an error × this."""
    early_warning_family_alpha: float = 0.05
    """Chance that a month without change makes any early-warning chart signal (family-wise)."""
    early_warning_simulations: int = 10_000
    """Simulated in-control months per segment behind each early-warning threshold."""

    min_reaudits: int = 100
    """Fewest expert re-audits behind the audit process's sensitivity and specificity: with fewer,
    `qa_reporting.accuracy_corrected` publishes no corrected figures (NULL, with a note)."""
    reaudit_trailing_months: int = 0
    """Months before the month whose re-audits are pooled with its own to estimate sensitivity and
    specificity (0: the month's own re-audits only; more: narrower intervals, but a change of the
    audit process within the window is averaged away)."""
    reaudit_homogeneity_alpha: float = 0.05
    """Level of the test that the audit process misclassifies alike across the segments of a
    dimension (site, team type, queue): when it rejects, that dimension's segments get no corrected
    figure (one sensitivity and specificity for all would mis-correct them)."""

    def max_invalid_fraction_for(self, input_name: str) -> float:
        """The quarantined-share limit of one raw input (`audits`, `roster`, `disputes`, …):
        `QA_MAX_INVALID_FRACTION_<INPUT>` when set, else `max_invalid_fraction`."""
        raw = os.environ.get(f"QA_MAX_INVALID_FRACTION_{input_name.upper()}")
        return float(raw) if raw not in (None, "") else self.max_invalid_fraction

    @classmethod
    def from_env(cls) -> Thresholds:
        values = {}
        for f in fields(cls):
            raw = os.environ.get(f"QA_{f.name.upper()}")
            if raw is not None:
                values[f.name] = type(getattr(cls, f.name))(raw)
        return cls(**values)


@dataclass(frozen=True)
class Settings:
    raw_dir: Path
    warehouse_url: str
    reports_dir: Path
    dagster_home: Path
    thresholds: Thresholds = field(default_factory=Thresholds)
    gate_chunk_rows: int = 200_000
    """Raw rows the gate reads and validates at a time (`QA_GATE_CHUNK_ROWS`): bounds its memory."""
    raw_known_extras: tuple[str, ...] = ("README.md", ".sample.json")
    """Files at the top of `QA_RAW_DIR` that are not inputs but expected there (`QA_RAW_KNOWN_EXTRAS`,
    comma-separated): logged as ignored in `qa_core.ingest_log` without failing the layout warning."""

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            raw_dir=resolve_path(os.environ.get("QA_RAW_DIR", "data/raw")),
            warehouse_url=resolve_url(
                os.environ.get("QA_WAREHOUSE_URL", "duckdb:///data/warehouse/qa.duckdb")
            ),
            reports_dir=resolve_path(os.environ.get("QA_REPORTS_DIR", "data/reports")),
            dagster_home=resolve_path(os.environ.get("DAGSTER_HOME", ".dagster_home")),
            thresholds=Thresholds.from_env(),
            gate_chunk_rows=int(os.environ.get("QA_GATE_CHUNK_ROWS", "200000")),
            raw_known_extras=_names(os.environ.get("QA_RAW_KNOWN_EXTRAS", "README.md,.sample.json")),
        )


DEFAULT_NULL_LITERALS = "nan,NaN,NULL,null,None,N/A"


def _names(raw: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(n.strip() for n in raw.split(",") if n.strip()))


def null_literals() -> tuple[str, ...]:
    """Cell values that stand for a missing value (`QA_NULL_LITERALS`, comma-separated, exact
    match after trimming): in a required column the gate quarantines them (`<column>:null_literal`),
    in an optional one they read as missing."""
    return _names(os.environ.get("QA_NULL_LITERALS", DEFAULT_NULL_LITERALS))


@dataclass(frozen=True)
class Operations:
    """How the deployment notices deliveries, watches deadlines and tells people (`qa_pipeline.operations`)."""

    raw_sensor_interval_seconds: int = 60
    """Seconds between two looks of `raw_delivery_sensor` at the raw folder (`QA_RAW_SENSOR_INTERVAL_SECONDS`)."""
    raw_settle_seconds: float = 120.0
    """A raw file modified less than this long ago is still being written: its month waits for a later
    tick (`QA_RAW_SETTLE_SECONDS`)."""
    publish_deadline_cron: str = "0 12 3 * *"
    """The month just ended must be published by this cron tick, UTC (`QA_PUBLISH_DEADLINE_CRON`:
    the 3rd at 12:00)."""
    freshness_sensor_interval_seconds: int = 600
    """Seconds between two evaluations of the publication deadline (`QA_FRESHNESS_SENSOR_INTERVAL_SECONDS`)."""
    dagster_url: str = "http://127.0.0.1:3000"
    """The Dagster UI's address as people open it: alerts link to `<it>/runs/<run id>` (`QA_DAGSTER_URL`)."""

    @classmethod
    def from_env(cls) -> Operations:
        env = os.environ.get
        return cls(
            raw_sensor_interval_seconds=int(env("QA_RAW_SENSOR_INTERVAL_SECONDS", "60")),
            raw_settle_seconds=float(env("QA_RAW_SETTLE_SECONDS", "120")),
            publish_deadline_cron=env("QA_PUBLISH_DEADLINE_CRON", "0 12 3 * *"),
            freshness_sensor_interval_seconds=int(env("QA_FRESHNESS_SENSOR_INTERVAL_SECONDS", "600")),
            dagster_url=env("QA_DAGSTER_URL", "http://127.0.0.1:3000").rstrip("/"),
        )


@dataclass(frozen=True)
class AlertChannels:
    """Where alerts go (`qa_pipeline.operations.alerts`): e-mail when `QA_ALERT_SMTP_HOST` is set,
    Slack when `QA_SLACK_WEBHOOK_URL` is set, nowhere otherwise (the failures stay in the UI)."""

    smtp_host: str = ""
    smtp_port: int = 0
    """0: the TLS mode's usual port (587 starttls, 465 ssl, 25 none)."""
    smtp_tls: str = "starttls"
    """`starttls` (upgrade the connection), `ssl` (TLS from the first byte) or `none`."""
    smtp_user: str = ""
    smtp_password: str = field(default="", repr=False)  # secrets never shown in a log or traceback
    sender: str = ""
    recipients: tuple[str, ...] = ()
    slack_webhook_url: str = field(default="", repr=False)
    timeout_seconds: float = 20.0

    @property
    def email(self) -> bool:
        return bool(self.smtp_host)

    @property
    def slack(self) -> bool:
        return bool(self.slack_webhook_url)

    @property
    def any(self) -> bool:
        return self.email or self.slack

    def port(self) -> int:
        return self.smtp_port or {"starttls": 587, "ssl": 465, "none": 25}[self.smtp_tls]

    def problems(self) -> list[str]:
        """What is missing or wrong in the configuration (empty when usable)."""
        out = []
        if self.smtp_tls not in ("starttls", "ssl", "none"):
            out.append(f"QA_ALERT_SMTP_TLS={self.smtp_tls!r}: use starttls, ssl or none")
        if self.email and not self.sender:
            out.append("QA_ALERT_SMTP_HOST is set but QA_ALERT_FROM (the sender address) is not")
        if self.email and not self.recipients:
            out.append("QA_ALERT_SMTP_HOST is set but QA_ALERT_TO (comma-separated recipients) is empty")
        if bool(self.smtp_user) != bool(self.smtp_password):
            out.append("QA_ALERT_SMTP_USER and QA_ALERT_SMTP_PASSWORD go together: set both or neither")
        return out

    @classmethod
    def from_env(cls) -> AlertChannels:
        env = os.environ.get
        return cls(
            smtp_host=env("QA_ALERT_SMTP_HOST", "").strip(),
            smtp_port=int(env("QA_ALERT_SMTP_PORT", "") or 0),
            smtp_tls=env("QA_ALERT_SMTP_TLS", "starttls").strip().lower() or "starttls",
            smtp_user=env("QA_ALERT_SMTP_USER", ""),
            smtp_password=env("QA_ALERT_SMTP_PASSWORD", ""),
            sender=env("QA_ALERT_FROM", "").strip(),
            recipients=_names(env("QA_ALERT_TO", "")),
            slack_webhook_url=env("QA_SLACK_WEBHOOK_URL", "").strip(),
            timeout_seconds=float(env("QA_ALERT_TIMEOUT_SECONDS", "20")),
        )
