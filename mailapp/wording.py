"""Words for people: counts that agree with their noun ("1 unique click", "2 unique clicks"), for
pages, charts and flash messages alike; and templated text (a campaign's subject) shown in a list with
its variables named instead of raw template syntax."""

from __future__ import annotations

import re

_EXPRESSION = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}", re.DOTALL)
_STATEMENT_OR_COMMENT = re.compile(r"\{%.*?%\}|\{#.*?#\}", re.DOTALL)


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """`count` and the noun that agrees with it; the plural is `singular` + "s" unless given."""
    noun = singular if count == 1 else (plural_form or singular + "s")
    return f"{count:,} {noun}"


def with_placeholders(template_text: str) -> str:
    """'Spring is here, {{ subscriber.name }}' -> 'Spring is here, ‹subscriber.name›': what a list of
    campaigns shows of a subject, without rendering it (rendering runs in a child process, too dear
    for every row of a page). Statements and comments are left out."""
    text = _STATEMENT_OR_COMMENT.sub("", template_text)
    return _EXPRESSION.sub(lambda match: f"‹{' '.join(match.group(1).split())}›", text)
