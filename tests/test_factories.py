"""tests/factories.py makes rows the way production does: the ledger agrees, tokens authenticate, orders
carry the server's prices and what they grant."""
from datetime import timedelta

from tests.factories import make_bound_user, make_client, make_order, make_user
from xintu.member.credits import CreditService
from xintu.models import CreditLedger, User
from xintu.timeutil import utcnow


def test_a_user_with_credits_and_membership_agrees_with_the_ledger(app):
    user = make_user(app=app, balance=7, member_days=3, openid="o-factory")
    with app.app_context():
        assert User.get_by_id(user.id).credits_balance == user.credits_balance == 7
        assert [(e.reason, e.delta, e.balance_after) for e in CreditLedger.select()] == [("purchase", 7, 7)]
        assert CreditService().audit() == []
    assert abs(user.member_expires_at - (utcnow() + timedelta(days=3))) < timedelta(minutes=1)
    lapsed = make_user(app=app, member_days=-1)
    assert lapsed.member_expires_at < utcnow() and lapsed.openid != user.openid


def test_clients_authenticate_as_a_device_or_as_the_user(app, client):
    user, headers = make_bound_user(app=app, balance=2, nickname="小芯")
    me = client.get("/api/v1/me", headers=headers)
    assert me.status_code == 200, me.get_json()
    body = me.get_json()
    assert (body["id"], body["nickname"], body["credits_balance"]) == (user.id, "小芯", 2)
    device = make_client(app=app, platform="windows")
    assert device.session.kind == "device" and device.session.user_id is None
    assert client.get("/api/v1/me", headers=device.headers).status_code == 403   # not bound to a user


def test_orders_take_the_price_table_and_record_their_grant(app):
    user = make_user(app=app)
    with app.app_context():
        member = make_order(user, kind="member")
        credits = make_order(user, package="20", status="paid")
    assert (member.amount_fen, member.grant_days, member.grant_credits, member.paid_at) == (2990, 30, 10, None)
    assert (credits.amount_fen, credits.grant_days, credits.grant_credits) == (1800, 0, 20)
    assert credits.paid_at is not None and member.out_trade_no != credits.out_trade_no
