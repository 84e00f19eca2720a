"""Words for counts: "1 unique click", "2 unique clicks", with thousands separators, for pages, charts
and flash messages alike."""

from __future__ import annotations


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """`count` and the noun that agrees with it; the plural is `singular` + "s" unless given."""
    noun = singular if count == 1 else (plural_form or singular + "s")
    return f"{count:,} {noun}"
