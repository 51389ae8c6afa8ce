"""The official account's custom menu, kept in a TOML file and applied only when WeChat's differs.

File format (``[[button]]`` tables, at most 3; a button either acts itself or holds ``[[button.sub_button]]``
tables, at most 5)::

    [[button]]
    name = "相册"
    type = "view"
    url = "https://xintu.example.cn/h5/"

    [[button]]
    name = "更多"
    [[button.sub_button]]
    name = "联系我们"
    type = "click"
    key = "CONTACT"

``validate`` applies WeChat's rules before anything is sent (name ≤ 16 bytes on top, ≤ 60 bytes below,
known types, the fields each type needs), each problem as one readable line. ``sync`` compares with
``client.menu.get()`` (None when WeChat has no menu: 46003) and calls ``client.menu.create`` only when
they differ.
"""
from __future__ import annotations

import difflib
import json
import tomllib
from pathlib import Path

from xintu.errors import BadRequest

MAX_BUTTONS, MAX_SUB_BUTTONS = 3, 5
NAME_BYTES, SUB_NAME_BYTES, KEY_BYTES, URL_BYTES = 16, 60, 128, 1024
# type → the fields it needs (besides name and type)
TYPES = {
    "click": ("key",), "view": ("url",), "miniprogram": ("url", "appid", "pagepath"),
    "scancode_push": ("key",), "scancode_waitmsg": ("key",), "pic_sysphoto": ("key",),
    "pic_photo_or_album": ("key",), "pic_weixin": ("key",), "location_select": ("key",),
    "media_id": ("media_id",), "article_id": ("article_id",), "article_view_limited": ("article_id",),
}
FIELDS = {"name", "type", "key", "url", "appid", "pagepath", "media_id", "article_id", "sub_button"}


def _bad(message: str):
    raise BadRequest(message, code="invalid_menu")


def load(path: str | Path) -> dict:
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        _bad(f"{path}: no such file")
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        _bad(f"{path}: not valid TOML ({exc})")
    return validate(data)


def _check_button(button, where: str, name_bytes: int, allow_sub: bool) -> dict:
    if not isinstance(button, dict):
        _bad(f"{where}: must be a table")
    unknown = set(button) - FIELDS
    if unknown:
        _bad(f"{where}: unknown field {sorted(unknown)[0]!r}")
    name = button.get("name")
    if not isinstance(name, str) or not name.strip():
        _bad(f"{where}: name is required")
    where = f"{where} ({name})"
    size = len(name.encode("utf-8"))
    if size > name_bytes:
        _bad(f"{where}: name is {size} bytes, WeChat allows {name_bytes} (UTF-8; a Chinese character is 3)")
    subs = button.get("sub_button")
    if subs is not None:
        if not allow_sub:
            _bad(f"{where}: a sub button cannot have sub buttons")
        if "type" in button:
            _bad(f"{where}: a button with sub buttons has no type of its own")
        if not isinstance(subs, list) or not 1 <= len(subs) <= MAX_SUB_BUTTONS:
            count = len(subs) if isinstance(subs, list) else 0
            _bad(f"{where}: 1 to {MAX_SUB_BUTTONS} sub buttons, not {count}")
        return {"name": name, "sub_button": [_check_button(s, f"{where} sub button {i + 1}", SUB_NAME_BYTES,
                                                           False) for i, s in enumerate(subs)]}
    kind = button.get("type")
    if kind not in TYPES:
        _bad(f"{where}: type must be one of {', '.join(TYPES)}")
    out = {"type": kind, "name": name}
    for field in TYPES[kind]:
        value = button.get(field)
        if not isinstance(value, str) or not value:
            _bad(f"{where}: type {kind} needs {field}")
        out[field] = value
    if "url" in out and (not out["url"].startswith(("http://", "https://"))
                         or len(out["url"].encode()) > URL_BYTES):
        _bad(f"{where}: url must be an http(s) address of at most {URL_BYTES} bytes")
    if "key" in out and len(out["key"].encode()) > KEY_BYTES:
        _bad(f"{where}: key is longer than {KEY_BYTES} bytes")
    extra = set(button) - set(out) - {"sub_button"}
    if extra:
        _bad(f"{where}: field {sorted(extra)[0]!r} does not belong to type {kind}")
    return out


def validate(data) -> dict:
    """The menu in WeChat's shape ``{"button": [...]}``, or BadRequest with one line saying what is wrong."""
    if not isinstance(data, dict) or set(data) - {"button"}:
        _bad("the menu file has [[button]] tables only")
    buttons = data.get("button")
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= MAX_BUTTONS:
        _bad(f"1 to {MAX_BUTTONS} [[button]] tables, not {len(buttons) if isinstance(buttons, list) else 0}")
    return {"button": [_check_button(b, f"button {i + 1}", NAME_BYTES, True) for i, b in enumerate(buttons)]}


def normalise(menu: dict | None) -> dict | None:
    """WeChat's menu/get answer ({"menu": {"button": …}}, leaf buttons with empty sub_button lists) in
    the shape ``validate`` gives, so the two compare equal when they mean the same menu."""
    if not menu:
        return None
    menu = menu.get("menu", menu)

    def clean(button):
        subs = button.get("sub_button")
        if isinstance(subs, dict):  # some answers wrap them: {"list": [...]}
            subs = subs.get("list")
        if subs:
            return {"name": button.get("name"), "sub_button": [clean(s) for s in subs]}
        kind = button.get("type")
        out = {"type": kind, "name": button.get("name")}
        for field in TYPES.get(kind, ()):
            out[field] = button.get(field)
        return out

    return {"button": [clean(b) for b in menu.get("button") or []]}


def _lines(menu: dict | None) -> list[str]:
    return json.dumps(menu, ensure_ascii=False, indent=2).splitlines() if menu else []


def current(client) -> dict | None:
    return normalise(client.menu.get())


def sync(client, wanted: dict, dry_run: bool = False) -> dict:
    """{"changed", "applied", "diff"}: the menu is created only when it differs (and not in a dry run)."""
    have = current(client)
    if have == wanted:
        return {"changed": False, "applied": False, "diff": []}
    diff = list(difflib.unified_diff(_lines(have), _lines(wanted), "wechat", "file", lineterm=""))
    if not dry_run:
        client.menu.create(wanted)
    return {"changed": True, "applied": not dry_run, "diff": diff}
