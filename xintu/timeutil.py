"""Time: stored as naive UTC; business days are Asia/Shanghai days."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def to_local(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC).astimezone(SHANGHAI)


def local_today() -> date:
    return datetime.now(SHANGHAI).date()


def day_bounds_utc(day: date) -> tuple[datetime, datetime]:
    """[start, end) of an Asia/Shanghai calendar day, as naive UTC datetimes."""
    start = datetime.combine(day, time.min, tzinfo=SHANGHAI).astimezone(UTC)
    return start.replace(tzinfo=None), (start + timedelta(days=1)).replace(tzinfo=None)


def iso(dt: datetime | None) -> str | None:
    """ISO-8601 with an explicit UTC offset, for API output."""
    return None if dt is None else dt.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")
