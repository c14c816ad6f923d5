"""Comment themes: the words and short phrases that set error comments in a scope apart.

Comments are redacted first (`domain.redaction`), placeholders removed, then counted per comment
(a term counts once per comment) with scikit-learn's CountVectorizer. Distinctiveness is the
log-odds ratio with an informative Dirichlet prior (Monroe, Colaresi & Quinn 2008, "Fightin'
Words", eq. 16–22): error comments in the scope against every other comment of the month.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer

from qa_pipeline.domain.redaction import redact_series

PLACEHOLDERS = r"\[(?:email|phone|handle|ip|url)\]"
TOKEN = r"(?u)\b[a-z]{2,}(?:\.\d+)?\b"
TOP_TERMS = 10
MIN_COMMENTS = 3
MIN_Z = 1.96
# words every audit comment uses, which say nothing about a theme
STOP_WORDS = sorted(ENGLISH_STOP_WORDS | {"did", "case", "call", "decision", "moderator", "content", "agree"})


def clean_comments(comments: pd.Series) -> pd.Series:
    """Redacted, placeholder-free, lower-case text ('' for missing)."""
    text = redact_series(comments).fillna("").str.replace(PLACEHOLDERS, " ", regex=True)
    # markup is not a theme: drop tags, keep their text
    return text.str.replace(r"<[^>]{0,200}>", " ", regex=True).str.lower()


def log_odds_z(y_scope: np.ndarray, y_rest: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """z-scores of the log-odds ratio with informative Dirichlet prior `prior` (α_w)."""
    a0 = prior.sum()
    n_i, n_j = y_scope.sum(), y_rest.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = (np.log((y_scope + prior) / (n_i + a0 - y_scope - prior))
                 - np.log((y_rest + prior) / (n_j + a0 - y_rest - prior)))
        var = 1.0 / (y_scope + prior) + 1.0 / (y_rest + prior)
        return delta / np.sqrt(var)


def comment_themes(audits: pd.DataFrame, month) -> pd.DataFrame:
    """`qa_reporting.comment_themes`: per scope (overall, queue:<q>, root_cause:<c>) the top terms."""
    columns = ["month", "scope", "term", "errors_with_term", "errors_with_comment", "share", "z_score", "rank"]
    text = clean_comments(audits["auditor_comment"])
    has_text = text.str.strip().ne("")
    if has_text.sum() < 2:
        return pd.DataFrame(columns=columns)
    vec = CountVectorizer(binary=True, ngram_range=(1, 2), stop_words=STOP_WORDS, token_pattern=TOKEN, min_df=2)
    try:
        matrix = vec.fit_transform(text[has_text])
    except ValueError:  # every comment was stop words only
        return pd.DataFrame(columns=columns)
    terms = vec.get_feature_names_out()
    docs = audits.loc[has_text]
    err = docs["is_error_final"].astype(bool).to_numpy()
    total = np.asarray(matrix.sum(axis=0)).ravel().astype(float)
    prior = 0.01 * total  # α_w ∝ the term's frequency in the month, α0 = 1 % of all counts
    scopes = [("overall", err)]
    scopes += [(f"queue:{q}", err & (docs["queue"] == q).to_numpy()) for q in sorted(docs["queue"].unique())]
    causes = docs["root_cause"].dropna().unique()
    scopes += [(f"root_cause:{c}", err & (docs["root_cause"] == c).to_numpy()) for c in sorted(causes)]
    parts = []
    for scope, mask in scopes:
        if mask.sum() < MIN_COMMENTS:
            continue
        y_scope = np.asarray(matrix[mask].sum(axis=0)).ravel().astype(float)
        y_rest = total - y_scope
        z = log_odds_z(y_scope, y_rest, prior)
        keep = (y_scope >= MIN_COMMENTS) & (z > MIN_Z)
        if not keep.any():
            continue
        frame = pd.DataFrame({"term": terms[keep], "errors_with_term": y_scope[keep].astype("int64"),
                              "z_score": z[keep]})
        frame = frame.sort_values(["z_score", "term"], ascending=[False, True]).head(TOP_TERMS)
        frame["errors_with_comment"] = int(mask.sum())
        frame["share"] = frame["errors_with_term"] / mask.sum()
        frame["rank"] = np.arange(1, len(frame) + 1)
        frame.insert(0, "scope", scope)
        parts.append(frame)
    if not parts:
        return pd.DataFrame(columns=columns)
    out = pd.concat(parts, ignore_index=True)
    out.insert(0, "month", pd.Timestamp(month))
    return out[columns]
