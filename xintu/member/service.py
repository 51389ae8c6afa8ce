"""The member area's one service object, built once per app from its config and kept in
``app.extensions["xintu.member"]``: blueprints, CLI commands and the admin all reach it through
:func:`get_service`.

It is composed of the area's parts, each owning its rules:

- ``credits``  :class:`~xintu.member.credits.CreditService`: every credit movement (caps and reason checks of
  an operator's adjustment included);
- ``binding``  :class:`~xintu.member.binding.BindingService`: login QR codes and their binding;
- ``orders``   :class:`~xintu.member.orders.OrderService`: WeChat Pay orders, payment notifications, the sweep;
- ``refunds``  :class:`~xintu.member.refunds.RefundService`: refunds (shared with ``orders``).

The views that shape a row for an answer are module functions beside their models' rules
(``credits.ledger_view``, ``users.user_view``, ``orders.order_view``): one each, used by every caller.
"""
from __future__ import annotations

from flask import current_app

from xintu.member.binding import BindingService
from xintu.member.credits import CreditService
from xintu.member.orders import OrderService
from xintu.member.refunds import RefundService

EXTENSION = "xintu.member"


class MemberService:
    def __init__(self, config):
        self.config = config
        self.credits = CreditService()
        self.binding = BindingService(config)
        self.refunds = RefundService(config, self.credits)
        self.orders = OrderService(config, refunds=self.refunds, credits=self.credits)


def get_service(app=None) -> MemberService:
    app = app or current_app
    svc = app.extensions.get(EXTENSION)
    if svc is None:
        svc = app.extensions.setdefault(EXTENSION, MemberService(app.config))
    return svc
