"""The Training & Quality dashboard: a Streamlit page over the published `qa_reporting` tables.

Run with `qa-pipeline dashboard` (or `make dashboard`), not directly. Data text is shown through
Streamlit's text elements and tables (escaped by the browser's DOM, never as HTML or Markdown);
CSV downloads neutralise spreadsheet formulas.
"""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from qa_pipeline.dashboard import figures as fig
from qa_pipeline.dashboard.source import NoDataYet, open_source
from qa_pipeline.domain.redaction import neutralise_formulas
from qa_pipeline.settings import Thresholds

st.set_page_config(page_title="Training & Quality dashboard", layout="wide")
alt.data_transformers.disable_max_rows()
PERCENT = alt.Axis(format=".1%")
SERIES = alt.Scale(scheme="tableau10")
VITAL_FEW = alt.Color("vital_few:N", title="vital few", scale=alt.Scale(domain=[True, False], range=["#c0392b", "#9ecae1"]))
MONTH_X = alt.X("month:T", title="month", axis=alt.Axis(format="%Y-%m", tickCount={"interval": "month", "step": 1}))


@st.cache_data(show_spinner=False, max_entries=2)
def load(version: str, _source) -> dict[str, pd.DataFrame]:
    return _source.load()


def table_and_csv(frame: pd.DataFrame, key: str, note: str | None = None) -> None:
    """Every chart's table view and its CSV download."""
    with st.expander("Table", expanded=False):
        if note:
            st.text(note)
        st.dataframe(frame, hide_index=True, width="stretch")
    st.download_button("Download CSV", neutralise_formulas(frame).to_csv(index=False).encode("utf-8"),
                       file_name=f"{key}.csv", mime="text/csv", key=f"csv_{key}", on_click="ignore")


def chart(title: str, spec: alt.Chart | None, frame: pd.DataFrame, key: str, empty: str) -> None:
    st.subheader(title)
    if frame.empty:
        st.info(empty)
        return
    if spec is not None:
        st.altair_chart(spec, width="stretch")
    table_and_csv(frame, key)


def month_text(m) -> str:
    return pd.Timestamp(m).strftime("%Y-%m")


# -- data -----------------------------------------------------------------------------------------
try:
    source = open_source()
    version = source.version()
    data = load(version, source)
except (NoDataYet, ValueError) as exc:
    st.title("Training & Quality dashboard")
    st.error(str(exc))
    st.stop()
T = {name.split(".", 1)[1]: frame for name, frame in data.items()}
qm = T["quality_metrics"]
target = Thresholds.from_env().target_accuracy
if qm.empty:
    st.title("Training & Quality dashboard")
    st.error("No published quality_metrics yet: run a month first (`make demo`).")
    st.stop()

# -- filters --------------------------------------------------------------------------------------
months = [month_text(m) for m in fig.months_published(qm)]
with st.sidebar:
    st.header("Filters")
    first = st.selectbox("From month", months, index=0, key="first_month")
    last = st.selectbox("To month", months, index=len(months) - 1, key="last_month")
    chosen = {}
    for dim in fig.FILTER_DIMENSIONS:
        chosen[dim] = tuple(st.multiselect(fig.LABELS[dim], fig.options(qm, dim), key=f"filter_{dim}",
                                           placeholder="all"))
    st.caption(f"Target accuracy {target:.0%} (QA_TARGET_ACCURACY)")
    st.caption(f"Data: {version}")
if first > last:
    first, last = last, first
sel = fig.Selection(pd.Timestamp(first), pd.Timestamp(last), {k: v for k, v in chosen.items() if v})

st.title("Training & Quality dashboard")
st.text(f"{first} to {last} · published qa_reporting figures · accuracy pooled over the months "
        "(1 − errors / audits) with its 95 % Wilson interval")

# -- headline: the selection ----------------------------------------------------------------------
summary = fig.selection_summary(qm, sel)
for row in summary.head(4).itertuples():
    st.text(row.series, help=None)
    c1, c2, c3, c4 = st.columns([2, 2, 2, 3])
    c1.metric("Accuracy", f"{row.accuracy:.2%}", delta=f"{(row.accuracy - target) * 100:+.2f} pp vs target", border=True)
    c2.metric("Audits", f"{row.audits:,}", border=True)
    c3.metric("Errors", f"{row.errors:,}", border=True)
    c4.metric("95 % interval", f"{row.accuracy_ci_low:.2%} – {row.accuracy_ci_high:.2%}", border=True)
table_and_csv(summary, "selection", note="The selection, pooled over the month range.")
if len(sel.segments()) > 1:
    st.caption("Each chosen segment is a series of its own: the warehouse publishes one dimension at a time "
               "(and site × queue), not every intersection of filters.")

tabs = st.tabs(["Accuracy", "Site × queue", "Errors & alerts", "Root causes & drivers", "Calibration",
                "Disputes & restatements", "Policy changes & experiments", "Recommendations", "Corrections & warnings"])

# -- accuracy over time ---------------------------------------------------------------------------
with tabs[0]:
    series = fig.accuracy_over_time(qm, sel)
    base = alt.Chart(series).encode(x=MONTH_X)
    band = base.mark_area(opacity=0.18).encode(y=alt.Y("accuracy_ci_low:Q", title="accuracy", axis=PERCENT,
                                                       scale=alt.Scale(zero=False)),
                                               y2="accuracy_ci_high:Q", color=alt.Color("series:N", scale=SERIES))
    line = base.mark_line(point=True).encode(
        y="accuracy:Q", color=alt.Color("series:N", scale=SERIES, legend=alt.Legend(orient="bottom")),
        tooltip=["series", alt.Tooltip("month:T", format="%Y-%m"), alt.Tooltip("accuracy:Q", format=".2%"),
                 alt.Tooltip("accuracy_ci_low:Q", format=".2%"), alt.Tooltip("accuracy_ci_high:Q", format=".2%"),
                 "audits:Q"])
    rule = alt.Chart(pd.DataFrame({"target": [target]})).mark_rule(strokeDash=[6, 4], color="firebrick").encode(y="target:Q")
    chart("Accuracy over time, 95 % interval and target", (band + line + rule).properties(height=360),
          series, "accuracy_over_time", "No published month in this range for the selection.")

# -- heat map and drill-down ----------------------------------------------------------------------
with tabs[1]:
    cells = fig.heat_map(qm, sel)
    heat = alt.Chart(cells).encode(x=alt.X("queue:N", title="queue"), y=alt.Y("site:N", title="site"))
    spec = (heat.mark_rect().encode(
        color=alt.Color("accuracy:Q", scale=alt.Scale(scheme="redyellowgreen", domainMid=target), legend=alt.Legend(format=".1%")),
        tooltip=["site", "queue", alt.Tooltip("accuracy:Q", format=".2%"), "audits:Q", "errors:Q"])
        + heat.mark_text(fontSize=11).encode(text=alt.Text("audits:Q", format=","))).properties(height=320)
    chart("Accuracy by site × queue (cell text: audits)", spec, cells, "site_queue_heat_map",
          "No site × queue figures in this range.")
    st.subheader("Drill-down: site → queues → root causes")
    sites = sorted(cells["site"].unique()) if len(cells) else []
    if sites:
        site = st.selectbox("Site", sites, key="drill_site")
        queues = fig.site_queues(qm, sel, site)
        by_queue = alt.Chart(queues).encode(y=alt.Y("queue:N", sort=alt.EncodingSortField("accuracy")))
        points = by_queue.mark_point(filled=True, size=90).encode(
            x=alt.X("accuracy:Q", axis=PERCENT, scale=alt.Scale(zero=False), title="accuracy (95 % interval)"),
            tooltip=["queue", alt.Tooltip("accuracy:Q", format=".2%"), alt.Tooltip("accuracy_ci_low:Q", format=".2%"),
                     alt.Tooltip("accuracy_ci_high:Q", format=".2%"), "audits:Q", "errors:Q"])
        whiskers = by_queue.mark_rule().encode(x="accuracy_ci_low:Q", x2="accuracy_ci_high:Q")
        rule = alt.Chart(pd.DataFrame({"target": [target]})).mark_rule(color="firebrick", strokeDash=[6, 4]).encode(x="target:Q")
        st.text(f"Queues of {site}: accuracy and 95 % interval over the range, worst first")
        st.altair_chart((whiskers + points + rule).properties(height=260), width="stretch")
        table_and_csv(queues, "drill_site_queues")
        queue = st.selectbox("Queue of this site", list(queues["queue"]), key="drill_queue")
        cell = fig.Selection(sel.first_month, sel.last_month, {"site": (site,), "queue": (queue,)})
        cell_series = fig.accuracy_over_time(qm, cell)
        cell_series = cell_series[cell_series["dimension"] == fig.PAIR]
        st.text(f"{site} · {queue}: accuracy by month")
        st.altair_chart(alt.Chart(cell_series).mark_line(point=True).encode(
            x=MONTH_X, y=alt.Y("accuracy:Q", axis=PERCENT, scale=alt.Scale(zero=False)),
            tooltip=[alt.Tooltip("accuracy:Q", format=".2%"), "audits:Q"]).properties(height=200), width="stretch")
        table_and_csv(cell_series, "drill_cell_accuracy")
        causes = fig.root_causes(T["rca_pareto"], sel, queue, site)
        st.text(f"Root causes of {site} · {queue}")
        st.altair_chart(alt.Chart(causes).mark_bar().encode(
            x=alt.X("errors:Q"), y=alt.Y("root_cause:N", sort="-x"), color=VITAL_FEW,
            tooltip=["root_cause", "errors", alt.Tooltip("share:Q", format=".1%")]).properties(height=220), width="stretch")
        table_and_csv(causes, "drill_root_causes")
        drivers = fig.narrow(T["rca_drivers"], sel, {})
        drivers = drivers[(drivers["dimension"] == fig.PAIR) & (drivers["segment"] == f"{site}{fig.PAIR_SEPARATOR}{queue}")]
        st.text(f"{site} · {queue}: contribution to the month-over-month change of the overall error rate")
        table_and_csv(drivers, "drill_cell_drivers")

# -- errors and alerts ----------------------------------------------------------------------------
with tabs[2]:
    trends = fig.of_segments(T["error_trends"], sel)
    trends = trends.assign(series=[fig.label(d, s) for d, s in zip(trends["dimension"], trends["segment"], strict=True)])
    spec = alt.Chart(trends).mark_line(point=True).encode(
        x=MONTH_X, y=alt.Y("error_rate:Q", axis=PERCENT),
        color=alt.Color("series:N", legend=alt.Legend(orient="bottom")),
        tooltip=["series", alt.Tooltip("error_rate:Q", format=".2%"), alt.Tooltip("p_chart_ucl:Q", format=".2%"),
                 "alert", "out_of_control"]).properties(height=300)
    chart("Error rate by month (p-chart limits in the table)", spec, trends, "error_trends",
          "No error trends in this range for the selection.")
    flagged = fig.alerts(T["error_trends"], sel)
    chart("Alerts, improvements and out-of-control points", None, flagged, "alerts",
          "No alert, improvement or out-of-control point in this range for the selection.")

# -- root causes and drivers ----------------------------------------------------------------------
with tabs[3]:
    queues = sel.chosen("queue")
    pick = st.selectbox("Scope", ["overall", *fig.options(qm, "queue")],
                        index=(1 + fig.options(qm, "queue").index(queues[0])) if len(queues) == 1 else 0, key="pareto_scope")
    pareto = fig.root_causes(T["rca_pareto"], sel, None if pick == "overall" else pick)
    bars = alt.Chart(pareto).mark_bar().encode(x=alt.X("root_cause:N", sort="-y"), y="errors:Q",
                                               color=VITAL_FEW)
    cum = alt.Chart(pareto).mark_line(point=True, color="black").encode(
        x=alt.X("root_cause:N", sort=alt.EncodingSortField("errors", order="descending")),
        y=alt.Y("cumulative_share:Q", axis=PERCENT))
    chart("Root causes (Pareto) over the range", alt.layer(bars, cum).resolve_scale(y="independent").properties(height=300),
          pareto, "rca_pareto", "No errors with a root cause in this range.")
    drivers = fig.narrow(T["rca_drivers"], sel, {})
    dims = sorted(drivers["dimension"].unique()) if len(drivers) else []
    if dims:
        dim = st.selectbox("Drivers by", dims, index=dims.index("site") if "site" in dims else 0, key="drivers_dim")
        shown = drivers[drivers["dimension"] == dim]
        spec = alt.Chart(shown).mark_bar().encode(
            x=MONTH_X, y=alt.Y("contribution:Q", axis=PERCENT),
            color="segment:N", tooltip=["segment", alt.Tooltip("contribution:Q", format=".3%"),
                                        alt.Tooltip("rate_effect:Q", format=".3%"), alt.Tooltip("mix_effect:Q", format=".3%")]
        ).properties(height=300)
        chart("Drivers: contributions to the month-over-month change of the overall error rate", spec, shown,
              "rca_drivers", "No drivers in this range.")
    else:
        st.info("No drivers in this range (they need a previous month).")

# -- calibration ----------------------------------------------------------------------------------
with tabs[4]:
    cal = fig.narrow(T["calibration_agreement"], sel, {"queue": "queue"})
    long = cal.melt(id_vars=["session_id", "label", "queue"], value_vars=["percent_agreement", "fleiss_kappa",
                    "krippendorff_alpha", "gwet_ac1", "gold_accuracy"], var_name="measure")
    spec = alt.Chart(long).mark_point(filled=True).encode(
        x=alt.X("session_id:N", title="session"), y=alt.Y("value:Q"), color="measure:N", shape="label:N",
        tooltip=["session_id", "queue", "label", "measure", alt.Tooltip("value:Q", format=".3f")]).properties(height=320)
    chart("Calibration agreement per session", spec, cal, "calibration_agreement",
          "No calibration session in this range for the selection.")

# -- disputes and restatements --------------------------------------------------------------------
with tabs[5]:
    disputes = fig.of_segments(T["dispute_metrics"], sel)
    unsupported = [fig.LABELS[d] for d in sel.filters if d not in ("site", "queue")]
    if unsupported:
        st.caption(f"Disputes are published per site and per queue: {', '.join(unsupported)} do not apply here.")
    disputes = disputes.assign(series=[fig.label(d, s) for d, s in zip(disputes["dimension"], disputes["segment"], strict=True)])
    long = disputes.melt(id_vars=["month", "series"], value_vars=["dispute_rate", "overturn_rate"], var_name="rate")
    spec = alt.Chart(long).mark_line(point=True).encode(
        x=MONTH_X, y=alt.Y("value:Q", axis=PERCENT), color="series:N",
        strokeDash="rate:N").properties(height=280)
    chart("Dispute and overturn rates", spec, disputes, "dispute_metrics", "No disputes published for this selection.")
    restated = disputes[disputes["restated_audits"].fillna(0) > 0]
    runs = fig.narrow(T["report_runs"], sel, {})
    runs = runs[runs["status"] == "restated"][["month", "status", "generated_at", "audits", "accuracy"]]
    chart("Restatements: months whose audits were overturned after publication", None,
          pd.concat([restated[["month", "series", "restated_audits"]], runs], ignore_index=True) if len(restated) or len(runs)
          else restated, "restatements", "No restatement in this range.")

# -- policy changes and experiments ---------------------------------------------------------------
with tabs[6]:
    impact = fig.policy_impact_in_range(T["policy_change_impact"], sel)
    spec = alt.Chart(impact).mark_point(filled=True, size=80).encode(
        y=alt.Y("change_id:N"), x=alt.X("delta:Q", axis=PERCENT, title="error rate after − before"),
        color="status:N") + alt.Chart(impact).mark_rule().encode(y="change_id:N", x="ci_low:Q", x2="ci_high:Q")
    chart("Policy-change impact (28 days before vs after, Newcombe 95 % interval)", spec.properties(height=220), impact,
          "policy_change_impact", "No policy change effective in this range for the selection.")
    exp = T["experiment_readout"]
    read_out = exp[exp["diff"].notna()]
    spec = alt.Chart(read_out).mark_point(filled=True, size=80).encode(
        y="experiment_id:N", x=alt.X("diff:Q", title="treatment − control"), color="decision:N") + \
        alt.Chart(read_out).mark_rule().encode(y="experiment_id:N", x="ci_low:Q", x2="ci_high:Q")
    chart("Experiment readouts (Welch 95 % interval of the difference; pending ones in the table)",
          spec.properties(height=200) if len(read_out) else None, exp,
          "experiment_readout", "No experiment registered.")

# -- recommendations ------------------------------------------------------------------------------
with tabs[7]:
    recs = fig.narrow(T["recommendations"], sel, {})
    owners = sorted(recs["owner"].dropna().unique()) if len(recs) else []
    pick = st.multiselect("Owner", owners, key="rec_owner", placeholder="all owners")
    if pick:
        recs = recs[recs["owner"].isin(pick)]
    counts = recs.groupby(["owner", "priority"]).size().rename("recommendations").reset_index() if len(recs) else recs
    spec = alt.Chart(counts).mark_bar().encode(x="recommendations:Q", y=alt.Y("owner:N", sort="-x"), color="priority:N")
    chart("Recommendations by owner", spec.properties(height=220), recs.sort_values(["owner", "priority", "month"]),
          "recommendations", "No recommendation in this range.")

# -- newer tables: corrected accuracy, early warnings, corrections --------------------------------
with tabs[8]:
    shown_any = False
    for name, title in (("accuracy_corrected", "Accuracy corrected for the audit process's errors"),
                        ("early_warnings", "Early warnings within the month"),
                        ("corrections", "Corrections of published figures")):
        frame = T.get(name)
        if frame is None:
            continue
        shown_any = True
        if frame.empty:  # published, with no row yet (a fresh warehouse has corrected nothing)
            st.subheader(title)
            st.info(f"No {name.replace('_', ' ')} published yet.")
            continue
        if name == "accuracy_corrected":
            rows = fig.of_segments(frame, sel)
        elif name == "early_warnings":  # the chosen segments, or every segment that signalled
            rows = fig.of_segments(frame, sel, overall_when_empty=False)
            if not sel.filters:
                rows = rows[rows["signalled"].fillna(False).astype(bool)].reset_index(drop=True)
        else:
            rows = fig.narrow(frame, sel, {})
        spec = None
        if name == "accuracy_corrected" and len(rows):
            rows = rows.assign(series=[fig.label(d, s) for d, s in zip(rows["dimension"], rows["segment"], strict=True)])
            spec = alt.Chart(rows).mark_line(point=True).encode(
                x=MONTH_X, y=alt.Y("corrected_accuracy:Q", axis=PERCENT,
                                                                           scale=alt.Scale(zero=False)),
                color="series:N").properties(height=260)
        chart(title, spec, rows, name, f"No {name.replace('_', ' ')} in this range for the selection.")
    if not shown_any:
        st.info("Corrected accuracy, early warnings and corrections appear here once the pipeline publishes them.")
