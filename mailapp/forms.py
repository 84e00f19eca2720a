"""Forms every area shares: the CSRF-only form behind buttons that change state."""

from __future__ import annotations

from flask import abort
from flask_wtf import FlaskForm


class ActionForm(FlaskForm):
    """CSRF token only: delete, send, pause, resume, cancel, delete-all and the like."""


def require_valid(form: FlaskForm | None = None) -> None:
    """Stop a state-changing POST whose form (by default an ActionForm) does not validate: a missing or
    expired CSRF token, or a field out of range."""
    if not (form or ActionForm()).validate_on_submit():
        abort(400, "The form expired: reload the page and try again.")
