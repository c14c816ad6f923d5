"""The deep dive as a Dagster job: launched from the UI's launchpad with run config, on demand.

An op job, not an asset: a deep dive is a question asked of the published warehouse (any month, any
segment), not a table the monthly graph keeps fresh, so it stays out of `monthly_quality` and its
partitions. It writes the same files as `qa-pipeline deep-dive` and records their paths and the
finding as output metadata.
"""


import dagster as dg
from pydantic import Field

from qa_pipeline.assets.common import QUALITY_TEAM, QualityConfig
from qa_pipeline.domain.deep_dive import DIMENSIONS, DeepDiveInputError
from qa_pipeline.reports import deep_dive as report
from qa_pipeline.resources.report_store import ReportStore
from qa_pipeline.resources.warehouse import Warehouse

DEEP_DIVE_JOB = "deep_dive"


class DeepDiveConfig(dg.Config):
    """Which segment of which published month."""

    month: str = Field(description="The published month, YYYY-MM (e.g. 2026-04).")
    where: list[str] = Field(
        description=("Conditions dimension=value, all of which an audit meets (the first names the peers), e.g. "
                     f"[\"site=BPO-B Kuala Lumpur\", \"queue=hate_speech\"]. Dimensions: {', '.join(DIMENSIONS)}."))


@dg.op(
    name="deep_dive_report",
    description=("Writes `QA_REPORTS_DIR/deep-dives/<month>-<slug>/deep_dive.html` and `.md` (charts in "
                 "`charts/`) for one segment of a published month: 12-month accuracy against its peers, the "
                 "rate/mix decomposition of its change, root causes, comment themes, disputes, the early "
                 "warning and the moderators and auditors behind its errors. Reads published tables only."),
    tags={"owner": QUALITY_TEAM},
)
def deep_dive_report(context: dg.OpExecutionContext, config: DeepDiveConfig, warehouse: Warehouse,
                     report_store: ReportStore, quality_config: QualityConfig) -> dg.Output[str]:
    t = quality_config.thresholds()
    try:
        dive = report.deep_dive(warehouse, report_store, config.month, config.where, t.target_accuracy,
                                t.theme_min_people)
    except DeepDiveInputError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    context.log.info(f"deep dive written to {dive.paths['html']}")
    driver = dive.main_driver
    metadata = {
        "html": dg.MetadataValue.path(dive.paths["html"]),
        "markdown": dg.MetadataValue.path(dive.paths["md"]),
        "finding": dg.MetadataValue.md(dive.finding),
        "segment": dg.MetadataValue.text(dive.segment.label),
        "audits": dg.MetadataValue.int(int(dive.history["audits"].iloc[-1])),
        "accuracy": dg.MetadataValue.float(float(dive.history["accuracy"].iloc[-1])),
    }
    if driver is not None:
        metadata["main_driver"] = dg.MetadataValue.text(f"{driver['dimension']} = {driver['segment']}")
        metadata["main_driver_contribution"] = dg.MetadataValue.float(float(driver["contribution"]))
    return dg.Output(dive.paths["html"], metadata=metadata)


@dg.job(
    name=DEEP_DIVE_JOB,
    description=("Deep dive on demand: one segment of one published month, as a file for the quality team "
                 "(names people). Launch it from the launchpad with `month` and `where` in the op's config."),
    tags={"team": "quality-analytics"},
)
def deep_dive_job():
    deep_dive_report()
