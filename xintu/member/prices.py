"""The price table lives on the server: the client names a package, never an amount.

Defaults are docs/MEMBER.md ("Prices"); an instance can override them with ``PRICE_MEMBER_FEN``, ``PRICE_MEMBER_DAYS``,
``PRICE_MEMBER_BONUS`` and ``PRICE_CREDITS`` (``"10:990,20:1800,50:3900"`` — credits:fen pairs).
"""
from __future__ import annotations

from dataclasses import dataclass

from xintu.errors import BadRequest, ConfigError

DEFAULT_CREDITS = "10:990,20:1800,50:3900"


@dataclass(frozen=True)
class Product:
    kind: str           # member / credits
    package: str        # "member" or the credit count as text
    amount_fen: int
    quantity: int       # days of membership, or credits
    bonus_credits: int
    description: str


def catalogue(config) -> dict[tuple[str, str], Product]:
    member_days = int(config.get("PRICE_MEMBER_DAYS") or 30)
    bonus = int(config.get("PRICE_MEMBER_BONUS") if config.get("PRICE_MEMBER_BONUS") is not None else 10)
    products = {("member", "member"): Product("member", "member", int(config.get("PRICE_MEMBER_FEN") or 2990),
                                              member_days, bonus, f"芯图相册会员 {member_days} 天")}
    spec = config.get("PRICE_CREDITS") or DEFAULT_CREDITS
    pairs = spec if isinstance(spec, (list, tuple)) else spec.split(",")
    for pair in pairs:
        try:
            credits, fen = (int(x) for x in str(pair).split(":"))
        except ValueError:
            raise ConfigError(f"PRICE_CREDITS: cannot read {pair!r} (want credits:fen)") from None
        products[("credits", str(credits))] = Product("credits", str(credits), fen, credits, 0,
                                                      f"芯图相册积分 {credits} 个")
    return products


def lookup(config, kind: str, package: str | None) -> Product:
    package = "member" if kind == "member" else str(package or "")
    product = catalogue(config).get((kind, package))
    if product is None:
        raise BadRequest("没有这个商品", code="unknown_package")
    return product


def price_list(config) -> dict:
    items = catalogue(config)
    member = items[("member", "member")]
    return {"currency": "CNY",
            "member": {"package": "member", "amount_fen": member.amount_fen, "days": member.quantity,
                       "bonus_credits": member.bonus_credits},
            "credits": [{"package": p.package, "credits": p.quantity, "amount_fen": p.amount_fen}
                        for (kind, _), p in items.items() if kind == "credits"]}
