"""Campaign reports: numbers, charts and CSV exports."""

from flask import Blueprint

bp = Blueprint("reports", __name__)

from mailapp.reports import routes  # noqa: E402, F401
