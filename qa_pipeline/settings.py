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
