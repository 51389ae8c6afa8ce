"""CreditService: the only code that moves credits.  Used by the member and image-edit areas.

One stateless object, reached as ``xintu.member.service.get_service().credits`` (the edit area, which
also runs outside an app context, keeps one of its own).  Interface (all amounts are positive ints;
all return a :class:`Movement`)::

    credits.grant(user_id, amount, reason, ref)    # + credits (signup_bonus, purchase, …)
    credits.spend(user_id, amount, reason, ref)    # − credits, PaymentRequired if short
    credits.refund(user_id, amount, reason, ref)   # + credits back (edit_refund)
    credits.adjust(user_id, delta, operator, note) # operator correction, ± (admin_adjust), |delta| ≤ MAX_ADJUST
    credits.claw_back(user_id, amount, reason, ref) # − up to amount, never below 0 (refund)

Guarantees:
- a change is one guarded UPDATE (``balance = balance - n WHERE balance >= n``, which also hands back
  the new balance: no SELECT) plus one ledger row with ``balance_after``, in one transaction (a
  savepoint when the caller already has one, so an order grant commits or rolls back with the order's
  status flip);
- ``(reason, ref)`` is unique in the ledger, so replaying a call with the same reason and ref moves
  nothing and returns the original movement with ``duplicate=True``.  Callers pick refs that name the
  cause: an order number, ``task:<id>``, ``user:<id>`` for the one-time signup bonus.
"""
from __future__ import annotations

import uuid
import weakref
from dataclasses import dataclass
from datetime import datetime

from peewee import JOIN, CharField, DateTimeField, IntegrityError, fn

from xintu import db, metrics
from xintu.errors import BadRequest, NotFound, PaymentRequired
from xintu.models import CreditLedger, User
from xintu.timeutil import iso, utcnow

REASONS = ("signup_bonus", "membership_bonus", "purchase", "edit_spend", "edit_refund", "admin_adjust",
           "refund")
SIGNUP_BONUS = 10
MAX_ADJUST = 100_000   # one adjustment larger than this is a typo, not a decision


@dataclass(frozen=True)
class Movement:
    ledger_id: int
    user_id: int
    delta: int
    balance_after: int
    duplicate: bool = False


class CreditService:
    def grant(self, user_id: int, amount: int, reason: str, ref: str, *, operator=None, note=None) -> Movement:
        _check(amount, reason, ref)
        return _move(user_id, amount, reason, ref, operator, note)

    def spend(self, user_id: int, amount: int, reason: str, ref: str, *, operator=None, note=None) -> Movement:
        _check(amount, reason, ref)
        return _move(user_id, -amount, reason, ref, operator, note)

    def refund(self, user_id: int, amount: int, reason: str = "edit_refund", ref: str = "", *,
               operator=None, note=None) -> Movement:
        _check(amount, reason, ref)
        return _move(user_id, amount, reason, ref, operator, note)

    def claw_back(self, user_id: int, amount: int, reason: str = "refund", ref: str = "", *,
                  operator=None, note=None) -> Movement | None:
        """Take back up to ``amount`` (what a refunded order granted): as much as the balance still holds,
        never below zero. ``Movement.delta`` says what was taken; None when the balance was already 0."""
        _check(amount, reason, ref)
        for _ in range(5):   # on SQLite (no row lock) a concurrent spend can lower the balance under us
            query = User.select(User.credits_balance).where(User.id == user_id)
            balance = (query.for_update() if db.is_mysql() else query).scalar()
            if balance is None:
                raise NotFound("用户不存在", code="user_not_found")
            take = min(balance, amount)
            if take <= 0:
                return None
            try:
                return _move(user_id, -take, reason, ref, operator, note)
            except PaymentRequired:
                continue
        raise PaymentRequired("积分余额变化过快，请重试", code="credits_contended")

    def adjust(self, user_id: int, delta: int, operator: str, note: str) -> Movement:
        """An operator's correction (管理后台 and ``xintu credits adjust`` alike); never idempotent (each
        call is its own ref), always recorded with who and why."""
        if not operator:
            raise BadRequest("人工调整必须写明操作人和原因", code="adjust_reason_required")
        note = (note or "").strip()
        if not note:
            raise BadRequest("请填写调整原因", code="reason_required")
        if not isinstance(delta, int) or isinstance(delta, bool) or delta == 0 or abs(delta) > MAX_ADJUST:
            raise BadRequest(f"调整数量须为非零整数，且绝对值不超过 {MAX_ADJUST}", code="invalid_delta")
        return _move(user_id, delta, "admin_adjust", "adj:" + uuid.uuid4().hex, operator, note[:255])

    def balance(self, user_id: int) -> int:
        user = User.get_or_none(User.id == user_id)
        if user is None:
            raise NotFound("用户不存在", code="user_not_found")
        return user.credits_balance

    def history(self, user_id: int, limit: int = 20) -> list[CreditLedger]:
        return list(CreditLedger.select().where(CreditLedger.user == user_id)
                    .order_by(CreditLedger.id.desc()).limit(limit))

    def audit(self) -> list[dict]:
        """Users whose cached balance differs from the sum of their ledger (should be none)."""
        ledger_sum = fn.COALESCE(fn.SUM(CreditLedger.delta), 0)
        rows = (User.select(User.id, User.credits_balance, ledger_sum.alias("ledger"))
                .join(CreditLedger, on=(CreditLedger.user == User.id), join_type=JOIN.LEFT_OUTER)
                .group_by(User.id, User.credits_balance)
                .having(ledger_sum != User.credits_balance).dicts())
        return [{"user_id": r["id"], "balance": r["credits_balance"], "ledger": int(r["ledger"]),
                 "drift": r["credits_balance"] - int(r["ledger"])} for r in rows]


def ledger_view(entry: CreditLedger, *, operator: bool = False) -> dict:
    """A ledger row as the user's own page shows it; ``operator`` adds id, ref, who and why."""
    if operator:
        return {"id": entry.id, "delta": entry.delta, "reason": entry.reason, "ref": entry.ref,
                "balance_after": entry.balance_after, "operator": entry.operator, "note": entry.note,
                "created_at": iso(entry.created_at)}
    return {"delta": entry.delta, "reason": entry.reason, "balance_after": entry.balance_after,
            "created_at": iso(entry.created_at)}


def _check(amount, reason, ref):
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        raise BadRequest("积分数量必须是正整数", code="invalid_amount")
    if reason not in REASONS:
        raise BadRequest(f"未知的积分原因 {reason}", code="invalid_reason")
    if not ref or len(ref) > 64:
        raise BadRequest("积分变动必须带有 1–64 字符的 ref", code="invalid_ref")


def _move(user_id, delta, reason, ref, operator, note) -> Movement:
    try:
        with db.atomic():
            after = _apply_delta(user_id, delta)
            if after is None:
                if not User.select().where(User.id == user_id).exists():
                    raise NotFound("用户不存在", code="user_not_found")
                raise PaymentRequired("积分不足", code="insufficient_credits")
            ledger_id = _statement("ledger_insert").run(
                user=user_id, delta=delta, reason=reason, ref=ref, balance_after=after, operator=operator,
                note=note, created_at=utcnow()).lastrowid
        # after the (save)point is released; a caller's outer rollback can still undo it, which a
        # counter tolerates (the ledger stays the truth, StatsService reads that)
        metrics.count_credits(delta, reason)
        return Movement(ledger_id, user_id, delta, after)
    except IntegrityError:
        # (reason, ref) already in the ledger: the savepoint above undid our UPDATE; report the original.
        # A locking read sees the committed row even inside an older REPEATABLE READ snapshot.
        query = CreditLedger.select().where(CreditLedger.reason == reason, CreditLedger.ref == ref)
        entry = (query.for_update() if db.is_mysql() else query).first()
        if entry is None:
            raise
        return Movement(entry.id, entry.user_id, entry.delta, entry.balance_after, duplicate=True)


def _apply_delta(user_id: int, delta: int) -> int | None:
    """The guarded UPDATE; the new balance, or None when the guard (or the user) was not there.

    The new balance comes back with the UPDATE itself, so no SELECT follows it: on MySQL/MariaDB the
    statement sets ``credits_balance = LAST_INSERT_ID(credits_balance + d)`` and the server returns that
    value as the OK packet's insert id (``cursor.lastrowid``); on SQLite it is ``RETURNING``. We hold
    the row lock from the UPDATE until commit, so it is our own result, not a neighbour's."""
    name = ("debit" if delta < 0 else "credit") + ("_mysql" if db.is_mysql() else "_sqlite")
    params = {"user_id": user_id, "delta": delta, "minimum": -delta}
    cursor = _statement(name).run(**params)
    if db.is_mysql():
        if cursor.rowcount != 1:   # CLIENT.FOUND_ROWS: matched rows, so 1 means the guard held
            return None
        after = cursor.lastrowid   # LAST_INSERT_ID is BIGINT UNSIGNED: a negative balance wraps
        return after - (1 << 64) if after >= 1 << 63 else after
    row = cursor.fetchone()
    return None if row is None else row[0]


# -- statements compiled once per database -------------------------------------------------------
# Building a query through peewee costs more than the round trip of running it (measured on a 2-core
# host: ~350 µs to build the guarded UPDATE, ~300 µs to run it), so the two statements of a move are
# built by peewee once per database, with a sentinel value for each parameter, and then only run with
# new values. The session's LAST_INSERT_ID is left at the ledger row's id by the INSERT that follows.

class _Compiled:
    def __init__(self, database, sql: str, names: list[str], converters: dict):
        self.database, self.sql, self.names, self.converters = database, sql, names, converters

    def run(self, **values):
        params = [self.converters[n](values[n]) for n in self.names]
        return self.database.execute_sql(self.sql, params)


def _build(name):
    """(peewee query, {param name: (sentinel, field)}) of a statement."""
    if name == "ledger_insert":
        fields = {"user": CreditLedger.user, "delta": CreditLedger.delta, "reason": CreditLedger.reason,
                  "ref": CreditLedger.ref, "balance_after": CreditLedger.balance_after,
                  "operator": CreditLedger.operator, "note": CreditLedger.note,
                  "created_at": CreditLedger.created_at}
        sentinels = {n: _sentinel(n, f, i) for i, (n, f) in enumerate(fields.items())}
        return CreditLedger.insert({fields[n]: sentinels[n] for n in fields}), \
            {n: (sentinels[n], fields[n]) for n in fields}
    kind, _, dialect = name.partition("_")
    spec = {"user_id": (910000001, User.id), "delta": (910000002, User.credits_balance)}
    new_balance = User.credits_balance + spec["delta"][0]
    guard = User.id == spec["user_id"][0]
    if kind == "debit":
        spec["minimum"] = (910000003, User.credits_balance)
        guard &= User.credits_balance >= spec["minimum"][0]
    if dialect == "mysql":
        return User.update(credits_balance=fn.LAST_INSERT_ID(new_balance)).where(guard), spec
    return User.update(credits_balance=new_balance).where(guard).returning(User.credits_balance), spec


def _sentinel(name, field, i):
    if isinstance(field, DateTimeField):
        return datetime(1901, 2, 3, 4, 5, 6, 7 + i)
    if isinstance(field, CharField):
        return f"\x00sentinel:{name}"
    return 920000000 + i


def _statement(name) -> _Compiled:
    database = db.primary.obj
    per_db = _compiled.setdefault(database, {})
    if name not in per_db:
        query, spec = _build(name)
        sql, params = database.get_sql_context().sql(query).query()
        expected = {field.db_value(sentinel): n for n, (sentinel, field) in spec.items()}
        names = [expected[p] for p in params]  # KeyError: a parameter we did not mean to have
        if sorted(set(names)) != sorted(spec):
            raise RuntimeError(f"statement {name}: parameters {names} do not match {sorted(spec)}")
        per_db[name] = _Compiled(database, sql, names, {n: field.db_value for n, (_, field) in spec.items()})
    return per_db[name]


_compiled: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
