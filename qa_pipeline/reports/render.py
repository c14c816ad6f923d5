"""Jinja2 rendering (autoescaped HTML; Markdown with HTML-significant characters escaped)."""

from __future__ import annotations

import math
from functools import lru_cache

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def pct(v, digits: int = 1) -> str:
    return "–" if _missing(v) else f"{v * 100:.{digits}f} %"


def pp(v, digits: int = 1) -> str:
    return "–" if _missing(v) else f"{v * 100:+.{digits}f} pp"


def num(v, digits: int = 2) -> str:
    if _missing(v):
        return "–"
    return f"{v:,.0f}" if isinstance(v, int) else f"{v:.{digits}f}"


def pval(v) -> str:
    if _missing(v):
        return "–"
    return "< 0.001" if v < 0.001 else f"{v:.3f}"


def md(v) -> str:
    """Text for Markdown tables: no markup, no table breaks."""
    text = "–" if _missing(v) else str(v)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|").replace("\n", " ")


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(loader=PackageLoader("qa_pipeline.reports", "templates"),
                      autoescape=select_autoescape(["html", "j2"], default_for_string=True, default=True),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(pct=pct, pp=pp, num=num, pval=pval, md=md)
    return env


def render(template: str, **context) -> str:
    return environment().get_template(template).render(**context)
