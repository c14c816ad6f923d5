"""Comment themes: the words and short phrases that set error comments in a scope apart.

Comments are redacted first (`domain.redaction`), placeholders removed, then counted per comment
(a term counts once per comment) with scikit-learn's CountVectorizer. Distinctiveness is the
log-odds ratio with an informative Dirichlet prior (Monroe, Colaresi & Quinn 2008, "Fightin'
Words", eq. 16–22): error comments in the scope against every other comment of the month.

k-anonymity of terms (`min_people`, `Thresholds.theme_min_people`, `QA_THEME_MIN_PEOPLE`, k = 3):
a term is published in a scope only when the error comments of that scope that hold it were
written by at least k distinct auditors about at least k distinct moderators. A person's name, a
nickname or an in-joke that one or two auditors keep writing, or that is written about one or two
moderators, never becomes a theme, however distinctive. The rule only removes candidates: the
vocabulary, the prior and every z-score are those of the whole month, and a scope's top terms are
the most distinctive of the eligible ones (so it still lists up to TOP_TERMS). People are counted
as 64-bit hashes of their ids, at most k per scope and term: a hash collision can only make a
term fall short of k, never reach it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import scipy.sparse as sp
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer

from qa_pipeline.domain.redaction import redact_series

PLACEHOLDERS = r"\[(?:email|phone|handle|ip|url)\]"
TOKEN = r"(?u)\b[a-z]{2,}(?:\.\d+)?\b"
TOP_TERMS = 10
MIN_COMMENTS = 3
MIN_Z = 1.96
MIN_PEOPLE = 3  # the default of settings.Thresholds.theme_min_people
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


COLUMNS = ["month", "scope", "term", "errors_with_term", "errors_with_comment", "share", "z_score", "rank"]
PEOPLE_COLUMNS = ["auditor_id", "moderator_id"]
INPUT_COLUMNS = ["auditor_comment", "is_error_final", "queue", "root_cause", *PEOPLE_COLUMNS]


def vectorizer() -> CountVectorizer:
    """The one term definition: binary, words and word pairs, stop words out, in ≥ 2 comments."""
    return CountVectorizer(binary=True, ngram_range=(1, 2), stop_words=STOP_WORDS, token_pattern=TOKEN, min_df=2)


class CommentThemeCounts:
    """Per-term comment counts of one month, accumulated chunk by chunk (`add`), then the themes.

    Holds, never the comments, but per term: the comments with it (all of them: the vocabulary
    is cut at `min_df` over the whole month only at the end) and, as sparse rows, the error
    comments with it per scope (overall, queue:<q>, root_cause:<c>); and, for the k-anonymity
    rule, per scope and term at most `min_people` hashes of the auditors and of the moderators of
    those error comments.
    """

    def __init__(self, min_people: int = MIN_PEOPLE):
        self.min_people = int(min_people)
        vec = vectorizer()
        self._analyze = vec.build_analyzer()
        self._min_df = vec.min_df
        self._vocabulary: defaultdict[str, int] = defaultdict()
        self._vocabulary.default_factory = self._vocabulary.__len__
        self._total = np.zeros(0, dtype="int64")  # comments with the term
        self._scopes: dict[str, int] = {"overall": 0}  # scope → row of _counts
        self._scope_docs = [0]  # error comments in the scope
        self._counts = sp.csr_array((1, 0), dtype="int64")  # error comments with the term, per scope
        self.comments = 0  # comments with text
        # per column of PEOPLE_COLUMNS: rows (scope << 32 | term, person hash), ≤ min_people per key
        self._people = {column: np.zeros((0, 2), dtype="uint64") for column in PEOPLE_COLUMNS}

    @property
    def counts_people(self) -> bool:
        """Whether the k-anonymity rule applies (k ≥ 2; k ≤ 1 means any comment qualifies)."""
        return self.min_people > 1

    def add(self, chunk) -> None:
        """Count one chunk: a pandas frame, Arrow table or record batch with INPUT_COLUMNS (the
        people columns may be left out only when the k-anonymity rule is off)."""
        needed = INPUT_COLUMNS if self.counts_people else INPUT_COLUMNS[:-len(PEOPLE_COLUMNS)]
        names = chunk.schema.names if isinstance(chunk, (pa.Table, pa.RecordBatch)) else list(chunk.columns)
        missing = [c for c in needed if c not in names]
        if missing:
            raise ValueError(f"comment themes need the columns {missing}: terms are published only when at least "
                             f"{self.min_people} distinct auditors used them about {self.min_people} distinct "
                             "moderators (QA_THEME_MIN_PEOPLE; 1 turns the rule off)")
        if isinstance(chunk, (pa.Table, pa.RecordBatch)):
            chunk = chunk.select(needed).to_pandas()
        text = clean_comments(chunk["auditor_comment"])
        has_text = text.str.strip().ne("").to_numpy(dtype=bool)
        if not has_text.any():
            return
        docs = chunk.loc[has_text]
        # each distinct text analysed once (audit comments repeat), then a comment × term matrix
        codes, distinct = pd.factorize(text[has_text])
        indices, indptr, vocabulary, analyze = [], [0], self._vocabulary, self._analyze
        for doc in distinct:
            indices.extend({vocabulary[feature] for feature in analyze(doc)})  # binary: once per comment
            indptr.append(len(indices))
        n_terms = len(vocabulary)
        x = sp.csr_array((np.ones(len(indices), dtype="int64"), np.asarray(indices, dtype="int64"),
                          np.asarray(indptr, dtype="int64")), shape=(len(distinct), n_terms))[codes]
        self._total = np.concatenate([self._total, np.zeros(n_terms - len(self._total), dtype="int64")])
        self._total += np.bincount(x.indices, minlength=n_terms)
        self.comments += len(codes)
        # error comments → their scopes (a 0/1 matrix scopes × comments), then the counts
        err = docs["is_error_final"].astype(bool).to_numpy()
        rows, cols = [np.zeros(int(err.sum()), dtype="int64")], [np.flatnonzero(err)]
        for prefix, column in (("queue", "queue"), ("root_cause", "root_cause")):
            values = docs[column]
            hit = err & values.notna().to_numpy()
            names = values[hit].astype("str").to_numpy()
            rows.append(np.fromiter((self._scope(f"{prefix}:{v}") for v in names), dtype="int64", count=len(names)))
            cols.append(np.flatnonzero(hit))
        rows, cols = np.concatenate(rows), np.concatenate(cols)
        n_scopes = len(self._scopes)
        membership = sp.csr_array((np.ones(len(rows), dtype="int64"), (rows, cols)), shape=(n_scopes, len(err)))
        self._scope_docs += [0] * (n_scopes - len(self._scope_docs))
        for i, n in enumerate(np.bincount(rows, minlength=n_scopes)):
            self._scope_docs[i] += int(n)
        counts = self._counts
        counts.resize((n_scopes, n_terms))
        self._counts = (counts + membership @ x).tocsr()
        if self.counts_people:
            self._add_people(docs, x, rows, cols)

    def _scope(self, name: str) -> int:
        return self._scopes.setdefault(name, len(self._scopes))

    def _add_people(self, docs: pd.DataFrame, x: sp.csr_array, rows: np.ndarray, cols: np.ndarray) -> None:
        """Note who wrote each (scope, term) of the chunk's error comments, and about whom."""
        x = x.tocsr()
        starts = x.indptr[cols]
        lengths = x.indptr[cols + 1] - starts
        n = int(lengths.sum())
        if n == 0:
            return
        # one row per (scope, error comment, term of the comment): positions into x.indices
        at = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths) + np.arange(n)
        keys = (np.repeat(rows, lengths).astype("uint64") << np.uint64(32)) | x.indices[at].astype("uint64")
        comment = np.repeat(cols, lengths)
        for column in PEOPLE_COLUMNS:
            ids = docs[column]
            known = ids.notna().to_numpy(dtype=bool)
            hashes = pd.util.hash_array(ids.astype(object).to_numpy())  # a missing id is nobody
            pick = known[comment]
            seen = np.column_stack([keys[pick], hashes[comment[pick]]])
            self._people[column] = _first_per_key(np.concatenate([self._people[column], seen]), self.min_people)

    def _eligible(self, n_terms: int) -> sp.csr_array | None:
        """scopes × terms, True where ≥ min_people auditors and moderators: None when the rule is off."""
        if not self.counts_people:
            return None
        shape = (len(self._scopes), n_terms)
        out = None
        for column in PEOPLE_COLUMNS:
            keys, n = np.unique(self._people[column][:, 0], return_counts=True)
            keys = keys[n >= self.min_people]
            enough = sp.csr_array((np.ones(len(keys), dtype=bool),
                                   ((keys >> np.uint64(32)).astype("int64"), (keys & np.uint64(0xFFFFFFFF)).astype("int64"))),
                                  shape=shape)
            out = enough if out is None else out.multiply(enough)
        return out.tocsr()

    def themes(self, month) -> pd.DataFrame:
        """`qa_reporting.comment_themes` of the month counted so far."""
        if self.comments < 2:
            return pd.DataFrame(columns=COLUMNS)
        # the vocabulary of CountVectorizer(min_df=2) fitted on the whole month: sorted terms
        kept = np.flatnonzero(self._total >= self._min_df)
        if len(kept) == 0:  # no term at all, or none in two comments
            return pd.DataFrame(columns=COLUMNS)
        names = np.array(list(self._vocabulary), dtype=object)  # in id order
        kept = kept[np.argsort(names[kept].astype(str), kind="stable")]
        terms = names[kept].astype(str)
        total = self._total[kept].astype(float)
        counts = self._counts.tocsc()[:, kept].tocsr()
        eligible = self._eligible(len(names))
        if eligible is not None:
            eligible = eligible.tocsc()[:, kept].tocsr()
        prior = 0.01 * total  # α_w ∝ the term's frequency in the month, α0 = 1 % of all counts
        order = ["overall", *sorted(n for n in self._scopes if n.startswith("queue:")),
                 *sorted(n for n in self._scopes if n.startswith("root_cause:"))]
        parts = []
        for scope in order:
            row = self._scopes[scope]
            n_docs = self._scope_docs[row] if row < len(self._scope_docs) else 0
            if n_docs < MIN_COMMENTS:
                continue
            y_scope = counts[[row], :].toarray().ravel().astype(float)
            y_rest = total - y_scope
            z = log_odds_z(y_scope, y_rest, prior)
            keep = (y_scope >= MIN_COMMENTS) & (z > MIN_Z)
            if eligible is not None:  # k-anonymity: before the top terms are chosen
                keep &= eligible[[row], :].toarray().ravel().astype(bool)
            if not keep.any():
                continue
            frame = pd.DataFrame({"term": terms[keep], "errors_with_term": y_scope[keep].astype("int64"),
                                  "z_score": z[keep]})
            frame = frame.sort_values(["z_score", "term"], ascending=[False, True]).head(TOP_TERMS)
            frame["errors_with_comment"] = int(n_docs)
            frame["share"] = frame["errors_with_term"] / n_docs
            frame["rank"] = np.arange(1, len(frame) + 1)
            frame.insert(0, "scope", scope)
            parts.append(frame)
        if not parts:
            return pd.DataFrame(columns=COLUMNS)
        out = pd.concat(parts, ignore_index=True)
        out.insert(0, "month", pd.Timestamp(month))
        return out[COLUMNS]


def _first_per_key(pairs: np.ndarray, k: int) -> np.ndarray:
    """The distinct (key, person) rows, at most the first k persons of each key."""
    if len(pairs) == 0:
        return pairs
    order = np.lexsort((pairs[:, 1], pairs[:, 0]))
    pairs = pairs[order]
    new = np.ones(len(pairs), dtype=bool)
    new[1:] = (pairs[1:, 0] != pairs[:-1, 0]) | (pairs[1:, 1] != pairs[:-1, 1])
    pairs = pairs[new]
    first = np.ones(len(pairs), dtype=bool)
    first[1:] = pairs[1:, 0] != pairs[:-1, 0]
    index = np.arange(len(pairs))
    rank = index - np.maximum.accumulate(np.where(first, index, 0))
    return pairs[rank < k]


def comment_themes_from_chunks(chunks: Iterable, month, min_people: int = MIN_PEOPLE) -> pd.DataFrame:
    """`qa_reporting.comment_themes` from the month's audits in chunks (pandas frames, Arrow tables
    or record batches with INPUT_COLUMNS), holding one chunk at a time: the same terms, counts,
    z-scores and order as `comment_themes` on the whole month. A term is kept in a scope only when
    ≥ `min_people` auditors wrote it about ≥ `min_people` moderators there (module docstring)."""
    counts = CommentThemeCounts(min_people)
    for chunk in chunks:
        counts.add(chunk)
    return counts.themes(month)


def comment_themes(audits: pd.DataFrame, month, min_people: int = MIN_PEOPLE) -> pd.DataFrame:
    """`qa_reporting.comment_themes`: per scope (overall, queue:<q>, root_cause:<c>) the top terms."""
    return comment_themes_from_chunks([audits], month, min_people)
