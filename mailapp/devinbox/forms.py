"""Forms of the dev inbox: the "Delete all" button (CSRF token only)."""

from flask_wtf import FlaskForm


class DeleteAllForm(FlaskForm):
    """CSRF token only."""
