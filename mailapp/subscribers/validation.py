"""Input rules for a subscriber's name and attributes, shared by every way they enter (dashboard form,
API and CSV import apply the same rules). Email addresses follow mailapp/addresses.py.

- NUL characters are refused everywhere, with an error naming the field: PostgreSQL cannot store them
  (psycopg2 refuses them in text, jsonb refuses \\u0000), and no real name or value contains one.
- Line breaks and other control characters in a name or a (string) attribute value are replaced by a
  space, not refused: names go into the To header and attributes into subjects, where a line break
  would make every send to that subscriber fail; a spreadsheet cell with a line break is common and
  harmless once flattened, so the row is kept.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from mailapp.errors import ValidationError

NAME_MAX_LENGTH = 300
# C0 and C1 controls, DEL and the Unicode line and paragraph separators: anything a mail header or a
# one-line display would break on. Tab is among them (a name is one line of text).
CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


@dataclass(frozen=True)
class AttributeLimits:
    """SUBSCRIBER_MAX_ATTRIBUTES, SUBSCRIBER_MAX_ATTRIBUTE_KEY_LENGTH, SUBSCRIBER_MAX_ATTRIBUTE_BYTES."""

    max_keys: int = 50
    max_key_length: int = 100
    max_value_bytes: int = 2048

    @classmethod
    def from_config(cls, config: Any) -> AttributeLimits:
        return cls(
            max_keys=int(config.get("SUBSCRIBER_MAX_ATTRIBUTES", cls.max_keys)),
            max_key_length=int(config.get("SUBSCRIBER_MAX_ATTRIBUTE_KEY_LENGTH", cls.max_key_length)),
            max_value_bytes=int(config.get("SUBSCRIBER_MAX_ATTRIBUTE_BYTES", cls.max_value_bytes)),
        )


def one_line(value: str) -> str:
    """Each run of control characters (a CRLF line break is one) becomes a space."""
    return CONTROL_CHARACTERS.sub(" ", value)


def refuse_nul(field: str, value: str) -> None:
    if "\x00" in value:
        raise ValidationError(f"The {field} contains a NUL character.", [{"field": field}])


def clean_name(name: Any) -> str:
    """A subscriber's name: text, no NUL, on one line, stripped, at most NAME_MAX_LENGTH characters."""
    if name is None:
        return ""
    if not isinstance(name, str):
        raise ValidationError("The name must be text.", [{"field": "name"}])
    refuse_nul("name", name)
    cleaned = one_line(name).strip()
    if len(cleaned) > NAME_MAX_LENGTH:
        raise ValidationError(f"The name is longer than {NAME_MAX_LENGTH} characters.", [{"field": "name"}])
    return cleaned


def clean_attributes(attributes: dict[str, Any], limits: AttributeLimits) -> dict[str, Any]:
    """The attributes within the limits, string values (nested ones too) made one line. A value is
    measured as stored: a string by its UTF-8 bytes, anything else by its JSON text."""
    if len(attributes) > limits.max_keys:
        raise ValidationError(
            f"Too many attributes: {len(attributes)}; at most {limits.max_keys} are allowed.",
            [{"field": "attributes"}],
        )
    cleaned: dict[str, Any] = {}
    for key, value in attributes.items():
        check_attribute_key(key, limits)
        if _contains_nul(value):
            raise ValidationError(
                f"The attribute {key!r} contains a NUL character.", [{"field": "attributes", "key": key}]
            )
        value = _one_line_strings(value)
        size = len(value.encode("utf-8") if isinstance(value, str) else
                   json.dumps(value, ensure_ascii=False).encode("utf-8"))
        if size > limits.max_value_bytes:
            raise ValidationError(
                f"The attribute {key!r} is longer than {limits.max_value_bytes} bytes.",
                [{"field": "attributes", "key": key}],
            )
        cleaned[key] = value
    return cleaned


def check_attribute_key(key: str, limits: AttributeLimits) -> None:
    """An attribute name: not empty, no control character, at most max_key_length characters."""
    if not key.strip():
        raise ValidationError("An attribute name cannot be empty.", [{"field": "attributes"}])
    if CONTROL_CHARACTERS.search(key):
        raise ValidationError(
            f"The attribute name {key!r} contains a control character.", [{"field": "attributes"}]
        )
    if len(key) > limits.max_key_length:
        raise ValidationError(
            f"The attribute name {key[:40]!r}... is longer than {limits.max_key_length} characters.",
            [{"field": "attributes"}],
        )


def _contains_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_contains_nul(key) or _contains_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_contains_nul(item) for item in value)
    return False


def _one_line_strings(value: Any) -> Any:
    if isinstance(value, str):
        return one_line(value)
    if isinstance(value, dict):
        return {key: _one_line_strings(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_one_line_strings(item) for item in value]
    return value
