"""The campaigns area."""

from flask import Blueprint

bp = Blueprint("campaigns", __name__)

from mailapp.campaigns import routes  # noqa: E402, F401
