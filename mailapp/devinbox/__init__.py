"""The devinbox area."""

from flask import Blueprint

bp = Blueprint("devinbox", __name__)

from mailapp.devinbox import routes  # noqa: E402, F401
