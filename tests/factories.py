"""Test data made through the code that makes it in production: users (credits by ledger rows), client
tokens (``auth.issue_token``), orders (``OrderService``'s row with what it grants).

Each factory works inside the caller's app context, or enters ``app``'s when one is passed
(``make_user(app=mysql_app, balance=5)``).
"""
from __future__ import annotations

import secrets
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app

from xintu import db
from xintu.auth import issue_token
from xintu.member.credits import CreditService
from xintu.member.prices import lookup
from xintu.models import ClientSession, Order, User
from xintu.timeutil import utcnow


def _in(app):
    """``app``'s context (its teardown closes the DB connection), or none: the caller's is active."""
    return app.app_context() if app is not None else nullcontext()


def make_user(*, balance: int = 0, member_days: float | None = None, openid: str | None = None,
              nickname: str | None = None, subscribed: bool = False, reason: str = "purchase", app=None,
              **fields) -> User:
    """A WeChat user. ``balance`` credits arrive as one ledger row of ``reason`` (so `credits audit` agrees);
    ``member_days`` sets the membership to end that many days from now (negative: ended)."""
    openid = openid or "o" + secrets.token_hex(10)
    with _in(app):
        if member_days is not None:
            fields["member_expires_at"] = utcnow() + timedelta(days=member_days)
        with db.atomic():
            user = User.create(openid=openid, nickname=nickname, subscribed=subscribed, **fields)
            if balance:
                CreditService().grant(user.id, balance, reason, f"seed:{openid}")
        return User.get_by_id(user.id) if balance else user


@dataclass
class Client:
    token: str
    session: ClientSession

    @property
    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"}


def make_client(*, user: User | None = None, client_id: str | None = None, platform: str | None = None,
                app=None) -> Client:
    """A registered device, or with ``user`` a client bound to that user (a QR login's outcome)."""
    with _in(app):
        token, session = issue_token(client_id=client_id or "test-" + secrets.token_hex(6),
                                     kind="bound" if user is not None else "device", user=user, platform=platform)
    return Client(token, session)


def make_bound_user(*, balance: int = 0, app=None, **user_fields) -> tuple[User, dict]:
    """A user with ``balance`` credits and a bound client: (user, Authorization headers)."""
    with _in(app):
        user = make_user(balance=balance, **user_fields)
        return user, make_client(user=user).headers


def make_order(user: User, *, kind: str = "credits", package: str = "10", status: str = "created",
               out_trade_no: str | None = None, paid_at=None, app=None, **fields) -> Order:
    """An order row at the configured prices, with what it grants (as OrderService writes it): ``kind``
    ``member`` (package ``member``) or ``credits`` (package = the number of credits)."""
    with _in(app):
        product = lookup(current_app.config, kind, package)
        member = product.kind == "member"
        values = {"package": product.package, "quantity": product.quantity, "amount_fen": product.amount_fen,
                  "grant_days": product.quantity if member else 0,
                  "grant_credits": product.bonus_credits if member else product.quantity, **fields}
        if paid_at is None and status not in ("created", "closed"):
            paid_at = utcnow()
        return Order.create(out_trade_no=out_trade_no or "XT" + secrets.token_hex(8).upper(), user=user.id,
                            kind=product.kind, status=status, paid_at=paid_at,
                            time_expire=utcnow() + timedelta(minutes=30), **values)
