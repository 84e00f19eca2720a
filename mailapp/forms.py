"""Forms every area shares: the CSRF-only form behind buttons that change state, and a service's
refusal shown on the form's fields."""

from __future__ import annotations

from typing import Any

from flask import abort
from flask_wtf import FlaskForm

from mailapp.errors import MailappError


class ActionForm(FlaskForm):
    """CSRF token only: delete, send, pause, resume, cancel, delete-all and the like."""


def require_valid(form: FlaskForm | None = None) -> None:
    """Stop a state-changing POST whose form (by default an ActionForm) does not validate: a missing or
    expired CSRF token, or a field out of range."""
    if not (form or ActionForm()).validate_on_submit():
        abort(400, "The form expired: reload the page and try again.")


def show_error_on_fields(form: FlaskForm, error: MailappError) -> list[Any]:
    """Put each {field, message} detail beside its field; return what belongs to no field."""
    leftover = []
    details = error.details if isinstance(error.details, list) else []
    for detail in details:
        field = getattr(form, str(detail.get("field", "")), None) if isinstance(detail, dict) else None
        if field is not None:
            field.errors = [*field.errors, detail["message"]]
        else:
            leftover.append(detail)
    if not details:
        leftover.append(error.message)
    return leftover
