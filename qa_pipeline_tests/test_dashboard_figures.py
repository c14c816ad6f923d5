"""The dashboard's figures and snapshot, without a pipeline run: pooled accuracy against sums and
the Wilson interval written out, the series a selection shows, the drill-down, the atomic swap."""

from __future__ import annotations

import json
import threading

import pandas as pd
import pytest

from qa_pipeline.dashboard import figures as fig
from qa_pipeline.dashboard import snapshot
from qa_pipeline.dashboard.source import AnalystWarehouse, SnapshotSource, open_source
from qa_pipeline_tests.conftest import wilson_closed_form

M1, M2, M3 = pd.Timestamp("2026-01-01"), pd.Timestamp("2026-02-01"), pd.Timestamp("2026-03-01")


def _qm() -> pd.DataFrame:
    rows = [
        # month, dimension, segment, audits, errors, critical
        (M1, "overall", "all", 1000, 60, 5), (M2, "overall", "all", 1200, 48, 3), (M3, "overall", "all", 900, 45, 2),
        (M1, "site", "Dublin", 400, 20, 1), (M2, "site", "Dublin", 500, 35, 2), (M3, "site", "Dublin", 300, 9, 0),
        (M1, "site", "Austin", 600, 40, 4), (M2, "site", "Austin", 700, 13, 1), (M3, "site", "Austin", 600, 36, 2),
        (M2, "queue", "spam", 800, 30, 2), (M3, "queue", "spam", 500, 25, 1),
        (M2, "site×queue", "Dublin|spam", 350, 28, 1), (M3, "site×queue", "Dublin|spam", 200, 6, 0),
        (M2, "site×queue", "Austin|spam", 450, 2, 1), (M2, "site×queue", "Dublin|hate", 150, 7, 1),
    ]
    frame = pd.DataFrame(rows, columns=["month", "dimension", "segment", "audits", "errors", "critical_errors"])
    frame["accuracy"] = 1 - frame["errors"] / frame["audits"]
    frame["accuracy_ci_low"] = frame["accuracy_ci_high"] = float("nan")
    return frame


def test_a_site_over_a_month_range_is_pooled_from_its_sums_with_the_wilson_interval():
    sel = fig.Selection(M2, M3, {"site": ("Dublin",)})
    row = fig.selection_summary(_qm(), sel).iloc[0]
    n, e = 500 + 300, 35 + 9  # written out from the rows above
    low, high = wilson_closed_form(n - e, n)
    assert (row.series, row.audits, row.errors, row.months) == ("Site: Dublin", n, e, 2)
    assert row.accuracy == pytest.approx(1 - e / n, abs=1e-12)
    assert (row.accuracy_ci_low, row.accuracy_ci_high) == (pytest.approx(low, abs=1e-12), pytest.approx(high, abs=1e-12))
    # not the mean of the monthly accuracies (which would be 0.9350)
    assert abs(row.accuracy - (1 - 35 / 500 + 1 - 9 / 300) / 2) > 0.005


def test_a_selection_shows_each_chosen_segment_and_the_site_queue_cells_and_overall_when_nothing_is_chosen():
    assert fig.Selection(M1, M3).segments() == [("overall", "all")]
    sel = fig.Selection(M1, M3, {"site": ("Dublin", "Austin"), "queue": ("spam",), "policy": ("HS.1",)})
    assert sel.segments() == [("site", "Dublin"), ("site", "Austin"), ("queue", "spam"), ("policy", "HS.1"),
                              ("site×queue", "Dublin|spam"), ("site×queue", "Austin|spam")]
    summary = fig.selection_summary(_qm(), sel)
    # segments with no published row (HS.1) are absent rather than shown as zero
    assert list(summary["series"]) == ["Site: Dublin", "Site: Austin", "Queue: spam", "Site × queue: Dublin · spam",
                                       "Site × queue: Austin · spam"]
    assert summary.set_index("series").loc["Site × queue: Dublin · spam", "audits"] == 350 + 200


def test_the_heat_map_and_the_drill_down_pool_site_queue_cells_over_the_range():
    sel = fig.Selection(M2, M3)
    cells = fig.heat_map(_qm(), sel).set_index(["site", "queue"])
    assert cells.loc[("Dublin", "spam"), "audits"] == 550 and cells.loc[("Dublin", "spam"), "errors"] == 34
    assert len(fig.heat_map(_qm(), fig.Selection(M2, M3, {"site": ("Austin",)}))) == 1
    queues = fig.site_queues(_qm(), sel, "Dublin")
    assert list(queues["queue"]) == ["spam", "hate"]  # worst accuracy first: 1 − 34/550 < 1 − 7/150
    assert fig.accuracy_over_time(_qm(), fig.Selection(M3, M3))["audits"].tolist() == [900]


def test_root_causes_over_a_range_are_summed_then_ranked_with_the_vital_few():
    pareto = pd.DataFrame({
        "month": [M1, M2, M2, M2, M3, M3],
        "scope": ["queue:spam", "queue:spam", "queue:spam", "overall", "queue:spam", "queue:spam"],
        "root_cause": ["tooling", "tooling", "process", "tooling", "process", "other"],
        "errors": [100, 10, 30, 99, 50, 10],
    })
    out = fig.root_causes(pareto, fig.Selection(M2, M3), "spam")
    assert out[["root_cause", "errors"]].values.tolist() == [["process", 80], ["other", 10], ["tooling", 10]]  # ties by name
    assert out["share"].tolist() == pytest.approx([0.8, 0.1, 0.1])
    assert out["vital_few"].tolist() == [True, False, False]  # 80 % reached by the first cause


def _frames(n: int) -> dict[str, pd.DataFrame]:
    return {"qa_reporting.quality_metrics": pd.DataFrame({"month": [M1] * n, "audits": range(n)})}


def test_a_snapshot_swap_is_atomic_and_keeps_the_last_snapshots_for_readers(tmp_path):
    assert snapshot.current_snapshot(tmp_path) is None
    first = snapshot.write_snapshot(_frames(3), tmp_path, run_id="r1")
    assert snapshot.current_snapshot(tmp_path).name == first.name
    stop, seen, errors = threading.Event(), set(), []

    def read_while_swapping():
        while not stop.is_set():
            try:
                seen.add(len(SnapshotSource(tmp_path).load()["qa_reporting.quality_metrics"]))
            except Exception as exc:  # a reader must never see a half-written snapshot
                errors.append(repr(exc))

    reader = threading.Thread(target=read_while_swapping)
    reader.start()
    for n in range(4, 12):
        snapshot.write_snapshot(_frames(n), tmp_path, run_id=f"r{n}")
    stop.set()
    reader.join()
    assert errors == []
    assert seen <= set(range(3, 12))
    current = snapshot.current_snapshot(tmp_path)
    assert len(current.read("qa_reporting.quality_metrics")) == 11 and current.manifest["run_id"] == "r11"
    assert len([p for p in (tmp_path / "snapshots").iterdir()]) == snapshot.KEEP
    assert json.loads((tmp_path / snapshot.POINTER).read_text())["snapshot"] == current.name
    # a table not published yet reads as empty, with its columns
    assert current.read("qa_reporting.recommendations").empty


def test_the_source_is_the_snapshot_unless_an_analyst_postgresql_url_is_given(tmp_path, monkeypatch):
    monkeypatch.delenv("QA_DASHBOARD_URL", raising=False)
    monkeypatch.setenv("QA_DASHBOARD_DIR", str(tmp_path))
    assert open_source() == SnapshotSource(tmp_path)
    with pytest.raises(RuntimeError, match="no dashboard snapshot"):
        open_source().version()
    monkeypatch.setenv("QA_DASHBOARD_URL", "postgresql+psycopg://analyst:pw@db/qa")
    assert isinstance(open_source(), AnalystWarehouse)
    monkeypatch.setenv("QA_DASHBOARD_URL", f"duckdb:///{tmp_path}/wh.duckdb")
    with pytest.raises(ValueError, match="only a PostgreSQL URL"):
        open_source()


def test_the_dashboard_command_says_what_to_do_when_nothing_is_published(tmp_path, monkeypatch, capsys):
    from qa_pipeline.cli import main

    monkeypatch.delenv("QA_DASHBOARD_URL", raising=False)
    monkeypatch.setenv("QA_DASHBOARD_DIR", str(tmp_path))
    assert main(["dashboard", "--port", "8599"]) == 2
    assert "run a month first" in capsys.readouterr().err


@pytest.mark.postgres
def test_on_postgresql_the_dashboard_reads_qa_reporting_as_an_analyst_and_refuses_a_login_that_sees_qa_core(
        postgres_url):
    import sqlalchemy as sa

    from qa_pipeline.resources.access import ANALYST, Login, Roles, apply_grants
    from qa_pipeline.resources.warehouse import Warehouse, dispose_engines
    from qa_pipeline.schemas import warehouse as wh

    warehouse = Warehouse(url=postgres_url)
    metrics = _qm().assign(dimension=lambda f: f["dimension"].astype(str))
    full = {c.name: (metrics[c.name] if c.name in metrics else pd.Series([None] * len(metrics), dtype="float64"))
            for c in wh.table("qa_reporting.quality_metrics").columns}
    frame = pd.DataFrame(full)
    for month, part in frame.groupby("month"):
        warehouse.replace_partition("qa_reporting.quality_metrics", part, month.date())
    warehouse.ensure_table(wh.table("qa_core.audits_clean"))
    apply_grants(postgres_url, Roles(), [Login("dash_analyst", "pw-analyst", ANALYST)])
    analyst_url = sa.make_url(postgres_url).set(username="dash_analyst", password="pw-analyst").render_as_string(
        hide_password=False)
    tables = AnalystWarehouse(analyst_url).load()
    assert set(tables) == set(snapshot.reporting_tables())
    read = tables["qa_reporting.quality_metrics"]
    assert len(read) == len(frame) and int(read["audits"].sum()) == int(frame["audits"].sum())
    assert tables["qa_reporting.recommendations"].empty  # not published yet: empty, with its columns
    # the pipeline's own login can read qa_core: the dashboard refuses it
    with pytest.raises(ValueError, match="can read qa_core"):
        AnalystWarehouse(postgres_url).load()
    dispose_engines()
