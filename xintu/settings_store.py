"""Runtime switches stored in the database, so every worker on every host sees the same value.

Reads are cached per process for a few seconds; a switch takes effect everywhere within that time.
Known keys and their allowed values are declared in ``KNOWN`` so the CLI and admin UI can validate.
Until a switch is set, its value is the app config key of the same name (``inference.mode`` →
``INFERENCE_MODE``), else the default declared here.
"""

from __future__ import annotations

import threading
import time

from xintu.db import is_mysql
from xintu.errors import BadRequest
from xintu.models import Setting
from xintu.timeutil import utcnow

CACHE_SECONDS = 5.0

# key → (allowed values or None for free-form, default)
KNOWN: dict[str, tuple[tuple | None, object]] = {
    "inference.mode": (("auto", "llm", "local"), "auto"),
}

_cache: dict[str, tuple[float, object]] = {}
_lock = threading.Lock()


def get_setting(key: str, default=None):
    now = time.monotonic()
    with _lock:
        hit = _cache.get(key)
        if hit and now - hit[0] < CACHE_SECONDS:
            return hit[1]

    row = Setting.get_or_none(Setting.key == key)
    value = row.value if row is not None else _unset_value(key, default)
    with _lock:
        _cache[key] = (now, value)
    return value


def _unset_value(key: str, default=None):
    if default is not None:
        return default
    from flask import current_app, has_app_context

    config_key = key.upper().replace(".", "_")
    if has_app_context() and current_app.config.get(config_key) is not None:
        return current_app.config[config_key]
    return KNOWN[key][1] if key in KNOWN else None


def validate(key: str, value):
    if key in KNOWN:
        allowed = KNOWN[key][0]
        if allowed is not None and value not in allowed:
            raise BadRequest(f"{key} must be one of {', '.join(allowed)}", code="invalid_setting")
    return value


def set_setting(key: str, value, by: str | None = None) -> None:
    validate(key, value)
    # MySQL's ON DUPLICATE KEY takes no conflict target; SQLite's ON CONFLICT requires one.
    target = None if is_mysql() else [Setting.key]
    (Setting.insert(key=key, value=value, updated_at=utcnow(), updated_by=by)
     .on_conflict(conflict_target=target,
                  preserve=[Setting.value, Setting.updated_at, Setting.updated_by])
     .execute())
    clear_cache()


def all_settings() -> dict:
    values = {key: _unset_value(key) for key in KNOWN}
    values.update({row.key: row.value for row in Setting.select()})
    return values


def clear_cache() -> None:
    with _lock:
        _cache.clear()
