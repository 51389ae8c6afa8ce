"""Abuse budgets shared by every worker on every host: counters in ``usage_counters``.

A budget is a key (``llm:device:42``), a window (an Asia/Shanghai day or a UTC hour) and a limit.
``take`` spends units in one guarded statement — ``UPDATE … SET count = count + n WHERE count + n <=
limit`` — so concurrent workers cannot overshoot; the row of a new window is created first with an
``INSERT … ON CONFLICT IGNORE``.  (The MySQL connection reports matched rows, see xintu.db.)
A limit of 0 means no budget.  Rows of past windows are only history; ``purge`` drops old ones.

Addresses are grouped with ``network_of``: an IPv4 address stands for itself, an IPv6 address for its
/64, the block one subscriber line gets, so rotating through a /64 does not buy more budget.
"""

from __future__ import annotations

import ipaddress
from datetime import datetime, timedelta

from xintu.models import UsageCounter
from xintu.timeutil import to_local, utcnow

DAY, HOUR = "day", "hour"


def network_of(address: str | None) -> str | None:
    """The unit an address is limited as: ``1.2.3.4`` or ``2001:db8:1:2::/64``; None if unparsable."""
    try:
        ip = ipaddress.ip_address((address or "").strip())
    except ValueError:
        return None
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if ip.version == 4:
        return str(ip)
    return str(ipaddress.ip_network(f"{ip}/64", strict=False))


def window_of(kind: str, now: datetime | None = None) -> str:
    now = now or utcnow()
    if kind == DAY:
        return to_local(now).strftime("%Y-%m-%d")
    if kind == HOUR:
        return now.strftime("%Y-%m-%dT%H")
    raise ValueError(f"unknown budget window {kind!r}")


def take(key: str, limit: int, window: str = DAY, n: int = 1, now: datetime | None = None) -> bool:
    """Spend ``n`` units of ``key``'s budget in the current window; False (nothing spent) if over."""
    if not limit or limit <= 0:
        return True
    win = window_of(window, now)
    UsageCounter.insert(key=key[:128], window=win, count=0).on_conflict_ignore().execute()
    return UsageCounter.update(count=UsageCounter.count + n).where(
        UsageCounter.key == key[:128], UsageCounter.window == win,
        UsageCounter.count + n <= limit).execute() == 1


def give_back(key: str, window: str = DAY, n: int = 1, now: datetime | None = None) -> None:
    """Return units taken by ``take`` (another budget of the same call said no)."""
    UsageCounter.update(count=UsageCounter.count - n).where(
        UsageCounter.key == key[:128], UsageCounter.window == window_of(window, now),
        UsageCounter.count >= n).execute()


def take_all(budgets: list[tuple[str, int, str]], n: int = 1) -> str | None:
    """Take from every ``(key, limit, window)`` or from none: returns the key that said no, else None."""
    taken = []
    for key, limit, window in budgets:
        if not take(key, limit, window, n):
            for done_key, done_window in taken:
                give_back(done_key, done_window, n)
            return key
        if limit:
            taken.append((key, window))
    return None


def used(key: str, window: str = DAY, now: datetime | None = None) -> int:
    row = UsageCounter.get_or_none(UsageCounter.key == key[:128],
                                   UsageCounter.window == window_of(window, now))
    return row.count if row else 0


def purge(older_than: timedelta = timedelta(days=35)) -> int:
    return UsageCounter.delete().where(UsageCounter.created_at < utcnow() - older_than).execute()
