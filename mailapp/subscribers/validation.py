"""Email address validation shared by subscribers, users and campaigns."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email

from mailapp.errors import ValidationError


def normalize_email(raw: str) -> str:
    """Validate syntax (no DNS look-up: imports must not wait on the network) and lower-case it."""
    value = (raw or "").strip()
    if "\r" in value or "\n" in value:
        raise ValidationError("An email address cannot contain line breaks.")
    try:
        result = validate_email(value, check_deliverability=False)
    except EmailNotValidError as error:
        raise ValidationError(f"Invalid email address {value!r}: {error}") from error
    return result.normalized.lower()
