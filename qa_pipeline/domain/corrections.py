"""The corrections log: what each publication of a month showed, and which figures changed since.

Every publication of a month's own figures keeps its headline figures (`qa_reporting.
publication_history`, a full snapshot: every metric of `HEADLINE_METRICS` for every segment of
`quality_metrics`, also when nothing changed, so that the history answers "what did the report
show on that day" without replaying) and a fingerprint of what they were computed from
(`qa_core.publication_fingerprints`). A correction is a figure of a month whose value differs
between two consecutive publications of that month by more than the tolerance, or that one of
them has and the other has not (a segment that appears or disappears); `qa_reporting.corrections`
is derived from those two tables alone (`derive_corrections`).

The cause compares the two publications' fingerprints:

- `redelivered_files`: a file of the month's figure inputs (`FIGURE_INPUTS`) was added, removed or
  its content (sha256) changed;
- `late_disputes`: the disputes that apply to the month's audits changed (a dispute resolved since,
  or a disputes file changed): audit, outcome and resolution time of every disputed audit;
- `settings_changed`: a setting the figures are computed with (every `Thresholds` value as the
  run saw it, overrides included; the null placeholders `QA_NULL_LITERALS`; the tolerance);
- `code_changed`: qa_pipeline's source (a hash of its `.py` files), its version, or the version of
  a library that computes figures.

`cause` is the first that changed in that order (the month's own data first — a redelivered file
can change anything the month publishes, the disputes that apply to its audits included — then
its disputes, then configuration, then code); `causes` lists every one that changed.
`unattributed` when none did: the month's inputs were read differently because of another
month's publication (an audit id another month published is quarantined here), or the figure moved
by more than the tolerance for a reason no fingerprint holds.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

from qa_pipeline.domain.redaction import neutralise_formula, redact_text

HEADLINE_METRICS: dict[str, tuple[str, str | None]] = {
    "audits": ("audits", None),
    "errors": ("errors", None),
    "critical_errors": ("critical_errors", None),
    "accuracy": ("accuracy", None),
    "error_rate": ("errors", "audits"),
    "critical_error_rate": ("critical_error_rate", None),
    "weighted_accuracy": ("weighted_accuracy", None),
}
"""Metric name → the `quality_metrics` column, or (numerator, denominator) for a ratio of two."""

CAUSES = ("redelivered_files", "late_disputes", "settings_changed", "code_changed")
"""The causes of a correction, in the order of precedence of `cause`."""
UNATTRIBUTED = "unattributed"

FIGURE_INPUTS = ("audits", "roster", "policies")
"""The inputs whose files the month's headline figures are computed from (besides disputes)."""

DEFAULT_TOLERANCE = 1e-12
TOLERANCE_VAR = "QA_CORRECTION_TOLERANCE"

FIGURE_LIBRARIES = ("pandas", "numpy", "scipy", "statsmodels", "ibis-framework", "duckdb", "pyarrow")
"""Libraries whose version is part of the code fingerprint: they compute or carry the figures."""

KEY = ["month", "dimension", "segment", "metric"]


def tolerance() -> float:
    """Relative change below which two published values are the same figure (floating-point noise
    of a sum in another order): `QA_CORRECTION_TOLERANCE`, default 1e-12."""
    raw = os.environ.get(TOLERANCE_VAR)
    value = float(raw) if raw not in (None, "") else DEFAULT_TOLERANCE
    if not (value >= 0 and np.isfinite(value)):
        raise ValueError(f"{TOLERANCE_VAR} = {raw!r}: expected a finite number ≥ 0")
    return value


def headline_figures(quality_metrics: pd.DataFrame) -> pd.DataFrame:
    """`quality_metrics` rows as long figures: month, dimension, segment, metric, value."""
    parts = []
    for metric, (column, denominator) in HEADLINE_METRICS.items():
        value = pd.to_numeric(quality_metrics[column], errors="coerce").astype("float64")
        if denominator is not None:
            den = pd.to_numeric(quality_metrics[denominator], errors="coerce").astype("float64")
            value = (value / den.where(den != 0)).astype("float64")
        parts.append(pd.DataFrame({"month": quality_metrics["month"], "dimension": quality_metrics["dimension"],
                                   "segment": quality_metrics["segment"], "metric": metric, "value": value}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=[*KEY, "value"])


def differs(previous: pd.Series, new: pd.Series, rel_tol: float) -> pd.Series:
    """Whether two published values are different figures: one missing and not the other, or
    |new − previous| > rel_tol · max(|previous|, |new|)."""
    a = pd.to_numeric(previous, errors="coerce").astype("float64")
    b = pd.to_numeric(new, errors="coerce").astype("float64")
    one_missing = a.isna() != b.isna()
    both = a.notna() & b.notna()
    scale = np.maximum(a.abs(), b.abs())
    moved = both & ((b - a).abs() > rel_tol * scale)
    return one_missing | moved


def changed_figures(previous: pd.DataFrame, current: pd.DataFrame, rel_tol: float) -> pd.DataFrame:
    """The figures of one month that differ between two snapshots (month, dimension, segment,
    metric, previous_value, new_value); a figure only one snapshot has is a change too."""
    merged = previous[[*KEY, "value"]].merge(current[[*KEY, "value"]], on=KEY, how="outer",
                                             suffixes=("_previous", "_new"), indicator=True)
    changed = differs(merged["value_previous"], merged["value_new"], rel_tol)
    changed |= merged["_merge"] != "both"
    out = merged[changed].rename(columns={"value_previous": "previous_value", "value_new": "new_value"})
    return out[[*KEY, "previous_value", "new_value"]].sort_values(KEY, ignore_index=True)


# -- fingerprints --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Fingerprint:
    """What one publication's figures were computed from, as text (stored) and hashes (compared)."""

    input_files: str
    """JSON list of [input, source_file, file_sha256] of the month's figure inputs, sorted."""
    disputes_sha256: str
    disputed_audits: int
    overturned_audits: int
    settings: str
    """JSON object of the settings the figures are computed with."""
    code_version: str
    code_sha256: str

    @property
    def inputs_sha256(self) -> str:
        return _sha(self.input_files)

    @property
    def settings_sha256(self) -> str:
        return _sha(self.settings)

    def as_row(self) -> dict:
        return {"input_files": self.input_files, "inputs_sha256": self.inputs_sha256,
                "disputes_sha256": self.disputes_sha256, "disputed_audits": self.disputed_audits,
                "overturned_audits": self.overturned_audits, "settings": self.settings,
                "settings_sha256": self.settings_sha256, "code_version": self.code_version,
                "code_sha256": self.code_sha256}


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def input_files(ingest_log: pd.DataFrame, month) -> str:
    """The month's figure-input files that were read, with their checksums, as sorted JSON."""
    log = ingest_log
    month = pd.Timestamp(month)
    status = log["status"] if "status" in log else pd.Series("read", index=log.index)
    keep = (pd.to_datetime(log["month"]) == month) & log["input"].isin(FIGURE_INPUTS) & status.fillna("read").eq("read")
    rows = sorted({(str(r.input), str(r.source_file), str(r.file_sha256)) for r in log[keep].itertuples()})
    return json.dumps([list(r) for r in rows], ensure_ascii=False)


def disputes_fingerprint(disputed: pd.DataFrame) -> tuple[str, int, int]:
    """A hash of the disputes that apply to the month's audits (audit_id, dispute_outcome and
    dispute_resolved_at in microseconds since the epoch of every disputed audit, lines sorted), the
    disputed audits and the overturned ones."""
    if disputed.empty:
        return _sha(""), 0, 0
    resolved = pd.to_datetime(disputed["dispute_resolved_at"], utc=True).astype("datetime64[us, UTC]")
    micros = pd.Series(resolved.to_numpy(dtype="datetime64[us]").astype("int64"), index=disputed.index)
    text = (disputed["audit_id"].astype("str") + "\t" + disputed["dispute_outcome"].astype("str") + "\t"
            + micros.astype("str").where(resolved.notna(), ""))
    lines = np.sort(text.to_numpy(dtype=object))
    digest = hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()
    return digest, len(disputed), int(disputed["dispute_outcome"].eq("overturned").sum())


HEADLINE_THRESHOLDS: tuple[str, ...] = ("max_invalid_fraction",)
"""The `Thresholds` a headline figure of `quality_metrics` depends on: whether the month passes its
gate. The others (targets, alert levels, windows, early-warning and re-audit settings) change other
tables, never a count of `quality_metrics`, so a change of theirs does not explain a correction."""


def settings_values(thresholds, null_literals: tuple[str, ...], rel_tol: float) -> str:
    """The settings the headline figures are computed with, as sorted JSON: the `Thresholds` they
    depend on (as the run saw them, overrides included), the null placeholders (which rows the gate
    quarantines) and the correction tolerance. Values of settings only, never paths, URLs or
    credentials."""
    values = {f"thresholds.{k}": getattr(thresholds, k) for k in HEADLINE_THRESHOLDS}
    values["null_literals"] = list(null_literals)
    values["correction_tolerance"] = rel_tol
    return json.dumps(values, sort_keys=True, ensure_ascii=False, default=str)


@lru_cache(maxsize=1)
def code_fingerprint() -> tuple[str, str]:
    """(version, sha256): qa_pipeline's version and the libraries' versions; a hash of them and of
    every `.py` file of the package that computes figures (relative path and content, in path
    order): not the dashboard, the operations (sensors, alerts), the report rendering or the CLI,
    whose changes never move a published figure."""
    package = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(p for p in package.rglob("*.py") if not _presentation(p.relative_to(package))):
        digest.update(path.relative_to(package).as_posix().encode("utf-8") + b"\0")
        digest.update(path.read_bytes() + b"\0")
    versions = [f"qa-pipeline {_version('qa-pipeline')}"] + [f"{lib} {_version(lib)}" for lib in FIGURE_LIBRARIES]
    version = ", ".join(versions)
    digest.update(version.encode("utf-8"))
    return version, digest.hexdigest()


PRESENTATION = ("dashboard", "operations", "reports", "cli.py", "runner.py", "progress.py", "hygiene.py")


def _presentation(relative: Path) -> bool:
    return relative.parts[0] in PRESENTATION


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "absent"


# -- causes --------------------------------------------------------------------------------------

def changed_causes(previous: Mapping, current: Mapping) -> list[str]:
    """The causes whose fingerprint differs between two publications (rows of
    `publication_fingerprints`), in the order of precedence."""
    checks = {
        "redelivered_files": "inputs_sha256",
        "late_disputes": "disputes_sha256",
        "settings_changed": "settings_sha256",
        "code_changed": "code_sha256",
    }
    return [cause for cause in CAUSES if previous[checks[cause]] != current[checks[cause]]]


def cause_detail(previous: Mapping, current: Mapping) -> str:
    """What changed, in words: the files, the disputed audits, the settings' names, the versions."""
    parts = []
    if previous["inputs_sha256"] != current["inputs_sha256"]:
        before = {tuple(r[:2]): r[2] for r in json.loads(previous["input_files"])}
        after = {tuple(r[:2]): r[2] for r in json.loads(current["input_files"])}
        files = sorted({k[1] for k in before.keys() ^ after.keys()}
                       | {k[1] for k in before.keys() & after.keys() if before[k] != after[k]})
        shown = ", ".join(files[:5]) + (f" and {len(files) - 5} more" if len(files) > 5 else "")
        parts.append(f"files {shown}")
    if previous["disputes_sha256"] != current["disputes_sha256"]:
        parts.append(f"disputed audits {previous['disputed_audits']} → {current['disputed_audits']}, overturned "
                     f"{previous['overturned_audits']} → {current['overturned_audits']}")
    if previous["settings_sha256"] != current["settings_sha256"]:
        before, after = json.loads(previous["settings"]), json.loads(current["settings"])
        names = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
        parts.append("settings " + ", ".join(names))
    if previous["code_sha256"] != current["code_sha256"]:
        before, after = _versions(previous["code_version"]), _versions(current["code_version"])
        moved = [f"{name} {before.get(name, 'absent')} → {after.get(name, 'absent')}"
                 for name in sorted(before.keys() | after.keys()) if before.get(name) != after.get(name)]
        parts.append("code " + (", ".join(moved) if moved else "source changed"))
    return "; ".join(parts)


def _versions(text: str) -> dict[str, str]:
    """`qa-pipeline 0.1.0, pandas 3.1.1` → {name: version}."""
    return dict(item.rsplit(" ", 1) if " " in item else (item, "") for item in str(text).split(", ") if item)


def corrections(previous_history: pd.DataFrame, history: pd.DataFrame, previous_fingerprint: Mapping,
                fingerprint: Mapping, rel_tol: float) -> pd.DataFrame:
    """The corrections one publication of a month makes to the previous one: the changed
    figures with both values, both publications and the cause."""
    changed = changed_figures(previous_history, history, rel_tol)
    causes = changed_causes(previous_fingerprint, fingerprint)
    changed["previous_published_at"] = previous_fingerprint["published_at"]
    changed["published_at"] = fingerprint["published_at"]
    changed["previous_run_id"] = previous_fingerprint["run_id"]
    changed["run_id"] = fingerprint["run_id"]
    changed["cause"] = causes[0] if causes else UNATTRIBUTED
    changed["causes"] = ",".join(causes) if causes else UNATTRIBUTED
    changed["cause_detail"] = neutralise_formula(redact_text(cause_detail(previous_fingerprint, fingerprint)))
    return changed[CORRECTION_COLUMNS]


CORRECTION_COLUMNS = [*KEY, "previous_value", "new_value", "previous_published_at", "published_at",
                      "previous_run_id", "run_id", "cause", "causes", "cause_detail"]


def derive_corrections(history: pd.DataFrame, fingerprints: pd.DataFrame) -> pd.DataFrame:
    """Every correction, from the whole history and the fingerprints (each publication of a month
    against the one before it, with the tolerance that publication recorded in its settings): what
    `qa_reporting.corrections` holds."""
    out = []
    for _, pubs in fingerprints.sort_values("published_at").groupby("month", sort=True):
        rows = pubs.to_dict("records")
        for prev, cur in itertools.pairwise(rows):
            h = history[pd.to_datetime(history["month"]) == pd.Timestamp(cur["month"])]
            rel_tol = json.loads(cur["settings"]).get("correction_tolerance", DEFAULT_TOLERANCE)
            out.append(corrections(h[h["published_at"] == prev["published_at"]],
                                   h[h["published_at"] == cur["published_at"]], prev, cur, rel_tol))
    if not out:
        return pd.DataFrame(columns=CORRECTION_COLUMNS)
    return pd.concat(out, ignore_index=True)


def corrections_for_report(log: pd.DataFrame, month, since) -> pd.DataFrame:
    """The corrections a month's report lists: to earlier months, published after `since` (the
    first publication of the month before: when its report went out; None: every correction to an
    earlier month). Oldest month first; in a month the overall figures first, then the largest
    changes (relative: |new − old| / max(|old|, |new|); a figure that appeared or disappeared
    counts as 1), then in the order they were published."""
    log = log[pd.to_datetime(log["month"]) < pd.Timestamp(month)]
    if since is not None:
        log = log[pd.to_datetime(log["published_at"], utc=True) > utc(since)]
    order = {m: i for i, m in enumerate(HEADLINE_METRICS)}
    old, new = log["previous_value"].astype("float64"), log["new_value"].astype("float64")
    size = ((new - old).abs() / np.maximum(old.abs(), new.abs())).fillna(1.0)
    return (log.assign(_m=log["metric"].map(order), _overall=log["dimension"].ne("overall"), _size=-size)
            .sort_values(["month", "_overall", "_size", "published_at", "dimension", "segment", "_m"])
            .drop(columns=["_m", "_overall", "_size"]).reset_index(drop=True))


def utc(value) -> pd.Timestamp:
    """A time stamp in UTC (drivers return naive UTC time stamps)."""
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
