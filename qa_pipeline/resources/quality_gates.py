"""Expectation suites run from Dagster asset checks: Great Expectations on pandas with a Data Docs
site in QA_REPORTS_DIR, or the same expectations as SQL counts inside the warehouse.

A file-backed GX project lives under the Dagster home (suites and validation results); the
Data Docs site is built into `QA_REPORTS_DIR/data_docs/`. GX is imported lazily (≈3 s) and its
progress bars are off. A suite "passes" when no critical expectation failed: GX's own `success`
is False even when only warnings failed, so the gate reads the highest failed severity.

`validate_in_engine` runs a suite over an ibis table (a large staged table) as one aggregate
query, one unexpected count per expectation, with GX's semantics (missing values are not
unexpected, except to a not-null expectation; a unique column's unexpected rows are all the rows
of a repeated value) and the same failure records, so both paths report alike.
"""

from __future__ import annotations

import fcntl
import threading
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import ibis
import ibis.expr.types as ir
import pandas as pd

from qa_pipeline.schemas.expectations import Expectation
from qa_pipeline.settings import resolve_path

_CONTEXTS: dict[str, object] = {}
_LOCK = threading.Lock()
SITE = "qa_data_docs"


@dataclass
class GateOutcome:
    passed: bool
    max_failed_severity: str | None
    evaluated: int
    failures: list[dict] = field(default_factory=list)
    docs_index: str | None = None


@contextmanager
def _exclusive(project_dir: Path):
    """One process at a time in the GX project (the multiprocess executor runs checks in parallel)."""
    project_dir.mkdir(parents=True, exist_ok=True)
    with _LOCK, open(project_dir / ".qa.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _context(project_dir: Path, docs_dir: Path):
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    key = f"{project_dir}|{docs_dir}"
    with _exclusive(project_dir):
        if key not in _CONTEXTS:
            ctx = gx.get_context(mode="file", project_root_dir=str(project_dir))
            ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
            ctx.variables.save()
            if SITE not in (ctx.get_config().data_docs_sites or {}):
                ctx.add_data_docs_site(SITE, {
                    "class_name": "SiteBuilder",
                    "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
                    "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                })
            _CONTEXTS[key] = ctx
        return _CONTEXTS[key]


class QualityGates(dg.ConfigurableResource):
    """Runs a GX suite on a DataFrame and updates the Data Docs site."""

    project_dir: str
    docs_dir: str

    def validate(self, name: str, frame: pd.DataFrame, expectations: list[Expectation],
                 partition: str) -> GateOutcome:
        import great_expectations as gx
        import great_expectations.expectations as gxe

        project = resolve_path(self.project_dir)
        ctx = _context(project, resolve_path(self.docs_dir))
        with _exclusive(project):
            source = ctx.data_sources.add_or_update_pandas("qa_pipeline")
            asset = next((a for a in source.assets if a.name == name), None) or source.add_dataframe_asset(name)
            batch = next((b for b in asset.batch_definitions if b.name == "whole"), None) or \
                asset.add_batch_definition_whole_dataframe("whole")
            suite = gx.ExpectationSuite(name=name)
            for e in expectations:
                suite.add_expectation(getattr(gxe, _gx_class(e.type))(**e.kwargs, severity=e.severity))
            suite = ctx.suites.add_or_update(suite)
            definition = ctx.validation_definitions.add_or_update(
                gx.ValidationDefinition(name=name, data=batch, suite=suite))
            # results are stored; the Data Docs site is rebuilt once per run (build_docs), not per
            # suite: a per-suite rebuild grows with every stored result
            checkpoint = ctx.checkpoints.add_or_update(gx.Checkpoint(
                name=f"qa_{name}", validation_definitions=[definition], actions=[],
                result_format={"result_format": "SUMMARY"}))
            result = checkpoint.run(batch_parameters={"dataframe": frame},
                                    run_id=gx.core.run_identifier.RunIdentifier(run_name=f"{name}:{partition}"))
        failures = []
        evaluated = 0
        for run in result.run_results.values():
            for r in run.results:
                evaluated += 1
                if not r.success:
                    cfg = r.expectation_config
                    kwargs = {k: v for k, v in cfg.kwargs.items() if k not in ("batch_id", "result_format")}
                    failures.append({
                        "expectation": cfg.type, "severity": str(cfg.severity.value),
                        "kwargs": kwargs,
                        "unexpected_count": (r.result or {}).get("unexpected_count"),
                        "observed_value": (r.result or {}).get("observed_value"),
                    })
        worst = _worst(failures)
        return GateOutcome(passed=worst != "critical", max_failed_severity=worst, evaluated=evaluated,
                           failures=failures, docs_index=str(resolve_path(self.docs_dir) / "index.html"))

    def build_docs(self) -> Path:
        """Rebuild the Data Docs site from the stored suites and results; returns index.html."""
        project = resolve_path(self.project_dir)
        ctx = _context(project, resolve_path(self.docs_dir))
        with _exclusive(project):
            ctx.build_data_docs(site_names=[SITE])
        return resolve_path(self.docs_dir) / "index.html"


def _gx_class(expectation_type: str) -> str:
    """`expect_column_pair_values_a_to_be_greater_than_b` → `ExpectColumnPairValuesAToBeGreaterThanB`."""
    return "".join(part.capitalize() for part in expectation_type.split("_"))


def _worst(failures: list[dict]) -> str | None:
    order = {"info": 0, "warning": 1, "critical": 2}
    return max((f["severity"] for f in failures), key=order.get, default=None)


# -- the same expectations as SQL counts --------------------------------------------------------
ROWS = "_rows"


def _present(column: ir.Column) -> ir.BooleanValue:
    """Not missing, as GX on pandas sees it: NULL, and NaN in a float column, are missing."""
    present = column.notnull()
    return present & ~column.isnan() if column.type().is_floating() else present


def _unexpected_row(t: ir.Table, e: Expectation) -> ir.BooleanValue:
    """The rows a column-map expectation finds unexpected."""
    k = e.kwargs
    if e.type == "expect_column_values_to_not_be_null":
        return ~_present(t[k["column"]])
    if e.type == "expect_column_values_to_be_between":
        v = t[k["column"]]
        outside = ibis.literal(False)
        if k.get("min_value") is not None:
            outside = outside | (v < k["min_value"])
        if k.get("max_value") is not None:
            outside = outside | (v > k["max_value"])
        return _present(v) & outside
    if e.type == "expect_column_values_to_be_in_set":
        v = t[k["column"]]
        return _present(v) & ~v.isin(list(k["value_set"]))
    if e.type == "expect_column_values_to_not_match_regex":
        v = t[k["column"]]
        return _present(v) & v.re_search(k["regex"])
    if e.type == "expect_column_pair_values_a_to_be_greater_than_b":
        a, b = t[k["column_A"]], t[k["column_B"]]
        below = a < b if k.get("or_equal") else a <= b
        return _present(a) & _present(b) & below
    raise ValueError(f"{e.type} cannot run as a SQL count: keep the suite on Great Expectations "
                     "(Suite.in_engine = False)")


def _repeated_rows(t: ir.Table, columns: list[str]) -> ir.Table:
    """One row, one column `n`: the rows whose key is repeated (every copy counts, as in GX);
    rows whose key is missing altogether are skipped."""
    keyed = t.filter(ibis.or_(*[t[c].notnull() for c in columns]))
    groups = keyed.group_by(columns).aggregate(n=keyed.count())
    repeated = groups.filter(groups.n > 1)
    return repeated.aggregate(n=repeated.n.sum())


def unexpected_counts(t: ir.Table, expectations: list[Expectation]) -> ir.Table:
    """One query, one row: the table's row count (`_rows`) and column `e<i>` = the unexpected
    count of the i-th expectation (the volume check reads `_rows`)."""
    counts = {ROWS: t.count()}
    keys = {}
    for i, e in enumerate(expectations):
        if e.type == "expect_table_row_count_to_be_between":
            continue
        if e.type == "expect_column_values_to_be_unique":
            keys[f"e{i}"] = [e.kwargs["column"]]
        elif e.type == "expect_compound_columns_to_be_unique":
            keys[f"e{i}"] = list(e.kwargs["column_list"])
        else:
            counts[f"e{i}"] = t.count(where=_unexpected_row(t, e))
    out = t.aggregate(**counts)
    for name, columns in keys.items():
        repeated = _repeated_rows(t, columns)
        out = out.cross_join(repeated.select(**{name: repeated.n}))
    return out


def validate_in_engine(table: ir.Table, expectations: list[Expectation],
                       execute: Callable[[ir.Table], pd.DataFrame]) -> tuple[GateOutcome, int]:
    """Run the expectations over `table` inside its engine (one aggregate query, run by `execute`);
    the outcome, in the same form as GX's, and the rows validated."""
    counts = execute(unexpected_counts(table, expectations)).iloc[0]
    rows = int(counts[ROWS])
    failures = []
    for i, e in enumerate(expectations):
        if e.type == "expect_table_row_count_to_be_between":
            low, high = e.kwargs.get("min_value"), e.kwargs.get("max_value")
            if (low is not None and rows < low) or (high is not None and rows > high):
                failures.append({"expectation": e.type, "severity": e.severity, "kwargs": dict(e.kwargs),
                                 "unexpected_count": None, "observed_value": rows})
            continue
        n = counts[f"e{i}"]
        n = 0 if pd.isna(n) else int(n)
        if n:
            failures.append({"expectation": e.type, "severity": e.severity, "kwargs": dict(e.kwargs),
                             "unexpected_count": n, "observed_value": None})
    worst = _worst(failures)
    return GateOutcome(passed=worst != "critical", max_failed_severity=worst, evaluated=len(expectations),
                       failures=failures), rows
