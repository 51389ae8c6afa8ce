"""CreditService on real MariaDB: guarded atomic moves, a ledger row each, (reason, ref) idempotency."""
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.factories import make_user
from xintu import db
from xintu.errors import BadRequest, NotFound, PaymentRequired
from xintu.member.credits import MAX_ADJUST, CreditService
from xintu.member.service import get_service
from xintu.models import CreditLedger, User

pytestmark = pytest.mark.mariadb


@pytest.fixture
def ctx(mysql_app):
    with mysql_app.app_context():
        yield mysql_app
        db.close_all()


def test_grant_spend_refund_write_one_ledger_row_each(ctx):
    user = make_user(openid="oCREDIT")
    assert CreditService().grant(user.id, 10, "signup_bonus", f"user:{user.id}").balance_after == 10
    assert CreditService().spend(user.id, 3, "edit_spend", "task:1").balance_after == 7
    assert CreditService().refund(user.id, 1, "edit_refund", "task:1").balance_after == 8
    rows = [(e.delta, e.reason, e.ref, e.balance_after) for e in CreditLedger.select().order_by(CreditLedger.id)]
    assert rows == [(10, "signup_bonus", f"user:{user.id}", 10), (-3, "edit_spend", "task:1", 7),
                    (1, "edit_refund", "task:1", 8)]
    assert CreditService().balance(user.id) == 8 and CreditService().audit() == []


def test_same_reason_and_ref_moves_credits_once(ctx):
    user = make_user(openid="oCREDIT")
    first = CreditService().grant(user.id, 10, "purchase", "XT1")
    again = CreditService().grant(user.id, 10, "purchase", "XT1")
    assert not first.duplicate and again.duplicate and again.ledger_id == first.ledger_id
    spend = CreditService().spend(user.id, 4, "edit_spend", "task:9")
    assert CreditService().spend(user.id, 4, "edit_spend", "task:9").duplicate
    assert spend.balance_after == 6 and User.get_by_id(user.id).credits_balance == 6


def test_spend_beyond_balance_is_402_and_changes_nothing(ctx):
    user = make_user(balance=5, openid="oCREDIT")
    with pytest.raises(PaymentRequired) as exc:
        CreditService().spend(user.id, 6, "edit_spend", "task:big")
    assert exc.value.code == "insufficient_credits" and exc.value.status == 402
    assert User.get_by_id(user.id).credits_balance == 5
    assert not CreditLedger.select().where(CreditLedger.ref == "task:big").exists()


@pytest.mark.parametrize("call,code", [
    (lambda uid: CreditService().grant(uid, 0, "purchase", "r"), "invalid_amount"),
    (lambda uid: CreditService().grant(uid, -5, "purchase", "r"), "invalid_amount"),
    (lambda uid: CreditService().grant(uid, 5, "lottery", "r"), "invalid_reason"),
    (lambda uid: CreditService().grant(uid, 5, "purchase", ""), "invalid_ref"),
    (lambda uid: CreditService().adjust(uid, 5, "", "why"), "adjust_reason_required"),
    (lambda uid: CreditService().adjust(uid, 5, "ops", "   "), "reason_required"),
    (lambda uid: CreditService().adjust(uid, 0, "ops", "why"), "invalid_delta"),
    (lambda uid: CreditService().adjust(uid, MAX_ADJUST + 1, "ops", "why"), "invalid_delta"),
    (lambda uid: CreditService().adjust(uid, -MAX_ADJUST - 1, "ops", "why"), "invalid_delta"),
])
def test_bad_calls_are_refused_with_a_code(ctx, call, code):
    user = make_user(openid="oCREDIT")
    with pytest.raises(BadRequest) as exc:
        call(user.id)
    assert exc.value.code == code


def test_the_member_service_is_built_once_per_app_and_shares_its_parts(ctx):
    service = get_service()
    assert get_service(ctx) is service and ctx.extensions["xintu.member"] is service
    assert service.orders.refunds is service.refunds and service.orders.credits is service.credits
    assert service.config is ctx.config   # settings changed on the app are seen by the service
    user = make_user(openid="oCREDIT")
    move = service.credits.adjust(user.id, MAX_ADJUST, "ops", "  最大调整  ")
    assert move.balance_after == MAX_ADJUST
    assert CreditLedger.get_by_id(move.ledger_id).note == "最大调整"


def test_unknown_user_is_404(ctx):
    with pytest.raises(NotFound):
        CreditService().grant(987654, 1, "purchase", "XT-nouser")


def test_200_concurrent_spends_on_a_balance_of_100(ctx, mysql_app):
    user = make_user(balance=100, openid="oCREDIT")
    db.close_all()
    barrier = threading.Barrier(16)

    def spend(i):
        if i < 16:
            barrier.wait()  # start the first wave together
        with mysql_app.app_context():
            try:
                CreditService().spend(user.id, 1, "edit_spend", f"task:{i}")
                return True
            except PaymentRequired:
                return False
            finally:
                db.close_all()

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(spend, range(200)))
    assert results.count(True) == 100 and results.count(False) == 100
    assert User.get_by_id(user.id).credits_balance == 0
    assert CreditLedger.select().where(CreditLedger.reason == "edit_spend").count() == 100
    assert CreditService().audit() == []
    # every balance_after is distinct: each spend saw its own result, not a neighbour's
    afters = [e.balance_after for e in CreditLedger.select().where(CreditLedger.reason == "edit_spend")]
    assert sorted(afters) == list(range(100))


def test_concurrent_duplicate_grants_grant_once(ctx, mysql_app):
    user = make_user(openid="oCREDIT")
    db.close_all()
    barrier = threading.Barrier(10)

    def grant(_):
        barrier.wait()
        with mysql_app.app_context():
            try:
                return CreditService().grant(user.id, 10, "purchase", "XT-SAME").duplicate
            finally:
                db.close_all()

    with ThreadPoolExecutor(max_workers=10) as pool:
        duplicates = list(pool.map(grant, range(10)))
    assert duplicates.count(False) == 1
    assert User.get_by_id(user.id).credits_balance == 10 and CreditService().audit() == []


def _session_counters():
    """The server's own per-session statement counters (the SHOW itself counts as one question)."""
    rows = db.primary.execute_sql("SHOW SESSION STATUS WHERE Variable_name IN "
                                  "('Questions', 'Com_select', 'Com_update', 'Com_insert')").fetchall()
    return {name: int(value) for name, value in rows}


def test_a_move_is_one_update_and_one_insert_in_one_transaction_without_a_select(ctx):
    user = make_user(balance=10, openid="oTRIPS")
    before = _session_counters()
    move = CreditService().spend(user.id, 3, "edit_spend", "task:trips")
    after = _session_counters()
    delta = {k: after[k] - before[k] for k in before}
    # BEGIN, UPDATE, INSERT, COMMIT, and the second SHOW; no SELECT for balance_after
    assert delta == {"Questions": 5, "Com_select": 0, "Com_update": 1, "Com_insert": 1}
    assert move.balance_after == 7 and User.get_by_id(user.id).credits_balance == 7
    entry = CreditLedger.get_by_id(move.ledger_id)
    assert (entry.delta, entry.balance_after, entry.ref) == (-3, 7, "task:trips")


def test_balance_after_comes_back_right_at_zero_and_on_a_savepoint(ctx):
    user = make_user(balance=4, openid="oZERO")
    assert CreditService().spend(user.id, 4, "edit_spend", "task:zero").balance_after == 0
    with db.atomic():   # inside a caller's transaction: a savepoint, same result
        assert CreditService().grant(user.id, 2, "purchase", "XTZERO").balance_after == 2
        assert CreditService().spend(user.id, 1, "edit_spend", "task:zero2").balance_after == 1
    assert [e.balance_after for e in CreditLedger.select().where(CreditLedger.user == user.id)
            .order_by(CreditLedger.id)] == [4, 0, 2, 1]
    assert CreditService().audit() == []
