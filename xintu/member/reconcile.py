"""Reconciliation: our orders (and, once they exist here, refunds) against WeChat Pay's trade bill.

``reconcile(config, day)`` asks WeChat Pay for the ALL trade bill of one Asia/Shanghai day through
wechatpayv3 (``trade_bill`` → ``download_url`` + ``hash_type``/``hash_value``; then ``download_bill``,
which verifies nothing), checks the SHA1 of the unzipped file itself, parses WeChat's format and
compares line by line:

- ``here_not_there``: paid here that day, absent from the bill;
- ``there_not_here``: in the bill, but not paid here (unknown number, or an order still created/closed);
- ``amount_mismatch``: both sides have it, for different amounts (fen).

Payments and refunds are two :class:`Side` objects compared the same way: orders by out_trade_no and
payment time, refunds (the ``refunds`` table) by out_refund_no and the time they succeeded.

Bill format (v3 trade bill, UTF-8): a header row of Chinese column names, one row per line with every
field prefixed by a backtick, then a summary header (``总交易单数,…``) and one summary row. Amounts are
yuan with two decimals. The summary must agree with the lines, or the bill is refused as malformed.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation

from xintu.errors import BadRequest, UpstreamError
from xintu.member.pay import pay_client
from xintu.models import Order, Refund
from xintu.timeutil import SHANGHAI, day_bounds_utc

log = logging.getLogger(__name__)

PROBLEMS = ("here_not_there", "there_not_here", "amount_mismatch")
SUMMARY_MARK = "总交易单数"
# The columns we read, by their names in the bill (their order is WeChat's business, not ours).
COL_TIME, COL_TX, COL_TRADE_NO, COL_STATE = "交易时间", "微信订单号", "商户订单号", "交易状态"
COL_SETTLED, COL_TOTAL = "应结订单金额", "订单金额"
COL_REFUND_ID, COL_REFUND_NO, COL_REFUND_FEN = "微信退款单号", "商户退款单号", "退款金额"
REQUIRED = (COL_TIME, COL_TX, COL_TRADE_NO, COL_STATE, COL_SETTLED, COL_REFUND_ID, COL_REFUND_NO,
            COL_REFUND_FEN)
SUM_COUNT = "总交易单数"
SUM_SETTLED = ("应结订单总金额", "总交易额")      # current name first, the older bills' name second
SUM_REFUND = ("退款总金额", "总退款金额")


class BillError(UpstreamError):
    """The bill could not be had or cannot be trusted (stable codes: bill_unavailable, bill_bad_url,
    bill_hash_mismatch, bill_too_large, bill_malformed)."""


# -- the bill -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class BillLine:
    kind: str                 # "payment" (SUCCESS) or "refund" (REFUND); other states are kept as-is
    state: str
    trade_time: str
    transaction_id: str
    out_trade_no: str
    amount_fen: int           # payments: 订单金额 (else 应结订单金额); refunds: 退款金额
    out_refund_no: str = ""
    refund_id: str = ""

    @property
    def number(self) -> str:
        """The merchant's own number for this line: what our records are keyed by."""
        return self.out_refund_no if self.kind == "refund" else self.out_trade_no


@dataclass
class Bill:
    lines: list[BillLine] = field(default_factory=list)
    summary: dict = field(default_factory=dict)

    def of(self, kind: str) -> list[BillLine]:
        return [line for line in self.lines if line.kind == kind]


def fen(text: str, column: str) -> int:
    """'9.90' → 990; anything but a plain amount with at most two decimals is malformed."""
    try:
        value = Decimal(text or "0")
    except InvalidOperation:
        raise BillError(f"账单金额无法解析: {column}={text!r}", code="bill_malformed") from None
    cents = value * 100
    if not value.is_finite() or cents != cents.to_integral_value():
        raise BillError(f"账单金额无法解析: {column}={text!r}", code="bill_malformed")
    return int(cents)


def _cells(row: list[str]) -> list[str]:
    return [cell.strip().removeprefix("`").strip() for cell in row]


def parse_bill(text: str) -> Bill:
    """Parse WeChat Pay's trade bill (see the module docstring); raises BillError(bill_malformed)."""
    rows = [_cells(r) for r in csv.reader(io.StringIO(text.lstrip("\ufeff"))) if any(c.strip() for c in r)]
    if not rows:
        raise BillError("账单为空", code="bill_malformed")
    header, body = rows[0], rows[1:]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise BillError("账单缺少列: " + ", ".join(missing), code="bill_malformed")
    cut = next((i for i, r in enumerate(body) if r and r[0] == SUMMARY_MARK), None)
    if cut is None or cut + 1 >= len(body):
        raise BillError("账单没有汇总行", code="bill_malformed")
    details, summary_header, summary_row = body[:cut], body[cut], body[cut + 1]
    index = {name: i for i, name in enumerate(header)}
    bill, settled = Bill(), {"all": 0, "payment": 0}
    for n, row in enumerate(details, start=2):
        if len(row) < len(header):
            raise BillError(f"账单第 {n} 行的列数不对", code="bill_malformed")
        get = lambda col, row=row: row[index[col]]  # noqa: E731
        state = get(COL_STATE)
        kind = {"SUCCESS": "payment", "REFUND": "refund"}.get(state, state.lower() or "unknown")
        due, refund = fen(get(COL_SETTLED), COL_SETTLED), fen(get(COL_REFUND_FEN), COL_REFUND_FEN)
        settled["all"] += due
        settled["payment"] += due if kind == "payment" else 0
        total = fen(get(COL_TOTAL), COL_TOTAL) if COL_TOTAL in index and get(COL_TOTAL) else due
        bill.lines.append(BillLine(kind=kind, state=state, trade_time=get(COL_TIME),
                                   transaction_id=get(COL_TX), out_trade_no=get(COL_TRADE_NO),
                                   amount_fen=refund if kind == "refund" else total,
                                   out_refund_no=get(COL_REFUND_NO) if kind == "refund" else "",
                                   refund_id=get(COL_REFUND_ID) if kind == "refund" else ""))
    summary = dict(zip(summary_header, summary_row, strict=False))
    pick = lambda names: next((summary[k] for k in names if k in summary), None)  # noqa: E731
    try:
        bill.summary = {"count": int(summary[SUM_COUNT]),
                        "settled_fen": fen(pick(SUM_SETTLED), SUM_SETTLED[0]),
                        "refund_fen": fen(pick(SUM_REFUND), SUM_REFUND[0])}
    except (KeyError, ValueError, TypeError):
        raise BillError("账单汇总行无法解析", code="bill_malformed") from None
    # WeChat's docs leave open whether refund rows count in 总交易单数 and carry 应结订单金额: either reading
    # is accepted, anything else means the lines and the summary disagree.
    refund_fen = sum(fen(r[index[COL_REFUND_FEN]], COL_REFUND_FEN) for r in details)
    if (bill.summary["count"] not in (len(bill.lines), len(bill.of("payment")))
            or bill.summary["settled_fen"] not in (settled["all"], settled["payment"])
            or bill.summary["refund_fen"] != refund_fen):
        raise BillError(f"账单汇总与明细不符: {bill.summary}", code="bill_malformed")
    return bill


# -- getting it from WeChat Pay -----------------------------------------------------------------
def _unzip(data: bytes, limit: int) -> bytes:
    if data[:2] != b"\x1f\x8b":   # tar_type GZIP was asked for; a plain file is accepted as it is
        if len(data) > limit:
            raise BillError("账单文件过大", code="bill_too_large")
        return data
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as exc:
        raise BillError(f"账单文件无法解压: {exc}", code="bill_malformed") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise BillError("账单文件过大", code="bill_too_large")
    return out


def _answer(text) -> dict:
    try:
        data = json.loads(text)
    except (TypeError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def fetch_bill(config, day: date) -> bytes | None:
    """The unzipped ALL trade bill of ``day``, its SHA1 checked; None when WeChat Pay says that day has
    no bill (no transactions)."""
    wp = pay_client(config)
    try:
        code, text = wp.trade_bill(bill_date=day.isoformat(), bill_type="ALL", tar_type="GZIP")
    except Exception as exc:  # noqa: BLE001  network, or the SDK refusing an unsigned answer
        raise BillError(f"申请交易账单失败: {exc}"[:300], code="bill_unavailable") from None
    info = _answer(text)
    if code != 200:
        if info.get("code") == "NO_STATEMENT_EXIST":
            return None
        raise BillError(f"申请交易账单失败: HTTP {code} {info.get('code')}: {info.get('message')}"[:300],
                        code="bill_unavailable")
    url, hash_type, hash_value = (str(info.get(k) or "") for k in ("download_url", "hash_type", "hash_value"))
    gateway = wp._core._gate_way
    # The SDK signs the download with our merchant key: only ever towards the gateway itself.
    if not url.startswith(gateway + "/"):
        raise BillError(f"账单下载地址不在支付网关上: {url[:200]}", code="bill_bad_url")
    if hash_type.upper() != "SHA1" or len(hash_value) != 40:
        raise BillError(f"不支持的账单摘要 {hash_type}", code="bill_malformed")
    try:
        code, content = wp.download_bill(url)
    except Exception as exc:  # noqa: BLE001
        raise BillError(f"下载交易账单失败: {exc}"[:300], code="bill_unavailable") from None
    if code != 200 or not isinstance(content, bytes):
        raise BillError(f"下载交易账单失败: HTTP {code}", code="bill_unavailable")
    raw = _unzip(content, int(config.get("RECONCILE_MAX_BILL_BYTES") or 64 * 1024 * 1024))
    if hashlib.sha1(raw).hexdigest() != hash_value.lower():
        raise BillError("账单文件的 SHA1 与 hash_value 不符", code="bill_hash_mismatch")
    return raw


# -- our side -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Ours:
    number: str
    amount_fen: int
    settled: bool             # paid (for an order), succeeded (for a refund)
    status: str


@dataclass(frozen=True)
class Side:
    """One kind of money movement as we record it: what the bill's lines of ``kind`` are compared with.

    ``lookup(numbers)`` → our records for those merchant numbers, whatever day they were settled;
    ``settled_between(start, end)`` → our records settled in [start, end) (naive UTC)."""
    kind: str
    lookup: Callable[[list[str]], dict[str, Ours]]
    settled_between: Callable[[datetime, datetime], dict[str, Ours]]


# An order in any of these states was paid (a later refund is a line of its own in the bill).
PAID_STATES = ("paid", "refunding", "partially_refunded", "refunded")


def _order(o) -> Ours:
    return Ours(o.out_trade_no, o.amount_fen, o.paid_at is not None and o.status in PAID_STATES, o.status)


def order_side() -> Side:
    def lookup(numbers):
        found = {}
        for i in range(0, len(numbers), 500):
            found.update({o.out_trade_no: _order(o) for o in Order.select().where(
                Order.out_trade_no.in_(numbers[i:i + 500]))})
        return found

    def settled_between(start, end):
        return {o.out_trade_no: _order(o) for o in Order.select().where(
            Order.paid_at >= start, Order.paid_at < end, Order.status.in_(PAID_STATES))}

    return Side("payment", lookup, settled_between)


def _refund(r) -> Ours:
    return Ours(r.out_refund_no, r.amount_fen, r.status == "success", r.status)


def refund_side() -> Side:
    """Refunds as recorded here (xintu.member.refunds), keyed by out_refund_no; settled = succeeded."""
    def lookup(numbers):
        found = {}
        for i in range(0, len(numbers), 500):
            found.update({r.out_refund_no: _refund(r) for r in Refund.select().where(
                Refund.out_refund_no.in_(numbers[i:i + 500]))})
        return found

    def settled_between(start, end):
        return {r.out_refund_no: _refund(r) for r in Refund.select().where(
            Refund.succeeded_at >= start, Refund.succeeded_at < end, Refund.status == "success")}

    return Side("refund", lookup, settled_between)


# -- comparing ------------------------------------------------------------------------------------
def _problem(problem, line: BillLine | None, ours: Ours | None, kind: str, detail: str) -> dict:
    return {"problem": problem, "kind": kind,
            "out_trade_no": line.out_trade_no if line else (ours.number if kind == "payment" else ""),
            "out_refund_no": (line.out_refund_no if line else ours.number) if kind == "refund" else "",
            "transaction_id": line.transaction_id if line else "",
            "bill_fen": line.amount_fen if line else None, "ours_fen": ours.amount_fen if ours else None,
            "detail": detail}


def compare(side: Side | None, kind: str, lines: list[BillLine], start: datetime,
            end: datetime) -> list[dict]:
    """The problems between the bill's ``lines`` of one kind and our ``side`` of it for [start, end)."""
    if side is None:
        return [_problem("there_not_here", line, None, kind, f"{kind}s are not recorded here")
                for line in lines]
    problems, seen = [], set()
    ours_in_day = side.settled_between(start, end)
    others = side.lookup(sorted({ln.number for ln in lines} - set(ours_in_day)))
    for line in lines:
        mine = ours_in_day.get(line.number) or others.get(line.number)
        if line.number in seen:
            problems.append(_problem("there_not_here", line, mine, kind, "repeated in the bill"))
            continue
        seen.add(line.number)
        if mine is None:
            problems.append(_problem("there_not_here", line, None, kind, "unknown here"))
        elif not mine.settled:
            problems.append(_problem("there_not_here", line, mine, kind, f"here: {mine.status}"))
        elif mine.amount_fen != line.amount_fen:
            problems.append(_problem("amount_mismatch", line, mine, kind, f"here: {mine.status}"))
    for number, mine in sorted(ours_in_day.items()):
        if number not in seen:
            problems.append(_problem("here_not_there", None, mine, kind, f"here: {mine.status}"))
    return problems


def reconcile(config, day: date, sides: dict[str, Side | None] | None = None) -> dict:
    """The report for one Beijing-time day: counts of both sides and the list of problems."""
    if day > datetime.now(SHANGHAI).date():
        raise BadRequest(f"{day} 还没有账单", code="invalid_bill_date")
    raw = fetch_bill(config, day)
    bill = parse_bill(raw.decode("utf-8-sig", errors="replace")) if raw else Bill()
    start, end = day_bounds_utc(day)
    sides = sides if sides is not None else {"payment": order_side(), "refund": refund_side()}
    problems = []
    for kind, side in sides.items():
        problems += compare(side, kind, bill.of(kind), start, end)
    for line in bill.lines:
        if line.kind not in sides:
            problems.append(_problem("there_not_here", line, None, line.kind, f"bill state {line.state}"))
    ours = sides.get("payment").settled_between(start, end) if sides.get("payment") else {}
    return {"date": day.isoformat(), "bill": {"lines": len(bill.lines), "found": raw is not None,
                                              "payments": len(bill.of("payment")),
                                              "payment_fen": sum(ln.amount_fen for ln in bill.of("payment")),
                                              "refunds": len(bill.of("refund")),
                                              "refund_fen": sum(ln.amount_fen for ln in bill.of("refund"))},
            "ours": {"payments": len(ours), "payment_fen": sum(o.amount_fen for o in ours.values())},
            "problems": problems, "matched": not problems}


