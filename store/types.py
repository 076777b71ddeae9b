"""Column types that behave the same on SQLite and PostgreSQL.

Every time callflow stores is a timezone-aware UTC instant: KPIs subtract them
(``t_ans - t_ring``, STD-006) and calendars convert them to local time, so a naive
datetime slipping in would silently shift a due time or a ring count by hours.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Integer
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that goes in aware (any zone) and always comes out aware in UTC.

    PostgreSQL stores ``timestamptz``; SQLite has no zone, so the value is stored
    as naive UTC text (fixed format, so string order is time order) and gets its
    zone back on the way out. A naive datetime is refused: it has no meaning.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} refused: give it a timezone")
        utc = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"database returned {type(value).__name__} for a timestamp")
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def big_id() -> TypeEngine[int]:
    """BIGINT on PostgreSQL for append-only logs that grow by millions a month;
    INTEGER on SQLite, where only ``INTEGER PRIMARY KEY`` auto-increments."""
    return BigInteger().with_variant(Integer(), "sqlite")
