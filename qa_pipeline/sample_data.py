"""Synthetic raw data for the demo, the tests and the benchmark (`qa-pipeline generate`).

The world: five sites (two in-house, three BPO vendors), nine queues with their policy codes,
moderators with hire dates and individual skill, auditors who cover a few queues each, and a
stratified audit sample (small strata oversampled, so `sampling_weight` varies). Error rates
depend on site, queue, content type, tenure and skill. On top of that, effects are planted on
purpose so that every analysis has something true to find; `planted_effects()` says which, and
the generator writes them to `README.md` in the output folder.

Everything is vectorised with NumPy: a month of one million audits takes seconds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from qa_pipeline.domain.months import month_range, month_start, next_month

SITES = pd.DataFrame(
    [
        # site, team_type, markets, base error rate, handle-time factor, volume share
        ("Dublin", "in_house", "GB;DE;US", 0.040, 1.10, 0.18),
        ("Austin", "in_house", "US", 0.045, 1.05, 0.17),
        ("BPO-A Manila", "bpo", "US;GB;PH", 0.060, 0.95, 0.25),
        ("BPO-B Kuala Lumpur", "bpo", "MY;US;GB", 0.055, 0.90, 0.22),
        ("BPO-C Bogota", "bpo", "BR;MX;US", 0.070, 0.90, 0.18),
    ],
    columns=["site", "team_type", "markets", "base_error", "handle_factor", "volume_share"],
)

QUEUES = pd.DataFrame(
    [
        # queue, policies, error multiplier, share of violating content, volume share
        ("hate_speech", "HS.1;HS.2;HS.3", 1.30, 0.55, 0.22),
        ("harassment", "HR.1;HR.2;HR.3", 1.20, 0.50, 0.14),
        ("violent_extremism", "VE.1;VE.2", 1.00, 0.45, 0.06),
        ("adult_nudity", "AN.1;AN.2", 0.80, 0.60, 0.12),
        ("minor_safety", "MS.1;MS.2", 0.90, 0.40, 0.05),
        ("spam_scams", "SP.1;SP.2", 0.60, 0.70, 0.16),
        ("misinformation", "MI.1;MI.2", 1.25, 0.35, 0.10),
        ("self_harm", "SH.1", 1.10, 0.40, 0.05),
        ("regulated_goods", "RG.1;RG.2", 0.90, 0.50, 0.10),
    ],
    columns=["queue", "policies", "error_mult", "violating_share", "volume_share"],
)
CRITICAL_QUEUES = {"minor_safety", "violent_extremism", "self_harm"}
CONTENT_TYPES = np.array(["video", "live", "comment", "photo", "account"])
CONTENT_MIX = np.array([0.35, 0.12, 0.30, 0.18, 0.05])
CONTENT_ERROR = np.array([1.00, 1.35, 1.00, 0.85, 1.10])
CONTENT_HANDLE_S = np.array([95.0, 140.0, 35.0, 40.0, 120.0])
ENFORCE_ACTIONS = np.array(["remove", "restrict", "escalate"])
ROOT_CAUSES = np.array(
    ["policy_knowledge", "guideline_ambiguity", "tooling", "attention_to_detail", "process",
     "context_missing", "other"]
)
ROOT_CAUSE_MIX = np.array([0.30, 0.16, 0.08, 0.24, 0.08, 0.10, 0.04])

COMMENT_PHRASES = {
    "policy_knowledge": [
        "moderator applied the old definition of {policy}",
        "missed the coded slur exception in {policy}",
        "did not recognise the dog whistle covered by {policy}",
        "confused {policy} with a neighbouring policy",
    ],
    "guideline_ambiguity": [
        "guideline unclear on satire vs attack for {policy}",
        "edge case not covered by the {policy} examples",
        "counter speech quoting the slur, guideline is ambiguous",
    ],
    "tooling": [
        "review tool froze and the wrong action was submitted",
        "translation widget missing so the caption was not read",
        "video scrubber did not load the flagged segment",
    ],
    "attention_to_detail": [
        "overlooked text in the thumbnail",
        "missed the second half of the video",
        "did not open the linked profile before deciding",
    ],
    "process": [
        "escalation path skipped for {policy}",
        "case closed before the required second review",
    ],
    "context_missing": [
        "conversation context not shown in the queue",
        "previous strikes on the account were not visible",
    ],
    "other": ["see ticket for details", "unusual case"],
}
CORRECT_COMMENTS = ["Correct call.", "Good decision, well documented.", "Agree with the action."]
PII_SNIPPETS = [
    "user wrote to jane.doe{n}@example.com about it",
    "reporter left phone +1 415 555 {n:04d} in the note",
    "target account @victim_{n} was tagged",
    "uploaded from 203.0.{a}.{b} per the log",
    "links to https://spam{n}.example.net/promo",
]
MARKUP_SNIPPETS = ["<b>bold claim</b> in caption", "<script>alert('x')</script> in bio"]


@dataclass(frozen=True)
class SampleSpec:
    months: list[str]
    audits_per_month: int = 3000
    seed: int = 7
    fmt: str = "csv"
    bad_row_share: float = 0.003
    moderators_per_site: int = 45
    plant_effects: bool = True
    with_reference_inputs: bool = True
    with_hatecheck: bool = True
    extra: dict = field(default_factory=dict)
    reaudit_share: float = 0.05
    """Share of each month's audits an expert re-audits (`reaudits/YYYY-MM/`); 0 writes none."""


def planted_effects(months: list[str]) -> dict:
    """The effects planted on purpose, relative to the generated months."""
    if len(months) < 4:
        return {}
    spike = months[-3]
    # the policy change sits a month before the drift and two before the spike, so that no planted
    # effect confounds another (its 28-day window ends before the spike month's baseline)
    change_month = month_start(months[-5] if len(months) >= 5 else months[-4])
    effective = change_month + timedelta(days=9)
    exp_start = month_start(months[-5] if len(months) >= 5 else months[0])
    exp_end = next_month(month_start(months[-2])) - timedelta(days=1)
    return {
        "spike": {
            "month": spike,
            "site": "BPO-B Kuala Lumpur",
            "queue": "hate_speech",
            "error_multiplier": 4.0,
            "handle_time_multiplier": 0.7,
            "why": "a new BPO-B cohort put on hate speech without the refresher; handle time drops",
        },
        "policy_change": {
            "change_id": "PC-HS2-UPDATE",
            "policy": "HS.2",
            "effective_date": effective.isoformat(),
            "error_multiplier": 3.0,
            "days": 28,
            "why": "HS.2 definition updated; moderators apply the old one for four weeks",
        },
        "drift_auditor": {
            "auditor_id": "AUD-07",
            "from_month": months[-4],
            "false_flag_rate": 0.20,
            "why": "flags correct decisions as errors (grader over-strictness); many are overturned",
        },
        "experiment": {
            "experiment_id": "EXP-01",
            "start_date": exp_start.isoformat(),
            "end_date": exp_end.isoformat(),
            "treatment_error_multiplier": 0.55,
            "why": "coaching nudges in the review tool cut errors",
        },
        "srm_experiment": {
            "experiment_id": "EXP-02",
            "assigned_treatment_share": 0.68,
            "why": "assignment bug: 68 % treatment against a planned 50 %",
        },
        "tooling_site": {
            "site": "BPO-C Bogota",
            "root_cause": "tooling",
            "why": "BPO-C's review tool build drops the translation widget",
        },
        "auditor_error": {
            "month": months[0],
            "auditor_id": "AUD-19",
            "share": 0.6,
            "spared_queues": "hate_speech;harassment",
            "false_flag_rate": 0.25,
            "miss_rate": 0.4,
            "why": ("a contract auditor who audited 60 % of the month's decisions outside hate speech and "
                    "harassment flags a quarter of the correct ones and misses 40 % of the errors: the "
                    "observed accuracy falls, the moderators' true accuracy does not (the experts' re-audits show it)"),
        },
    }


class _World:
    """Moderators, auditors and the stratified sampling frame, fixed for a seed."""

    def __init__(self, spec: SampleSpec, rng: np.random.Generator):
        self.spec = spec
        first = month_start(spec.months[0])
        rows = []
        for s, site in SITES.iterrows():
            for i in range(spec.moderators_per_site):
                hire = first - timedelta(days=int(rng.integers(20, 1500)))
                rows.append((f"MOD-{s + 1}{i + 1:03d}", site.site, site.team_type, hire))
        # a new cohort at BPO-B hired just before the spike month
        effects = planted_effects(spec.months) if spec.plant_effects else {}
        if "spike" in effects:
            spike = month_start(effects["spike"]["month"])
            for i in range(12):
                rows.append((f"MOD-2{900 + i}", "BPO-B Kuala Lumpur", "bpo",
                             spike - timedelta(days=int(rng.integers(3, 25)))))
        self.moderators = pd.DataFrame(rows, columns=["moderator_id", "site", "team_type", "hire_date"])
        self.moderators["skill"] = np.exp(rng.normal(0, 0.35, len(self.moderators)))
        self.moderators["language"] = rng.choice(["en", "es", "pt", "ms", "tl", "de"], len(self.moderators))
        self.auditors = [f"AUD-{i:02d}" for i in range(1, 19)]
        # each auditor covers three queues; every queue has several auditors
        q = len(QUEUES)
        self.auditor_queues = {a: {(i + k) % q for k in range(3)} for i, a in enumerate(self.auditors)}
        strata = SITES.merge(QUEUES, how="cross", suffixes=("_site", "_queue"))
        strata["volume"] = strata.volume_share_site * strata.volume_share_queue
        # allocation ∝ volume^0.75: small strata oversampled, so weights vary
        alloc = strata.volume ** 0.75
        strata["alloc"] = alloc / alloc.sum()
        self.strata = strata


def _choose_per_row(rng, options_per_row: pd.Series) -> np.ndarray:
    """Pick one item from each row's ';'-separated options, vectorised by option set."""
    out = np.empty(len(options_per_row), dtype=object)
    values = options_per_row.to_numpy()
    for opts in pd.unique(values):
        idx = np.flatnonzero(values == opts)
        out[idx] = rng.choice(opts.split(";"), len(idx))
    return out


def _month_audits(world: _World, month: str, offset: int, rng: np.random.Generator, effects: dict) -> pd.DataFrame:
    n = world.spec.audits_per_month
    strata = world.strata
    st = rng.choice(len(strata), n, p=strata.alloc.to_numpy())
    df = pd.DataFrame({
        "site": strata.site.to_numpy()[st],
        "team_type": strata.team_type.to_numpy()[st],
        "queue": strata.queue.to_numpy()[st],
    })
    counts = np.bincount(st, minlength=len(strata))
    decisions = strata.volume.to_numpy() * n * 40.0
    df["sampling_weight"] = np.round(decisions[st] / np.maximum(counts[st], 1), 3)
    start = pd.Timestamp(month_start(month), tz="UTC")
    end = pd.Timestamp(next_month(month_start(month)), tz="UTC")
    span = (end - start).total_seconds()
    audited = start + pd.to_timedelta(rng.uniform(60, span - 60, n), unit="s")
    df["audited_at"] = audited.floor("s")
    lag = pd.to_timedelta(rng.exponential(30 * 3600, n).clip(120, 10 * 86400), unit="s")
    df["decision_at"] = (df["audited_at"] - lag).dt.floor("s")
    df["content_type"] = CONTENT_TYPES[(ct := rng.choice(len(CONTENT_TYPES), n, p=CONTENT_MIX))]
    df["market"] = _choose_per_row(rng, pd.Series(strata.markets.to_numpy()[st]))

    # moderators of the site (the BPO-B cohort works hate speech only)
    mods = world.moderators
    mod_ids = np.empty(n, dtype=object)
    for site, idx in df.groupby("site").indices.items():
        pool = mods[mods.site == site]
        cohort = pool.moderator_id.str.startswith("MOD-29")
        active = pool[~cohort | (pool.hire_date <= (end - pd.Timedelta(days=1)).date())]
        mod_ids[idx] = rng.choice(active.moderator_id.to_numpy(), len(idx))
    df["moderator_id"] = mod_ids
    if "spike" in effects and month == effects["spike"]["month"]:
        # the cohort takes a large share of BPO-B's hate speech work in the spike month
        seg = np.flatnonzero((df.site == effects["spike"]["site"]) & (df.queue == "hate_speech"))
        take = seg[rng.random(len(seg)) < 0.5]
        cohort_ids = mods.moderator_id[mods.moderator_id.str.startswith("MOD-29")].to_numpy()
        df.loc[take, "moderator_id"] = rng.choice(cohort_ids, len(take))
    # ~1 % of audits by contractors missing from the roster
    unknown = rng.random(n) < 0.01
    df.loc[unknown, "moderator_id"] = "TMP-" + pd.Series(rng.integers(1, 40, unknown.sum())).astype(str).str.zfill(3).to_numpy()

    # auditors covering the queue
    q_index = {q: i for i, q in enumerate(QUEUES.queue)}
    aud = np.empty(n, dtype=object)
    for queue, idx in df.groupby("queue").indices.items():
        pool = [a for a, qs in world.auditor_queues.items() if q_index[queue] in qs]
        aud[idx] = rng.choice(pool, len(idx))
    df["auditor_id"] = aud

    # the correct decision
    qrow = QUEUES.set_index("queue").loc[df.queue]
    violating = rng.random(n) < qrow.violating_share.to_numpy()
    truth_policy = _choose_per_row(rng, pd.Series(qrow.policies.to_numpy()))
    truth_action = rng.choice(ENFORCE_ACTIONS, n, p=[0.72, 0.2, 0.08])
    df["action_auditor"] = np.where(violating, truth_action, "approve")
    df["policy_auditor"] = np.where(violating, truth_policy, "NONE")

    # error probability
    srow = SITES.set_index("site").loc[df.site]
    mrow = mods.set_index("moderator_id").reindex(df.moderator_id)
    tenure = (df.decision_at.dt.tz_localize(None).dt.normalize() - pd.to_datetime(mrow.hire_date.to_numpy())).dt.days.to_numpy()
    tenure_mult = np.select([tenure <= 30, tenure <= 90, tenure <= 180], [2.2, 1.5, 1.15], 1.0)
    tenure_mult = np.where(np.isnan(tenure.astype(float)), 1.3, tenure_mult)
    skill = np.nan_to_num(mrow.skill.to_numpy(dtype=float), nan=1.2)
    p = srow.base_error.to_numpy() * qrow.error_mult.to_numpy() * CONTENT_ERROR[ct] * tenure_mult * skill
    handle_mult = np.ones(n)
    cause_override = np.full(n, None, dtype=object)
    if "spike" in effects and month == effects["spike"]["month"]:
        seg = (df.site == effects["spike"]["site"]) & (df.queue == effects["spike"]["queue"])
        p = np.where(seg, p * effects["spike"]["error_multiplier"], p)
        handle_mult = np.where(seg, effects["spike"]["handle_time_multiplier"], handle_mult)
        cause_override = np.where(seg & (rng.random(n) < 0.6), "policy_knowledge", cause_override)
    if "policy_change" in effects:
        pc = effects["policy_change"]
        eff = pd.Timestamp(pc["effective_date"], tz="UTC")
        in_window = (df.decision_at >= eff) & (df.decision_at < eff + pd.Timedelta(days=pc["days"]))
        involved = df.policy_auditor == pc["policy"]
        hit = (in_window & involved).to_numpy()
        p = np.where(hit, p * pc["error_multiplier"], p)
        cause_override = np.where(hit & (rng.random(n) < 0.7), "policy_knowledge", cause_override)
    if "experiment" in effects:
        ex = effects["experiment"]
        treated = set(world.experiment_treated)
        in_exp = (df.decision_at >= pd.Timestamp(ex["start_date"], tz="UTC")) & (
            df.decision_at < pd.Timestamp(ex["end_date"], tz="UTC") + pd.Timedelta(days=1))
        hit = (in_exp & df.moderator_id.isin(treated)).to_numpy()
        p = np.where(hit, p * ex["treatment_error_multiplier"], p)
    if "tooling_site" in effects:
        ts = (df.site == effects["tooling_site"]["site"]).to_numpy()
        cause_override = np.where(ts & (cause_override == None) & (rng.random(n) < 0.3), "tooling", cause_override)  # noqa: E711
    is_error = rng.random(n) < np.clip(p, 0, 0.6)
    false_flag = np.zeros(n, dtype=bool)
    if "drift_auditor" in effects and month >= effects["drift_auditor"]["from_month"]:
        d = effects["drift_auditor"]
        false_flag = (df.auditor_id == d["auditor_id"]).to_numpy() & ~is_error & (rng.random(n) < d["false_flag_rate"])
        cause_override = np.where(false_flag, "attention_to_detail", cause_override)
        is_error = is_error | false_flag

    # the moderator's decision
    action_m = df.action_auditor.to_numpy().copy()
    policy_m = df.policy_auditor.to_numpy().copy()
    enforce_truth = violating
    kind = rng.random(n)
    other_policy = _choose_per_row(rng, pd.Series(qrow.policies.to_numpy()))
    # over-enforcement: truth approve, moderator removes under one of the queue's policies
    over = is_error & ~enforce_truth
    action_m[over] = rng.choice(["remove", "restrict"], over.sum(), p=[0.7, 0.3])
    policy_m[over] = other_policy[over]
    under = is_error & enforce_truth & (kind < 0.45)
    action_m[under] = "approve"
    policy_m[under] = "NONE"
    wrong_action = is_error & enforce_truth & (kind >= 0.45) & (kind < 0.7)
    shifted = {"remove": "restrict", "restrict": "remove", "escalate": "remove"}
    action_m[wrong_action] = pd.Series(action_m[wrong_action]).map(shifted).to_numpy()
    wrong_policy = is_error & enforce_truth & (kind >= 0.7)
    alt = pd.Series(policy_m[wrong_policy]).map(_neighbour_policy).to_numpy()
    policy_m[wrong_policy] = alt
    if "policy_change" in effects:
        # the old, broader definition: in the window, moderators reach for the changed policy
        pc = effects["policy_change"]
        eff = pd.Timestamp(pc["effective_date"], tz="UTC")
        in_window = ((df.decision_at >= eff) & (df.decision_at < eff + pd.Timedelta(days=pc["days"]))).to_numpy()
        family = pc["policy"].split(".")[0] + "."
        misapplied = (in_window & is_error & (action_m != "approve") & (df.policy_auditor != pc["policy"]).to_numpy()
                      & np.char.startswith(policy_m.astype(str), family) & (rng.random(n) < 0.6))
        policy_m[misapplied] = pc["policy"]
        is_error = is_error | misapplied
    df["action_moderator"] = action_m
    df["policy_moderator"] = policy_m

    # severity and root cause
    crit_q = df.queue.isin(CRITICAL_QUEUES).to_numpy()
    r = rng.random(n)
    severity = np.where(r < 0.6, "minor", "major")
    severity = np.where((under | wrong_action) & crit_q & (r < 0.55), "critical", severity)
    severity = np.where(under & ~crit_q & (r < 0.06), "critical", severity)
    df["error_severity"] = np.where(is_error, severity, "none")
    causes = rng.choice(ROOT_CAUSES, n, p=ROOT_CAUSE_MIX)
    causes = np.where(cause_override != None, cause_override, causes)  # noqa: E711
    df["root_cause"] = np.where(is_error, causes, None)

    df["auditor_comment"] = _comments(rng, df, is_error)
    handle = rng.lognormal(0, 0.45, n) * CONTENT_HANDLE_S[ct] * srow.handle_factor.to_numpy() * handle_mult
    df["handle_time_s"] = np.where(rng.random(n) < 0.02, np.nan, np.round(handle, 1))
    df["content_id"] = "C" + pd.Series(rng.integers(10**9, 10**10, n)).astype(str).to_numpy()
    df["audit_id"] = [f"A{month.replace('-', '')}-{offset + i:07d}" for i in range(n)]
    df["_false_flag"] = false_flag
    return df


def _plant_auditor_error(df: pd.DataFrame, effect: dict, rng: np.random.Generator) -> pd.DataFrame:
    """The planted auditor's verdicts in its month: a share of the audits outside the spared queues
    become theirs; of those, correct decisions are flagged (the auditor writes a wrong answer) and
    errors are missed (the auditor writes the moderator's answer as the correct one). The moderators'
    decisions, and so the truth, do not change. Draws come from `rng` only, so the other effects and
    every other month stay those of the seed."""
    df = df.copy()
    n = len(df)
    spared = effect["spared_queues"].split(";")
    take = (~df.queue.isin(spared)).to_numpy() & ~df._false_flag.to_numpy() & (rng.random(n) < effect["share"])
    df.loc[take, "auditor_id"] = effect["auditor_id"]
    is_error = ((df.action_moderator != df.action_auditor) | (df.policy_moderator != df.policy_auditor)).to_numpy()
    flag = take & ~is_error & (rng.random(n) < effect["false_flag_rate"])
    miss = take & is_error & (rng.random(n) < effect["miss_rate"])
    queue_policies = pd.Series(QUEUES.set_index("queue").loc[df.queue, "policies"].to_numpy())
    picked = _choose_per_row(rng, queue_policies)
    strict_action = rng.choice(["remove", "restrict"], n, p=[0.7, 0.3])
    approved = (df.action_moderator == "approve").to_numpy()
    # a flagged approval: the auditor would have enforced; a flagged enforcement: the wrong policy
    neighbour = df.policy_moderator.to_numpy().copy()
    for i in np.flatnonzero(flag & ~approved):
        neighbour[i] = _neighbour_policy(neighbour[i])
    df["action_auditor"] = np.where(flag & approved, strict_action, df.action_auditor.to_numpy())
    df["policy_auditor"] = np.where(flag & approved, picked, np.where(flag, neighbour, df.policy_auditor.to_numpy()))
    severity = np.where(rng.random(n) < 0.6, "minor", "major")
    causes = rng.choice(ROOT_CAUSES, n, p=ROOT_CAUSE_MIX)
    df["error_severity"] = np.where(flag, severity, np.where(miss, "none", df.error_severity.to_numpy()))
    df["root_cause"] = np.where(flag, causes, np.where(miss, None, df.root_cause.to_numpy()))
    at_stake = np.where(df.policy_auditor.to_numpy() == "NONE", df.policy_moderator.to_numpy(), df.policy_auditor.to_numpy())
    pick = rng.integers(0, 1000, n)
    comments = df.auditor_comment.to_numpy().copy()
    for i in np.flatnonzero(flag):
        phrases = COMMENT_PHRASES[causes[i]]
        comments[i] = phrases[pick[i] % len(phrases)].format(policy=at_stake[i])
    comments[miss] = None
    df["auditor_comment"] = comments
    df["action_auditor"] = np.where(miss, df.action_moderator.to_numpy(), df.action_auditor.to_numpy())
    df["policy_auditor"] = np.where(miss, df.policy_moderator.to_numpy(), df.policy_auditor.to_numpy())
    return df


def _truth(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The correct action and policy of every audit, as an expert would answer: the auditor's,
    except where the generator planted a false flag (the moderator was right)."""
    ff = df._false_flag.to_numpy()
    return (np.where(ff, df.action_moderator.to_numpy(), df.action_auditor.to_numpy()),
            np.where(ff, df.policy_moderator.to_numpy(), df.policy_auditor.to_numpy()))


REVIEWERS = np.array(["QE-01", "QE-02", "QE-03", "QE-04"])
"""The policy experts who re-audit (never a moderator or an auditor)."""


def _reaudits(rng: np.random.Generator, audits: pd.DataFrame, month: str, share: float) -> pd.DataFrame:
    """A random `share` of the month's audits re-reviewed blind by an expert, whose answer is the truth."""
    k = int(round(len(audits) * share))
    picked = audits.iloc[np.sort(rng.choice(len(audits), k, replace=False))]
    when = (pd.to_datetime(picked.audited_at, utc=True)
            + pd.to_timedelta(rng.uniform(0.5, 20.0, k), unit="D")).dt.floor("s")
    out = pd.DataFrame({
        "reaudit_id": [f"R{month.replace('-', '')}-{i:05d}" for i in range(k)],
        "audit_id": picked.audit_id.to_numpy(),
        "reaudited_at": when.to_numpy(),
        "reviewer_id": rng.choice(REVIEWERS, k),
        "action_reviewer": picked._truth_action.to_numpy(),
        "policy_reviewer": picked._truth_policy.to_numpy(),
    })
    out["reaudited_at"] = pd.to_datetime(out.reaudited_at, utc=True)
    return out.sort_values(["reaudited_at", "reaudit_id"], ignore_index=True)


def _neighbour_policy(policy: str) -> str:
    family, _, num = policy.partition(".")
    row = QUEUES[QUEUES.policies.str.contains(policy, regex=False)]
    options = row.policies.iloc[0].split(";") if len(row) else [policy]
    others = [o for o in options if o != policy]
    if others:
        return others[int(num) % len(others)]
    return "HR.1" if family != "HR" else "HS.1"


def _comments(rng, df: pd.DataFrame, is_error: np.ndarray) -> np.ndarray:
    n = len(df)
    out = np.full(n, None, dtype=object)
    causes = df.root_cause.to_numpy() if "root_cause" in df else np.full(n, None)
    policy = np.where(df.policy_auditor.to_numpy() == "NONE", df.policy_moderator.to_numpy(), df.policy_auditor.to_numpy())
    for cause, phrases in COMMENT_PHRASES.items():
        idx = np.flatnonzero(is_error & (causes == cause))
        pick = rng.integers(0, len(phrases), len(idx))
        out[idx] = [phrases[k].format(policy=policy[i]) for k, i in zip(pick, idx, strict=True)]
    ok = np.flatnonzero(~is_error & (rng.random(n) < 0.15))
    out[ok] = rng.choice(CORRECT_COMMENTS, len(ok))
    has_text = np.flatnonzero(pd.notna(out))
    pii = has_text[rng.random(len(has_text)) < 0.08]
    kinds = rng.integers(0, len(PII_SNIPPETS), len(pii))
    nums = rng.integers(1, 9999, len(pii))
    for i, k, m in zip(pii, kinds, nums, strict=True):
        out[i] = f"{out[i]}; " + PII_SNIPPETS[k].format(n=m, a=m % 250, b=(m * 7) % 250)
    markup = has_text[rng.random(len(has_text)) < 0.02]
    for i in markup:
        out[i] = f"{out[i]} {MARKUP_SNIPPETS[int(i) % 2]}"
    return out


AUDIT_COLUMN_ORDER = [
    "audit_id", "audited_at", "decision_at", "content_id", "content_type", "queue", "site",
    "team_type", "market", "moderator_id", "auditor_id", "action_moderator", "action_auditor",
    "policy_moderator", "policy_auditor", "error_severity", "root_cause", "auditor_comment",
    "handle_time_s", "sampling_weight",
]

BAD_ROW_KINDS = [
    ("missing_moderator", lambda r: r.update(moderator_id="")),
    ("bad_queue", lambda r: r.update(queue="Hate Speech!")),
    ("bad_action", lambda r: r.update(action_moderator="delete")),
    ("decision_after_audit", lambda r: r.update(decision_at=r["audited_at"] + pd.Timedelta(hours=2))),
    ("bad_timestamp", lambda r: r.update(audited_at="yesterday")),
    ("self_audit", lambda r: r.update(auditor_id=r["moderator_id"])),
    ("negative_handle_time", lambda r: r.update(handle_time_s=-5.0)),
]


def _plant_bad_rows(rng, df: pd.DataFrame, share: float) -> tuple[pd.DataFrame, list[dict]]:
    """Corrupt a few rows and duplicate one id so the validation gate has work to do."""
    k = int(round(len(df) * share))
    if k == 0:
        return df, []
    df = df.astype({"audited_at": object, "decision_at": object, "handle_time_s": object})
    planted = []
    for j, i in enumerate(rng.choice(len(df), k, replace=False)):
        name, fn = BAD_ROW_KINDS[j % len(BAD_ROW_KINDS)]
        row = df.loc[i].to_dict()
        fn(row)
        df.loc[i] = pd.Series(row)
        planted.append({"audit_id": row["audit_id"], "defect": name})
    dup = df.iloc[[int(rng.integers(0, len(df)))]].copy()
    planted.append({"audit_id": dup.audit_id.iloc[0], "defect": "duplicate_audit_id"})
    return pd.concat([df, dup], ignore_index=True), planted


def _write(frame: pd.DataFrame, path: Path, fmt: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        frame.to_parquet(path.with_suffix(".parquet"), index=False)
    else:
        frame.to_csv(path.with_suffix(".csv"), index=False, date_format="%Y-%m-%dT%H:%M:%SZ")


def generate(spec: SampleSpec, out: Path) -> dict:
    """Write every raw input of the data contract for `spec.months` under `out`."""
    rng = np.random.default_rng(spec.seed)
    out = Path(out)
    world = _World(spec, rng)
    effects = planted_effects(spec.months) if spec.plant_effects else {}
    world.experiment_treated = []
    assignments = _experiments(world, rng, effects)
    summary = {"months": spec.months, "audits": {}, "planted": effects, "bad_rows": {}, "reaudits": {},
               "truth": {}}
    all_audits = []
    # the auditor error and the re-audits draw from streams of their own: every other draw, and so
    # every other planted effect and file, stays that of the seed
    plant_rng = np.random.default_rng([spec.seed, 1])
    reaudit_rng = np.random.default_rng([spec.seed, 2])
    unplanted: set[str] = set()  # audits whose error the planted auditor missed (their disputes go)
    truths = {}
    for m_i, month in enumerate(spec.months):
        df = _month_audits(world, month, m_i * spec.audits_per_month, rng, effects)
        all_audits.append(df[["audit_id", "audited_at", "auditor_id", "error_severity", "_false_flag"]])
        df["_truth_action"], df["_truth_policy"] = _truth(df)
        if "auditor_error" in effects and month == effects["auditor_error"]["month"]:
            before = df.error_severity.ne("none").to_numpy()
            df = _plant_auditor_error(df, effects["auditor_error"], plant_rng)
            unplanted |= set(df.audit_id[before & df.error_severity.eq("none").to_numpy()])
        truths[month] = df[["audit_id", "audited_at", "action_moderator", "policy_moderator", "action_auditor",
                            "policy_auditor", "_truth_action", "_truth_policy"]]
        df = df[AUDIT_COLUMN_ORDER].sort_values("audited_at", ignore_index=True)
        df, planted = _plant_bad_rows(rng, df, spec.bad_row_share)
        summary["bad_rows"][month] = planted
        in_house = df.team_type.eq("in_house")
        folder = out / "audits" / month
        _write(df[in_house], folder / f"audits_{month}_in_house", spec.fmt)
        _write(df[~in_house], folder / f"audits_{month}_vendors", spec.fmt)
        summary["audits"][month] = len(df)
    if spec.with_reference_inputs:
        roster = world.moderators.assign(
            status=np.where(rng.random(len(world.moderators)) < 0.05, "inactive", "active"),
            hire_date=world.moderators.hire_date.map(date.isoformat),
        )[["moderator_id", "site", "team_type", "hire_date", "language", "status"]]
        (out / "roster").mkdir(parents=True, exist_ok=True)
        roster.to_csv(out / "roster" / "roster.csv", index=False)
        changes = _policy_changes(spec, effects)
        changes.to_csv(_mk(out / "policy_changes" / "policy_changes.csv"), index=False)
        _policy_catalogue(changes).to_csv(_mk(out / "policies" / "policies.csv"), index=False)
        exps, assign = assignments
        exps.to_csv(_mk(out / "experiments" / "experiments.csv"), index=False)
        assign.to_csv(_mk(out / "experiments" / "assignments.csv"), index=False)
        # a dispute is raised about an audit result the moderator saw: not about the rows planted
        # as corrupt, which the gate quarantines (a dispute of them would be `unknown_audit`)
        corrupt = {p["audit_id"] for planted in summary["bad_rows"].values() for p in planted
                   if p["defect"] != "duplicate_audit_id"}
        _disputes(rng, pd.concat(all_audits, ignore_index=True), spec, out, exclude=corrupt, dropped=unplanted)
        _calibration(rng, world, spec, out)
        if spec.with_hatecheck:
            from qa_pipeline.refdata import hatecheck_sessions

            ratings, gold = hatecheck_sessions(month_start(spec.months[-1]))
            folder = out / "calibration" / spec.months[-1]
            ratings.to_csv(folder / "ratings_hatecheck.csv", index=False)
            gold.to_csv(folder / "gold_hatecheck.csv", index=False)
    corrupt = {p["audit_id"] for planted in summary["bad_rows"].values() for p in planted
               if p["defect"] != "duplicate_audit_id"}
    for month, t in truths.items():
        verdict = (t.action_moderator != t.action_auditor) | (t.policy_moderator != t.policy_auditor)
        truly = (t.action_moderator != t._truth_action) | (t.policy_moderator != t._truth_policy)
        summary["truth"][month] = {
            "audits": len(t), "observed_errors": int(verdict.sum()), "true_errors": int(truly.sum()),
            "misclassified": sorted(t.audit_id[verdict != truly]),
        }
        if spec.reaudit_share > 0:
            # an expert re-reviews audits the moderators saw: not the rows planted as corrupt
            frame = _reaudits(reaudit_rng, t[~t.audit_id.isin(corrupt)], month, spec.reaudit_share)
            _write(frame, out / "reaudits" / month / "reaudits", spec.fmt)
            summary["reaudits"][month] = len(frame)
    (out / "README.md").write_text(_readme(spec, effects))
    (out / ".sample.json").write_text(json.dumps(summary, default=str, indent=1))
    return summary


def _mk(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _experiments(world: _World, rng, effects: dict):
    mods = world.moderators.moderator_id.to_numpy()
    rows, assign = [], []
    first = month_start(world.spec.months[0])
    last = next_month(month_start(world.spec.months[-1])) - timedelta(days=1)
    ex = effects.get("experiment", {"start_date": first.isoformat(), "end_date": last.isoformat()})
    designs = [
        ("EXP-01", "Coaching nudges in the review tool", "Inline nudges cut policy errors",
         ex["start_date"], ex["end_date"], "accuracy", 0.5, 0.5),
        ("EXP-02", "New queue layout", "A denser layout speeds decisions without hurting quality",
         ex["start_date"], ex["end_date"], "handle_time_s", 0.5,
         effects.get("srm_experiment", {}).get("assigned_treatment_share", 0.5)),
        ("EXP-03", "Shorter break rotation", "More frequent short breaks reduce critical errors",
         ex["start_date"], ex["end_date"], "critical_error_rate", 0.5, 0.5),
    ]
    for exp_id, name, hyp, start, end, metric, share, actual in designs:
        rows.append((exp_id, name, hyp, "quality-analytics", start, end, metric, share))
        arm = np.where(rng.random(len(mods)) < actual, "treatment", "control")
        assign.append(pd.DataFrame({"experiment_id": exp_id, "moderator_id": mods, "arm": arm}))
        if exp_id == "EXP-01":
            world.experiment_treated = list(mods[arm == "treatment"])
    exps = pd.DataFrame(rows, columns=["experiment_id", "name", "hypothesis", "owner", "start_date",
                                       "end_date", "primary_metric", "treatment_share"])
    return exps, pd.concat(assign, ignore_index=True)


def _policy_changes(spec: SampleSpec, effects: dict) -> pd.DataFrame:
    months = [month_start(m) for m in spec.months]
    pc = effects.get("policy_change", {})
    rows = [
        ("PC-SP1-CLARIFY", "SP.1", months[len(months) // 3] + timedelta(days=4), "clarification",
         "Clarifies that crypto giveaways are scams", "spam_scams"),
        ("PC-AN2-UPDATE", "AN.2", months[len(months) // 2] + timedelta(days=14), "update",
         "Art nudity exception extended to museums", "adult_nudity"),
        ("PC-MI3-NEW", "MI.3", months[max(len(months) - 2, 0)] + timedelta(days=2), "new",
         "New election misinformation policy", "misinformation"),
    ]
    if pc:
        rows.append((pc["change_id"], pc["policy"], date.fromisoformat(pc["effective_date"]), "update",
                     "HS.2 now covers dehumanising comparisons", "hate_speech;harassment"))
    df = pd.DataFrame(rows, columns=["change_id", "policy", "effective_date", "change_type", "summary", "queues"])
    df["effective_date"] = df.effective_date.map(date.isoformat)
    return df.sort_values("effective_date", ignore_index=True)


def _policy_catalogue(changes: pd.DataFrame) -> pd.DataFrame:
    """The organisation's policy catalogue (`policies/policies.csv`): every code of the queues, and
    the codes policy changes introduce (a `new` policy)."""
    rows = {}
    for q in QUEUES.itertuples():
        for code in q.policies.split(";"):
            rows[code] = (code, f"{q.queue.replace('_', ' ')} {code}", q.queue)
    for c in changes.itertuples():
        rows.setdefault(c.policy, (c.policy, c.summary, c.queues))
    return pd.DataFrame(sorted(rows.values()), columns=["policy", "name", "queues"])


def _disputes(rng, audits: pd.DataFrame, spec: SampleSpec, out: Path, exclude: set | None = None,
              dropped: set | None = None) -> None:
    errors = audits[audits.error_severity != "none"]
    p = np.where(errors._false_flag, 0.45, 0.06)
    d = errors[rng.random(len(errors)) < p].copy()
    d["disputed_at"] = d.audited_at + pd.to_timedelta(rng.uniform(0.1, 5, len(d)), unit="D")
    d["resolved_at"] = d.disputed_at + pd.to_timedelta(rng.uniform(1, 25, len(d)), unit="D")
    overturn_p = np.where(d._false_flag, 0.85, 0.2)
    d["outcome"] = np.where(rng.random(len(d)) < overturn_p, "overturned", "upheld")
    reasons = np.array(["The content was satire", "Context shows counter speech",
                        "Auditor misread the policy", "Action matched the guideline at the time"])
    d["reason"] = rng.choice(reasons, len(d))
    d = d[d.resolved_at < pd.Timestamp(next_month(month_start(spec.months[-1])), tz="UTC")]
    if exclude:  # after every draw, so that the other disputes stay those of the same seed
        d = d[~d.audit_id.isin(exclude)]
    d["dispute_id"] = [f"D-{i:06d}" for i in range(len(d))]
    if dropped:  # after the ids too: a dispute of an error the planted auditor missed never happened
        d = d[~d.audit_id.isin(dropped)]
    for ts in ("disputed_at", "resolved_at"):
        d[ts] = d[ts].dt.floor("s")
    d["folder"] = d.resolved_at.dt.strftime("%Y-%m")
    for folder, part in d.groupby("folder"):
        _mk(out / "disputes" / folder / "disputes.csv")
        part[["dispute_id", "audit_id", "disputed_at", "resolved_at", "reason", "outcome"]].to_csv(
            out / "disputes" / folder / "disputes.csv", index=False, date_format="%Y-%m-%dT%H:%M:%SZ")


def _calibration(rng, world: _World, spec: SampleSpec, out: Path) -> None:
    raters = world.auditors[:8]
    weak = raters[-1]
    for month in spec.months:
        ratings, gold = [], []
        for k, queue in enumerate(["hate_speech", "harassment", "misinformation"]):
            session = f"CAL-{month}-{queue}"
            sdate = month_start(month) + timedelta(days=12 + k)
            pols = QUEUES.set_index("queue").loc[queue, "policies"].split(";")
            # misinformation is hard to agree on: its cases are closer calls
            p_right = 0.62 if queue == "misinformation" else 0.88
            for c in range(12):
                enforce = rng.random() < 0.6
                g_action = rng.choice(ENFORCE_ACTIONS[:2]) if enforce else "approve"
                g_policy = rng.choice(pols) if enforce else "NONE"
                gold.append((session, f"case-{c + 1:02d}", g_action, g_policy))
                for r in raters:
                    if rng.random() < 0.06:
                        continue  # skipped case
                    right = rng.random() < (0.55 if r == weak else p_right)
                    if right:
                        a, pol = g_action, g_policy
                    elif enforce and rng.random() < 0.5:
                        a, pol = g_action, _neighbour_policy(g_policy)
                    elif enforce:
                        a, pol = "approve", "NONE"
                    else:
                        a, pol = "remove", rng.choice(pols)
                    ratings.append((session, sdate.isoformat(), queue, f"case-{c + 1:02d}", r,
                                    "auditor", a, pol))
        folder = out / "calibration" / month
        folder.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(ratings, columns=["session_id", "session_date", "queue", "case_id", "rater_id",
                                       "rater_role", "action", "policy"]).to_csv(folder / "ratings.csv", index=False)
        pd.DataFrame(gold, columns=["session_id", "case_id", "gold_action", "gold_policy"]).to_csv(
            folder / "gold.csv", index=False)


def _readme(spec: SampleSpec, effects: dict) -> str:
    lines = [
        "# Sample raw data (synthetic)",
        "",
        f"Generated by `qa-pipeline generate --months {spec.months[0]}..{spec.months[-1]} "
        f"--audits-per-month {spec.audits_per_month} --seed {spec.seed}`. No real person or content.",
        "",
        "Sites: " + ", ".join(f"{s.site} ({s.team_type})" for s in SITES.itertuples()) + ".",
        "Queues: " + ", ".join(f"{q.queue} ({q.policies.replace(';', ', ')})" for q in QUEUES.itertuples()) + ".",
        "",
        f"About {spec.bad_row_share:.1%} of audit rows per month are corrupted on purpose (one rule each)",
        "and one audit id is duplicated, so the validation gate has something to quarantine.",
        "",
        f"Policy experts re-audit {spec.reaudit_share:.0%} of each month's audits blind (`reaudits/YYYY-MM/`); their",
        "answer is the truth. `.sample.json` holds, per month, the true error count and the audits whose",
        "verdict the generator made wrong on purpose (`truth`).",
        "",
        "## Planted effects",
        "",
    ]
    for name, e in effects.items():
        lines.append(f"- **{name}**: " + "; ".join(f"{k} = {v}" for k, v in e.items()))
    return "\n".join(lines) + "\n"


def parse_months(text: str) -> list[str]:
    """`2026-01..2026-06` or `2026-01,2026-03` → list of `YYYY-MM`."""
    if ".." in text:
        a, b = text.split("..")
        return month_range(a, b)
    return [m.strip() for m in text.split(",") if m.strip()]
