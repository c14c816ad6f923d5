"""Month arithmetic on `YYYY-MM` keys and `date` month starts (partition keys are `YYYY-MM-01`)."""

from __future__ import annotations

from datetime import date


def month_start(value: str | date) -> date:
    """`2026-03`, `2026-03-01` or a date → the first day of its month."""
    if isinstance(value, date):
        return value.replace(day=1)
    parts = value.split("-")
    return date(int(parts[0]), int(parts[1]), 1)


def next_month(d: date) -> date:
    return date(d.year + d.month // 12, d.month % 12 + 1, 1)


def previous_month(d: date) -> date:
    return date(d.year - (d.month == 1), (d.month - 2) % 12 + 1, 1)


def month_key(d: date) -> str:
    """The folder name of a month: `YYYY-MM`."""
    return f"{d.year:04d}-{d.month:02d}"


def month_range(first: str, last: str) -> list[str]:
    """Inclusive list of `YYYY-MM` keys."""
    a, b = month_start(first), month_start(last)
    if b < a:
        raise ValueError(f"month range {first}..{last} is empty")
    out = []
    while a <= b:
        out.append(month_key(a))
        a = next_month(a)
    return out


def partition_key(month: str | date) -> str:
    """Dagster's monthly partition key (`YYYY-MM-01`)."""
    return month_start(month).isoformat()


def months_back(d: date, count: int) -> list[date]:
    """The month and the `count` months before it, newest first."""
    out = [month_start(d)]
    for _ in range(count):
        out.append(previous_month(out[-1]))
    return out


def months_between(first: date, last: date) -> list[date]:
    """First days of every month from first's month to last's month, inclusive."""
    out, m = [], month_start(first)
    while m <= last:
        out.append(m)
        m = next_month(m)
    return out


def add_months(d: date, k: int) -> date:
    """The first day of the month `k` months after `d`'s (before, for a negative `k`)."""
    index = d.year * 12 + d.month - 1 + k
    return date(index // 12, index % 12 + 1, 1)


def is_month_folder(name: str) -> bool:
    """A folder named exactly `YYYY-MM` with a real month (01–12)."""
    return (len(name) == 7 and name[4] == "-" and name[:4].isdigit() and name[5:].isdigit()
            and 1 <= int(name[5:]) <= 12)
