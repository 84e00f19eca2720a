"""The layouts area."""

from flask import Blueprint

bp = Blueprint("layouts", __name__)

from mailapp.layouts import routes  # noqa: E402, F401
