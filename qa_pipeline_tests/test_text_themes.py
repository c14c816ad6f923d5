"""k-anonymity of comment themes: a term needs k distinct auditors writing it about k distinct
moderators in a scope before it is published, so that a person's name never becomes a theme."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from qa_pipeline.domain.themes import (
    MIN_PEOPLE,
    comment_themes,
    comment_themes_from_chunks,
)
from qa_pipeline.settings import Thresholds

MONTH = date(2026, 4, 1)
BACKGROUND = ["review tool froze mid decision", "translation widget missing again", "video scrubber did not load",
              "overlooked text in the thumbnail", "missed the second half of the video", "guideline unclear on satire"]
FINE = ["Correct call.", "Good decision, well documented.", "Agree with the action.", "Clear violation removed.",
        "Borderline but acceptable.", "Nothing to add here."]


def _audits(planted: list[tuple[str, str, str]], n_background: int = 360) -> pd.DataFrame:
    """Background comments from 12 auditors about 40 moderators (a third of them errors), and the
    planted error comments (comment, auditor, moderator)."""
    rng = np.random.default_rng(3)
    rows = []
    for i in range(n_background):
        error = i % 3 == 0
        rows.append({"auditor_comment": BACKGROUND[(i // 3) % len(BACKGROUND)] if error else FINE[i % len(FINE)],
                     "is_error_final": error, "queue": "hate_speech" if i % 2 else "spam",
                     "root_cause": "tooling" if error else None, "auditor_id": f"AUD-{rng.integers(12):02d}",
                     "moderator_id": f"MOD-{rng.integers(40):03d}"})
    for comment, auditor, moderator in planted:
        rows.append({"auditor_comment": comment, "is_error_final": True, "queue": "hate_speech",
                     "root_cause": "tooling", "auditor_id": auditor, "moderator_id": moderator})
    return pd.DataFrame(rows)


def _terms(themes: pd.DataFrame) -> set[str]:
    return set(themes["term"])


def test_a_name_written_by_two_auditors_about_many_moderators_never_becomes_a_theme():
    planted = [(f"escalated to sergei ivanov as usual ({i})", f"AUD-{i % 2:02d}", f"MOD-{i:03d}") for i in range(30)]
    audits = _audits(planted)
    themes = comment_themes(audits, MONTH)
    assert not {t for t in _terms(themes) if "sergei" in t or "ivanov" in t}, themes
    assert {"video", "froze"} <= _terms(themes)  # the shared themes are still there
    # the test means something: without the rule the name is the month's strongest theme
    off = comment_themes(audits, MONTH, min_people=1)
    overall = off[off.scope == "overall"].sort_values("rank")
    assert {"sergei", "ivanov", "sergei ivanov"} <= set(overall.term.head(10))
    for chunk_rows in (1, 7, 50):
        chunks = [audits.iloc[i:i + chunk_rows] for i in range(0, len(audits), chunk_rows)]
        pd.testing.assert_frame_equal(comment_themes_from_chunks(chunks, MONTH), themes)


def test_a_name_written_by_many_auditors_about_two_moderators_never_becomes_a_theme():
    planted = [(f"moderator bobby tables again, case {i}", f"AUD-{i % 10:02d}", f"MOD-{900 + i % 2}")
               for i in range(30)]
    themes = comment_themes(_audits(planted), MONTH)
    assert not {t for t in _terms(themes) if "bobby" in t or "tables" in t}
    off = comment_themes(_audits(planted), MONTH, min_people=1)
    assert "bobby tables" in _terms(off)


@pytest.mark.parametrize(("auditors", "moderators", "published"), [
    (3, 3, True), (2, 3, False), (3, 2, False), (5, 5, True), (1, 9, False), (9, 1, False)])
def test_a_term_is_published_from_three_auditors_about_three_moderators(auditors, moderators, published):
    planted = [("queue filter regression hid the reported clip", f"AUD-{i % auditors:02d}", f"MOD-{500 + i % moderators}")
               for i in range(24)]
    audits = _audits(planted)
    themes = comment_themes(audits, MONTH)
    assert ("regression" in set(themes[themes.scope == "queue:hate_speech"].term)) is published
    if not published:
        assert "regression" not in _terms(themes)
    off = comment_themes(audits, MONTH, min_people=1)  # distinctive in any case
    assert "regression" in set(off[off.scope == "queue:hate_speech"].term)


def test_the_rule_is_counted_per_scope():
    # "regression": AUD-00 about MOD-500 on spam 28 times; two more auditors about two more
    # moderators once each on hate_speech. Month-wide 3 × 3, on spam 1 × 1.
    planted = [("queue filter regression hid the reported clip", "AUD-00", "MOD-500")] * 28 + [
        ("queue filter regression hid the reported clip", "AUD-01", "MOD-501"),
        ("queue filter regression hid the reported clip", "AUD-02", "MOD-502")]
    audits = _audits(planted)
    audits.loc[audits.index[-30:-2], "queue"] = "spam"
    themes = comment_themes(audits, MONTH)
    assert "regression" in set(themes[themes.scope == "overall"].term)
    assert "regression" not in set(themes[themes.scope == "queue:spam"].term)
    off = comment_themes(audits, MONTH, min_people=1)
    assert "regression" in set(off[off.scope == "queue:spam"].term)  # distinctive there, but one person's
    assert "regression" not in _terms(comment_themes(audits, MONTH, min_people=4))


def test_comments_without_an_author_count_for_nobody():
    planted = [("queue filter regression hid the reported clip", None if i % 3 == 2 else f"AUD-{i % 3:02d}",
                f"MOD-{500 + i % 3}") for i in range(24)]
    assert "regression" not in _terms(comment_themes(_audits(planted), MONTH))
    assert "regression" in set(comment_themes(_audits(planted), MONTH, min_people=2).term)


def test_k_is_a_documented_threshold_with_an_environment_override(monkeypatch):
    assert Thresholds().theme_min_people == MIN_PEOPLE == 3
    assert "k-anonymity" in (Thresholds.__doc__ or "") or "theme_min_people" in Thresholds.__dataclass_fields__
    monkeypatch.setenv("QA_THEME_MIN_PEOPLE", "5")
    assert Thresholds.from_env().theme_min_people == 5
