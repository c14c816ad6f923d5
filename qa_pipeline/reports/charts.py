"""Charts for the reports: matplotlib PNGs (inlined as data URIs, also written as files) and
tiny inline SVG sparklines for the MBR."""

from __future__ import annotations

import base64
import io
from html import escape

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

PALETTE = ["#1f5f8b", "#d1495b", "#edae49", "#00798c", "#66a182", "#8d96a3", "#2e4057"]


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def label(value) -> str:
    """Data text as a matplotlib label: shown as written. A `$` would start mathtext, which draws
    markup from the data or fails the whole report on a malformed expression."""
    return str(value).replace("$", r"\$")


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def trend_chart(history: pd.DataFrame, dimension: str, target: float, title: str) -> bytes:
    """Accuracy per month for each segment of `dimension` (12 months)."""
    fig, ax = plt.subplots(figsize=(7.5, 3.2))
    rows = history[history["dimension"] == dimension]
    for i, (segment, g) in enumerate(rows.groupby("segment", sort=True)):
        g = g.sort_values("month")
        ax.plot(pd.to_datetime(g["month"]), g["accuracy"], marker="o", ms=3, lw=1.6,
                color=PALETTE[i % len(PALETTE)], label=label(segment))
    ax.axhline(target, color="#444", ls="--", lw=1, label=f"target {target:.0%}")
    ax.set_title(title, fontsize=10, loc="left")
    ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0, decimals=0))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=3, loc="lower left", frameon=False)
    fig.autofmt_xdate()
    return _png(fig)


def heatmap(metrics: pd.DataFrame, target: float) -> bytes:
    """Accuracy by site × queue for the month; cells below target are outlined."""
    pair = metrics[metrics["dimension"] == "site×queue"].copy()
    pair[["site", "queue"]] = pair["segment"].str.split("|", n=1, expand=True)
    grid = pair.pivot(index="site", columns="queue", values="accuracy")
    counts = pair.pivot(index="site", columns="queue", values="audits")
    fig, ax = plt.subplots(figsize=(8.5, 0.45 * max(len(grid), 3) + 1.4))
    im = ax.imshow(grid.to_numpy(dtype=float), cmap="RdYlGn", vmin=min(0.8, np.nanmin(grid.to_numpy(dtype=float))),
                   vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(grid.columns)), [label(c) for c in grid.columns], rotation=35, ha="right", fontsize=7)
    ax.set_yticks(range(len(grid.index)), [label(r) for r in grid.index], fontsize=7)
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            v = grid.iat[i, j]
            if pd.notna(v):
                ax.text(j, i, f"{v:.0%}\n{int(counts.iat[i, j])}", ha="center", va="center", fontsize=6)
                if v < target:
                    ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="black", lw=1.2))
    fig.colorbar(im, ax=ax, fraction=0.025, format=matplotlib.ticker.PercentFormatter(1.0, decimals=0))
    ax.set_title("Accuracy by site × queue (n audits; outlined: below target)", fontsize=10, loc="left")
    return _png(fig)


def pareto_chart(pareto: pd.DataFrame) -> bytes:
    overall = pareto[pareto["scope"] == "overall"].sort_values("rank")
    fig, ax = plt.subplots(figsize=(7.5, 3.0))
    colors = [PALETTE[1] if v else PALETTE[5] for v in overall["vital_few"]]
    x = np.arange(len(overall))
    ax.bar(x, overall["errors"], color=colors)
    ax.set_xticks(x, [label(c) for c in overall["root_cause"]])
    ax2 = ax.twinx()
    ax2.plot(x, overall["cumulative_share"], color=PALETTE[0], marker="o", ms=3)
    ax2.axhline(0.8, color="#444", ls="--", lw=1)
    ax2.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0, decimals=0))
    ax2.set_ylim(0, 1.05)
    ax.set_ylabel("errors")
    ax.tick_params(axis="x", rotation=30, labelsize=7)
    ax.set_title("Root causes of errors (red: the vital few to 80 %)", fontsize=10, loc="left")
    return _png(fig)


def sparkline(values, width: int = 120, height: int = 28, good_up: bool = True) -> str:
    """An inline SVG sparkline; the last point is marked."""
    v = np.asarray([x for x in values if x is not None and not pd.isna(x)], dtype=float)
    if len(v) < 2:
        return ""
    lo, hi = float(v.min()), float(v.max())
    span = hi - lo or 1.0
    xs = np.linspace(2, width - 4, len(v))
    ys = height - 3 - (v - lo) / span * (height - 6)
    points = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys, strict=True))
    rising = v[-1] >= v[-2]
    color = "#2e7d32" if rising == good_up else "#c62828"
    label = escape(f"from {v[0]:.4g} to {v[-1]:.4g}")
    return (f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="{label}"><polyline fill="none" stroke="#607d8b" stroke-width="1.5" points="{points}"/>'
            f'<circle cx="{xs[-1]:.1f}" cy="{ys[-1]:.1f}" r="2.5" fill="{color}"/></svg>')
