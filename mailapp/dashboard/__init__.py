"""The dashboard area."""

from flask import Blueprint

bp = Blueprint("dashboard", __name__)

from mailapp.dashboard import routes  # noqa: E402, F401
