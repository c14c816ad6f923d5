"""Comment themes from chunks: exactly the frame the whole-month computation gives, in bounded memory.

The oracle is the frozen reference below (the whole-month computation before chunking and before
the k-anonymity rule of terms), with the rule applied to it by brute force (`reference_with_k`):
the terms that pass keep the reference's counts, shares and z-scores; each scope lists the most
distinctive terms that pass.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.feature_extraction.text import CountVectorizer

from qa_pipeline.domain.themes import (
    MIN_COMMENTS,
    MIN_PEOPLE,
    MIN_Z,
    STOP_WORDS,
    TOKEN,
    TOP_TERMS,
    CommentThemeCounts,
    clean_comments,
    comment_themes,
    comment_themes_from_chunks,
    log_odds_z,
)
from qa_pipeline.domain.validation import AUDITS, run_gate
from qa_pipeline.resources.raw_store import RawStore
from qa_pipeline.sample_data import SampleSpec, generate
from qa_pipeline_tests.conftest import python_peak

FEBRUARY = date(2026, 2, 1)
INPUT = ["auditor_comment", "is_error_final", "queue", "root_cause", "auditor_id", "moderator_id"]


# ---------------------------------------------------------------------------------------------
# FROZEN REFERENCE: `domain.themes.comment_themes` as it was before the chunked version (commit
# 98ff8e6), copied verbatim. It is the regression oracle of this file; do not edit it to make a
# test pass.
def reference_comment_themes(audits: pd.DataFrame, month) -> pd.DataFrame:
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
# END OF FROZEN REFERENCE
# ---------------------------------------------------------------------------------------------


def reference_with_k(audits: pd.DataFrame, month, k: int = MIN_PEOPLE) -> pd.DataFrame:
    """The frozen reference without its top-terms cut, the terms of each scope kept only where ≥ k
    auditors wrote them about ≥ k moderators (counted here by brute force over the comments), then
    the top terms of what is left, ranked again."""
    columns = ["month", "scope", "term", "errors_with_term", "errors_with_comment", "share", "z_score", "rank"]
    cut = globals()["TOP_TERMS"]
    globals()["TOP_TERMS"] = 10**9  # the reference reads this module's TOP_TERMS
    try:
        full = reference_comment_themes(audits, month)
    finally:
        globals()["TOP_TERMS"] = cut
    if full.empty:
        return full
    kept = full[people_per_scope_term(audits, full).ge(k).all(axis=1).to_numpy()]
    if kept.empty:
        return pd.DataFrame(columns=columns)
    kept = kept.groupby("scope", sort=False).head(cut).copy()
    kept["rank"] = (kept.groupby("scope", sort=False).cumcount() + 1).astype("int64")
    return kept.reset_index(drop=True)[columns]


def people_per_scope_term(audits: pd.DataFrame, themes: pd.DataFrame) -> pd.DataFrame:
    """Distinct auditors and moderators of the error comments of each row's scope that hold its term."""
    vec = CountVectorizer(binary=True, ngram_range=(1, 2), stop_words=STOP_WORDS, token_pattern=TOKEN,
                          vocabulary=sorted(set(themes["term"])))
    x = vec.transform(clean_comments(audits["auditor_comment"])).tocsc()
    column = {t: i for i, t in enumerate(vec.get_feature_names_out())}
    err = audits["is_error_final"].astype(bool).to_numpy()
    out = []
    for scope, term in zip(themes["scope"], themes["term"], strict=True):
        mask = err.copy()
        if scope != "overall":
            name, value = scope.split(":", 1)
            mask &= (audits[name].astype(object) == value).to_numpy(dtype=bool)
        has = np.zeros(len(audits), dtype=bool)
        has[x[:, [column[term]]].nonzero()[0]] = True
        rows = audits.loc[mask & has]
        out.append((rows["auditor_id"].nunique(), rows["moderator_id"].nunique()))
    return pd.DataFrame(out, columns=["auditors", "moderators"])


def assert_same_themes(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Same terms, counts and order; z-scores to 1e-12."""
    pd.testing.assert_frame_equal(got.drop(columns=["z_score"]), expected.drop(columns=["z_score"]))
    np.testing.assert_allclose(got["z_score"].to_numpy(float), expected["z_score"].to_numpy(float),
                               rtol=0, atol=1e-12)


def _clean_month(root: Path, month: date) -> pd.DataFrame:
    gate = run_gate(RawStore(raw_dir=str(root)).read_month("audits", month), AUDITS, month)
    a = gate.clean
    # an audit is an error when the moderator's action or policy differs from the auditor's (§4)
    is_error = (a.action_moderator != a.action_auditor) | (a.policy_moderator != a.policy_auditor)
    return a.assign(is_error_final=is_error.to_numpy(bool))


@pytest.fixture(scope="module")
def month_audits(tmp_path_factory) -> pd.DataFrame:
    out = tmp_path_factory.mktemp("themes") / "raw"
    generate(SampleSpec(months=["2026-02"], audits_per_month=20_000, seed=5), out)
    return _clean_month(out, FEBRUARY)


def _chunks(frame: pd.DataFrame, size: int):
    for start in range(0, len(frame), size):
        yield frame.iloc[start:start + size]


@pytest.mark.parametrize("chunk_rows", [1_000, None])
def test_chunked_themes_equal_the_frozen_reference_on_a_generated_month(month_audits, chunk_rows):
    expected = reference_with_k(month_audits, FEBRUARY)
    assert len(expected) >= 50 and expected.scope.nunique() >= 8  # a real regression check
    chunks = [month_audits] if chunk_rows is None else _chunks(month_audits, chunk_rows)
    assert_same_themes(comment_themes_from_chunks(chunks, FEBRUARY), expected)


def test_with_the_rule_off_the_themes_are_the_frozen_reference(month_audits):
    expected = reference_comment_themes(month_audits, FEBRUARY)
    assert_same_themes(comment_themes_from_chunks(_chunks(month_audits, 3_000), FEBRUARY, min_people=1), expected)
    without_people = month_audits.drop(columns=["auditor_id", "moderator_id"])
    assert_same_themes(comment_themes(without_people, FEBRUARY, min_people=1), expected)
    with pytest.raises(ValueError, match="auditor_id"):
        comment_themes(without_people, FEBRUARY)


def test_the_rule_matches_the_brute_force_oracle_where_it_removes_terms(sample_raw):
    # 3,000 audits, 6 auditors per queue, one of them drifting (AUD-07): in the small queue scopes
    # some terms come from one or two auditors only
    april = date(2026, 4, 1)
    audits = _clean_month(sample_raw, april)
    reference, expected = reference_comment_themes(audits, april), reference_with_k(audits, april)
    assert len(expected) >= 30 and len(reference) - len(expected) >= 5, (len(reference), len(expected))
    for chunk_rows in (500, None):
        chunks = [audits] if chunk_rows is None else _chunks(audits, chunk_rows)
        assert_same_themes(comment_themes_from_chunks(chunks, april), expected)


def test_arrow_chunks_and_the_whole_frame_give_the_same_themes(month_audits):
    expected = reference_with_k(month_audits, FEBRUARY)
    table = pa.Table.from_pandas(month_audits[INPUT], preserve_index=False)
    assert_same_themes(comment_themes_from_chunks(table.to_batches(max_chunksize=777), FEBRUARY), expected)
    assert_same_themes(comment_themes_from_chunks([table.slice(0, 5_000), table.slice(5_000)], FEBRUARY), expected)
    assert_same_themes(comment_themes(month_audits, FEBRUARY), expected)  # the thin wrapper


SMALL = [
    # a term in two comments of different chunks is in the vocabulary (min_df over the month)
    (["scrubber broke", "lovely", "scrubber broke", "fine", "scrubber broke", "widget", "scrubber", "ok"],
     [True, False, True, False, True, False, False, False]),
    # Monroe et al. worked example (test_figures)
    (["scrubber"] * 12 + ["widget"] * 3 + ["scrubber"] + ["widget"] * 6 + ["lovely"] * 10, [True] * 15 + [False] * 17),
    (["only one comment", None, None], [True, True, True]),  # fewer than two comments
    (["the and of", "it is the", "was were"], [True, True, True]),  # stop words only
    (["alpha beta", "gamma delta", "epsilon zeta"], [True, True, True]),  # no term in two comments
    (["tool froze", "tool froze", "tool froze", "tool froze"], [False] * 4),  # no error
    (["mail jane@example.com re tool", "call +1 415 555 0123 tool", "@victim_9 tool", "<b>tool</b> lag",
      "tool lag", "tool lag"], [True, True, True, True, False, False]),  # redacted, markup out
]


# who wrote comment i (auditor, moderator): everyone distinct, or few people
PEOPLE = {
    "distinct": lambda i: (f"A{i}", f"M{i}"),
    "two_auditors": lambda i: (f"A{i % 2}", f"M{i}"),
    "two_moderators": lambda i: (f"A{i}", f"M{i % 2}"),
    "three_each": lambda i: (f"A{i % 3}", f"M{(i + 1) % 3}"),
}


@pytest.mark.parametrize(("comments", "errors"), SMALL, ids=[f"case{i}" for i in range(len(SMALL))])
@pytest.mark.parametrize("chunk_rows", [1, 2, 3, None])
@pytest.mark.parametrize("people", list(PEOPLE))
def test_small_months_give_the_reference_frame(comments, errors, chunk_rows, people):
    n = len(comments)
    audits = pd.DataFrame({"auditor_comment": comments, "is_error_final": errors,
                           "queue": ["q1" if i % 3 else "q2" for i in range(n)],
                           "root_cause": [("tooling" if i % 2 else None) if errors[i] else None for i in range(n)],
                           "auditor_id": [PEOPLE[people](i)[0] for i in range(n)],
                           "moderator_id": [PEOPLE[people](i)[1] for i in range(n)]})
    expected = reference_with_k(audits, FEBRUARY)
    if people == "distinct":  # every term in ≥ 3 error comments passes: exactly the reference
        reference = reference_comment_themes(audits, FEBRUARY)
        if reference.empty:
            assert expected.empty
        else:
            assert_same_themes(expected, reference)
    chunks = [audits] if chunk_rows is None else _chunks(audits, chunk_rows)
    got = comment_themes_from_chunks(chunks, FEBRUARY)
    if expected.empty:
        assert got.empty and list(got.columns) == list(expected.columns)
    else:
        assert_same_themes(got, expected)


def test_counts_keep_no_comment(month_audits):
    """What the counter keeps between chunks: per-term and per-scope tallies, never the text."""
    import scipy.sparse as sp

    counts = CommentThemeCounts()
    for chunk in _chunks(month_audits, 2_000):
        counts.add(chunk)
    n_terms, n_scopes = len(counts._vocabulary), len(counts._scopes)
    for name, value in vars(counts).items():
        if isinstance(value, np.ndarray):
            assert value.shape == (n_terms,), name
        elif sp.issparse(value):
            assert value.shape == (n_scopes, n_terms), name
        elif isinstance(value, list):
            assert len(value) == n_scopes, name
        elif isinstance(value, dict) and name == "_people":
            # per scope and term, at most k hashes of auditors / moderators: never an id
            for pairs in value.values():
                assert pairs.dtype == np.uint64 and pairs.shape[1] == 2
                keys, per_key = np.unique(pairs[:, 0], return_counts=True)
                assert len(keys) <= counts._counts.nnz and per_key.max() <= counts.min_people
        elif isinstance(value, dict):
            assert value is counts._vocabulary or value is counts._scopes, name
        else:
            assert not isinstance(value, (pd.DataFrame, pd.Series, pa.Table, str)), name
    texts = clean_comments(month_audits.auditor_comment)
    assert counts.comments == texts.str.strip().ne("").sum() > 1_000
    assert n_terms < counts.comments  # terms, not comments


def test_chunked_themes_hold_a_chunk_not_the_month(month_audits, tmp_path):
    # ~300k audits (the generated month 15 times over) in a Parquet file of 20k-row groups
    path = tmp_path / "audits.parquet"
    table = pa.Table.from_pandas(month_audits[INPUT], preserve_index=False)
    with pq.ParquetWriter(path, table.schema) as writer:
        for _ in range(15):
            writer.write_table(table, row_group_size=20_000)
    results = {}

    def whole():
        results["whole"] = comment_themes(pd.read_parquet(path), FEBRUARY)

    def chunked():
        batches = pq.ParquetFile(path).iter_batches(batch_size=20_000)
        results["chunked"] = comment_themes_from_chunks(batches, FEBRUARY)

    whole_peak = python_peak(whole)
    chunked_peak = python_peak(chunked)
    assert pq.ParquetFile(path).metadata.num_rows > 290_000
    assert_same_themes(results["chunked"], results["whole"])
    assert whole_peak > 5 * 2**20  # the month really is held: the ratio means something
    assert chunked_peak < 0.4 * whole_peak, (chunked_peak / 2**20, whole_peak / 2**20)
    # the comments themselves live in Arrow buffers, which tracemalloc does not see: Arrow's own
    # peak, each way in a fresh process
    whole_arrow, chunked_arrow = (_arrow_peak(path, mode) for mode in ("whole", "chunked"))
    assert whole_arrow > 20 * 2**20
    assert chunked_arrow < 0.4 * whole_arrow, (chunked_arrow / 2**20, whole_arrow / 2**20)


MEASURE = """
import sys
from datetime import date
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from qa_pipeline.domain.themes import comment_themes, comment_themes_from_chunks
path, mode = sys.argv[1], sys.argv[2]
if mode == "whole":
    comment_themes(pd.read_parquet(path), date(2026, 2, 1))
else:
    comment_themes_from_chunks(pq.ParquetFile(path).iter_batches(batch_size=20_000), date(2026, 2, 1))
print(pa.default_memory_pool().max_memory())
"""


def _arrow_peak(path: Path, mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", MEASURE, str(path), mode], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).parents[1])
    return int(out.stdout.strip().splitlines()[-1])
