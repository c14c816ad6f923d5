"""Great Expectations, run from Dagster asset checks, with a Data Docs site in QA_REPORTS_DIR.

A file-backed GX project lives under the Dagster home (suites and validation results); the
Data Docs site is built into `QA_REPORTS_DIR/data_docs/`. GX is imported lazily (≈3 s) and its
progress bars are off. A suite "passes" when no critical expectation failed: GX's own `success`
is False even when only warnings failed, so the gate reads the highest failed severity.
"""

from __future__ import annotations

import fcntl
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import pandas as pd

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

    def validate(self, name: str, frame: pd.DataFrame, expectations: list, partition: str) -> GateOutcome:
        import great_expectations as gx

        project = resolve_path(self.project_dir)
        ctx = _context(project, resolve_path(self.docs_dir))
        with _exclusive(project):
            source = ctx.data_sources.add_or_update_pandas("qa_pipeline")
            asset = next((a for a in source.assets if a.name == name), None) or source.add_dataframe_asset(name)
            batch = next((b for b in asset.batch_definitions if b.name == "whole"), None) or \
                asset.add_batch_definition_whole_dataframe("whole")
            suite = gx.ExpectationSuite(name=name)
            for e in expectations:
                suite.add_expectation(e)
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
        order = {"info": 0, "warning": 1, "critical": 2}
        worst = max((f["severity"] for f in failures), key=order.get, default=None)
        return GateOutcome(passed=worst != "critical", max_failed_severity=worst, evaluated=evaluated,
                           failures=failures, docs_index=str(resolve_path(self.docs_dir) / "index.html"))

    def build_docs(self) -> Path:
        """Rebuild the Data Docs site from the stored suites and results; returns index.html."""
        project = resolve_path(self.project_dir)
        ctx = _context(project, resolve_path(self.docs_dir))
        with _exclusive(project):
            ctx.build_data_docs(site_names=[SITE])
        return resolve_path(self.docs_dir) / "index.html"
