"""Which later months read a month: derived from the declared partition mappings of the asset graph.

A figure of month X that reads month R (error trends and the p-chart read the quality metrics of the
six months before, change drivers the audits of the month before, the sampling plan the audits of the
two before, recommendations the previous month's metrics, the report the twelve before) is declared
as a `TimeWindowPartitionMapping` (`assets.common.reads_months`). When R is re-run or restated, every
*published* month X in R+1 … R+n whose assets read R is refreshed: those assets and everything
downstream of them in X's run (the cross-month publication, the report), in month order. The
figures of X that do not read other months are not recomputed. Whole-table outputs that read every
month (policy-change impact, experiment readouts, `AllPartitionMapping`) are recomputed by R's own
run and need no refresh.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import dagster as dg
import sqlalchemy as sa

from qa_pipeline.domain.months import add_months, month_key, month_start
from qa_pipeline.schemas import warehouse as wh

PUBLICATION = "month_publication"


@dataclass(frozen=True)
class MonthReader:
    """An asset of month X that reads `parent` of the `months` months before X."""

    asset: str
    parent: str
    months: int

    def reason(self) -> str:
        span = "the month before" if self.months == 1 else f"the {self.months} months before"
        if self.parent == PUBLICATION:
            return f"{self.asset} reads the published figures of {span}"
        return f"{self.asset} reads {self.parent} of {span}"


@dataclass
class Refresh:
    """One later month to refresh: the assets to re-run and why."""

    month: date
    assets: set[str] = field(default_factory=set)
    reasons: dict[str, list[str]] = field(default_factory=dict)  # restated month -> readers' reasons

    def describe(self) -> str:
        why = "; ".join(f"reads {m}: {', '.join(r)}" for m, r in sorted(self.reasons.items()))
        return f"{month_key(self.month)} ({why})"

    def asset_keys(self) -> list[dg.AssetKey]:
        return [dg.AssetKey(a) for a in sorted(self.assets)]


def month_readers(asset_graph) -> list[MonthReader]:
    """Every declared read of earlier months in the graph (time-window mappings reaching back)."""
    readers = []
    for key in asset_graph.get_all_asset_keys():
        node = asset_graph.get(key)
        for parent, mapping in node.partition_mappings.items():
            if isinstance(mapping, dg.TimeWindowPartitionMapping) and mapping.start_offset < 0:
                readers.append(MonthReader(key.to_user_string(), parent.to_user_string(), -mapping.start_offset))
    return sorted(readers, key=lambda r: (r.asset, r.parent))


def _downstream(asset_graph, assets: set[str]) -> set[str]:
    out, todo = set(assets), list(assets)
    while todo:
        node = asset_graph.get(dg.AssetKey(todo.pop()))
        for child in node.child_keys:
            name = child.to_user_string()
            if name not in out:
                out.add(name)
                todo.append(name)
    return out


def refreshes(asset_graph, restated: list[date], published: set[date], skip: set[date] = frozenset()) -> list[Refresh]:
    """The later published months that read any of `restated`, in month order, with the assets to
    re-run in each (readers and their downstream). Months in `skip` (run in full after the
    restated months, so already reading their new version) are left out."""
    readers = month_readers(asset_graph)
    found: dict[date, Refresh] = {}
    for r in sorted(restated):
        by_month: dict[date, list[MonthReader]] = defaultdict(list)
        for reader in readers:
            for k in range(1, reader.months + 1):
                by_month[add_months(r, k)].append(reader)
        for x, rs in by_month.items():
            if x not in published or x in skip or x in restated:
                continue
            entry = found.setdefault(x, Refresh(month=x))
            entry.assets |= {reader.asset for reader in rs}
            entry.reasons.setdefault(month_key(r), [])
            named = {reader.asset for reader in rs if reader.parent != PUBLICATION}
            for reader in rs:
                if reader.parent == PUBLICATION and reader.asset in named:
                    continue  # "reads quality_metrics" already says it
                if reader.reason() not in entry.reasons[month_key(r)]:
                    entry.reasons[month_key(r)].append(reader.reason())
    for entry in found.values():
        entry.assets = _downstream(asset_graph, entry.assets)
    return [found[m] for m in sorted(found)]


def published_months(warehouse) -> set[date]:
    """Months with at least one publication (`qa_core.publications`)."""
    if not warehouse.has_table(wh.publications.fullname):
        return set()
    p = wh.publications
    with warehouse.engine.connect() as conn:
        return {month_start(m) for m in conn.execute(sa.select(p.c.month).distinct()).scalars()}


def refresh_requests(succeeded, instance, warehouse, asset_graph) -> list[dg.RunRequest]:
    """Run requests for the later months that read the month a succeeded run published.

    Only a run that published the month's own figures restates it (a refresh run publishes only
    figures no other month reads). A later month is skipped when a run of it was created after the
    succeeded run ended: that run already reads the new version (a backfill in month order needs no
    refresh)."""
    if "dagster/partition" not in succeeded.tags:
        return []
    selection, steps = succeeded.asset_selection, succeeded.step_keys_to_execute
    if (selection and dg.AssetKey(PUBLICATION) not in selection) or (steps is not None and PUBLICATION not in steps):
        return []
    month = month_start(succeeded.tags["dagster/partition"])
    record = instance.get_run_record_by_id(succeeded.run_id)
    ended_at = None
    if record is not None:  # some run storages leave end_time empty: the last update is the end
        ended_at = record.end_time or record.update_timestamp.timestamp()
    requests = []
    for r in refreshes(asset_graph, [month], published_months(warehouse)):
        key = r.month.isoformat()
        if ended_at is not None:
            later = instance.get_run_records(filters=dg.RunsFilter(
                job_name=succeeded.job_name, tags={"dagster/partition": key},
                created_after=datetime.fromtimestamp(ended_at, UTC)), limit=1)
            if later:
                continue
        requests.append(dg.RunRequest(
            run_key=f"refresh:{key}:after:{succeeded.run_id}", partition_key=key, asset_selection=r.asset_keys(),
            tags={"qa/refresh_of": month_key(month), "qa/refresh_reason": r.describe()[:1000]}))
    return requests
