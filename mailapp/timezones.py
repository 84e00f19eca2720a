"""Time zones for people: which IANA names are real, and a UTC moment written in a zone with the zone
said, so no time on a page is ambiguous. Zone data comes from zoneinfo (the tzdata package where the
system has none)."""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

# Longer than any IANA name (the longest is about 30 characters); the column's size.
ZONE_NAME_MAX_LENGTH = 64


@lru_cache(maxsize=1)
def zone_names() -> tuple[str, ...]:
    """Every IANA zone name, sorted: the choices of the account page's setting."""
    return tuple(sorted(available_timezones()))


def is_zone_name(name: str) -> bool:
    return bool(name) and name in zone_names()


def zone_or_utc(name: str | None) -> tzinfo:
    """The zone named, or UTC for "" or a name zoneinfo does not know (never an error on a page)."""
    if name and is_zone_name(name):
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return UTC


def zone_label(moment: datetime) -> str:
    """The zone of an aware datetime as people read it: "CET", "EST", "UTC"; the IANA name where the
    zone has no letters abbreviation ("+03" tells less than "Europe/Istanbul")."""
    abbreviation = moment.tzname() or ""
    if abbreviation.isalpha():
        return abbreviation
    return getattr(moment.tzinfo, "key", None) or abbreviation or "UTC"


def format_in_zone(value: datetime | None, zone_name: str | None) -> str:
    """'2026-12-03 09:30 CET': the minute in the zone, and which zone."""
    if value is None:
        return "—"
    local = value.astimezone(zone_or_utc(zone_name))
    return f"{local:%Y-%m-%d %H:%M} {zone_label(local)}"
