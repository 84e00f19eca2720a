"""The tracking area."""

from flask import Blueprint

bp = Blueprint("tracking", __name__)

from mailapp.tracking import routes  # noqa: E402, F401
