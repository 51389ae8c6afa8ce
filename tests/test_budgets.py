"""Abuse budgets shared through the database: one guarded statement per spend, so workers cannot overshoot."""
import threading
from datetime import datetime

import pytest

from xintu import budgets, db


@pytest.mark.parametrize("address, network", [
    ("203.0.113.9", "203.0.113.9"), ("::ffff:203.0.113.9", "203.0.113.9"),
    ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"), ("2001:DB8:1:2::ffff", "2001:db8:1:2::/64"),
    ("not-an-address", None), (None, None),
])
def test_addresses_are_limited_per_ipv4_address_or_ipv6_64(address, network):
    assert budgets.network_of(address) == network


def test_windows_are_shanghai_days_and_utc_hours():
    late_utc = datetime(2026, 12, 1, 17, 30)        # 01:30 on 2 December in Shanghai
    assert budgets.window_of(budgets.DAY, late_utc) == "2026-12-02"
    assert budgets.window_of(budgets.HOUR, late_utc) == "2026-12-01T17"


def test_take_all_spends_every_budget_or_none(app):
    with app.app_context():
        assert budgets.take_all([("a", 2, budgets.DAY), ("b", 1, budgets.DAY)]) is None
        assert budgets.take_all([("a", 2, budgets.DAY), ("b", 1, budgets.DAY)]) == "b"
        assert (budgets.used("a"), budgets.used("b")) == (1, 1)          # a's unit was given back
        assert budgets.take("unlimited", 0) and budgets.used("unlimited") == 0


@pytest.mark.mariadb
def test_concurrent_workers_never_overshoot_a_budget_on_mariadb(mysql_app):
    barrier, granted = threading.Barrier(16), []

    def worker():
        with mysql_app.app_context():
            barrier.wait()
            granted.append(budgets.take("llm:all", 7))
            db.close_all()

    threads = [threading.Thread(target=worker) for _ in range(16)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert granted.count(True) == 7
    with mysql_app.app_context():
        assert budgets.used("llm:all") == 7
