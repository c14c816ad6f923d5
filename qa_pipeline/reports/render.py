"""Jinja2 rendering: HTML autoescaped by Jinja; Markdown escaped for Markdown, once.

HTML templates (`*.html.j2`) use Jinja's autoescape (MarkupSafe): every value is HTML-escaped once.

Markdown templates (`*.md.j2`) are rendered without HTML escaping — `&lt;` in a Markdown file is
shown as `&lt;` by no renderer but as `<`, and escaping it again gave `p &amp;lt; 0.001` — and with
a `finalize` hook instead that passes every `{{ … }}` through `md_inline`, which backslash-escapes
what CommonMark 0.31 and GitHub-flavoured Markdown would read as markup. The `md` filter does the
same for data text (and shows missing values as `–`); its result is marked as done, so nothing is
escaped twice. What `md_inline` does, and why:

| text | becomes | because |
| --- | --- | --- |
| `\\`, `` ` ``, `*`, `[`, `]`, `\\|`, `~`, `@` | `\\` + the character | escapes, code spans, emphasis, links and images (no `[` → no link of any scheme), table cells, strikethrough, e-mail / `mailto:` / `xmpp:` autolinks |
| `_` not between two letters or digits | `\\_` | emphasis; `hate_speech` stays readable (an intraword `_` cannot open or close emphasis) |
| `<` not followed by a space | `&lt;` | raw HTML, HTML comments and `<scheme:…>` autolinks of any scheme (`<javascript:…>`); `p < 0.001` stays as it is |
| `&` that starts a character reference (`&lt;`, `&#60;`) | `\\&` | the reference is shown as written, not decoded |
| `//` not after `http:` / `https:` | `\\//` | `ftp://…` and scheme-relative `//host` autolinks of linkify-style renderers |
| a leading `#`…`######` + space, `>`, `-`/`+`/`=` + space, `1.` / `1)` + space | escaped | headings, block quotes, list items, setext underlines when a value starts a line or a list item |
| CR, LF | a space | a value never ends a table row or a paragraph |

Bare `http(s)://` and `www.` text may still be turned into links by GitHub (http(s) only), but
report text is redacted first (`domain.redaction`): URLs reach the report as `[url]`.
"""

from __future__ import annotations

import math
import re
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


class MarkdownText(str):
    """Text already escaped for Markdown: the Markdown templates' finalize leaves it alone."""


_LINE_END = re.compile(r"\r\n|\r|\n")
_ALWAYS = re.compile(r"[\\`*\[\]|~@]")
_UNDERSCORE = re.compile(r"(?<![^\W_])_|_(?![^\W_])")  # not between two letters / digits
_TAG_OPEN = re.compile(r"<(?!\s|$)")
_CHAR_REF = re.compile(r"&(?=#[0-9]{1,7};|#[xX][0-9a-fA-F]{1,6};|[A-Za-z][A-Za-z0-9]{1,31};)")
_SCHEME_SLASHES = re.compile(r"(?<!http:)(?<!https:)//", re.IGNORECASE)
_BLOCK_START = re.compile(r"^(?:#{1,6}(?=\s|$)|>|[-+=](?=\s|$|[-+=])|\d{1,9}(?=[.)](?:\s|$)))")


def md_inline(text: str) -> str:
    """`text` as inline Markdown that renders as exactly this text (module docstring)."""
    text = _LINE_END.sub(" ", text).strip()
    text = _ALWAYS.sub(r"\\\g<0>", text)
    text = _UNDERSCORE.sub(r"\\_", text)
    text = _CHAR_REF.sub(r"\\&", text)  # before `<` becomes a reference itself
    text = _TAG_OPEN.sub("&lt;", text)
    text = _SCHEME_SLASHES.sub(r"\\//", text)
    start = _BLOCK_START.match(text)
    if start:
        if start.group(0)[0].isdigit():  # "1. x": escape the delimiter
            end = start.end()
            text = text[:end] + "\\" + text[end:]
        else:
            text = "\\" + text
    return text


def md(v) -> MarkdownText:
    """Data text for Markdown (tables, list items): escaped once, one line, `–` when missing."""
    return MarkdownText("–" if _missing(v) else md_inline(str(v)))


def _md_finalize(value) -> str:
    return value if isinstance(value, MarkdownText) else md_inline(str(value))


FILTERS = {"pct": pct, "pp": pp, "num": num, "pval": pval, "md": md}


@lru_cache(maxsize=1)
def environment() -> Environment:
    """HTML templates: autoescaped."""
    env = Environment(loader=PackageLoader("qa_pipeline.reports", "templates"),
                      autoescape=select_autoescape(["html", "j2"], default_for_string=True, default=True),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(FILTERS)
    return env


@lru_cache(maxsize=1)
def markdown_environment() -> Environment:
    """Markdown templates: no HTML escaping; every expression Markdown-escaped once."""
    env = Environment(loader=PackageLoader("qa_pipeline.reports", "templates"), autoescape=False,
                      finalize=_md_finalize, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(FILTERS)
    return env


def render(template: str, **context) -> str:
    env = markdown_environment() if template.endswith(".md.j2") else environment()
    return env.get_template(template).render(**context)
