"""Email address rules, one set for every address that enters (subscribers, users, campaigns, test
sends). Addresses whose local part is not ASCII are refused at input: they need SMTPUTF8, which we
never ask of the relay, so accepting them would only move the failure to send time.
Internationalised domains are fine (they are sent as IDNA)."""

from __future__ import annotations

from typing import Any

from email_validator import EmailNotValidError, validate_email

from mailapp.errors import ValidationError


def normalize_email(raw: str) -> str:
    """Validate syntax (no DNS look-up: imports must not wait on the network) and lower-case it."""
    value = (raw or "").strip()
    if "\x00" in value:
        raise ValidationError("An email address cannot contain a NUL character.")
    if "\r" in value or "\n" in value:
        raise ValidationError("An email address cannot contain line breaks.")
    local, _, _ = value.rpartition("@")
    if not local.isascii():
        raise ValidationError(
            f"Invalid email address {value!r}: the part before the @ has non-ASCII characters, which "
            "our mail relay cannot deliver (only the domain may be internationalised)."
        )
    try:
        result = validate_email(value, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as error:
        raise ValidationError(f"Invalid email address {value!r}: {error}") from error
    return result.normalized.lower()


def normalize_email_field(raw: Any, field: str = "email") -> str:
    """normalize_email for a form or API field: required, and the error names the field."""
    if not isinstance(raw, str) or not raw.strip():
        raise ValidationError("An email address is required.", [{"field": field}])
    try:
        return normalize_email(raw)
    except ValidationError as error:
        raise ValidationError(error.message, [{"field": field}]) from error
