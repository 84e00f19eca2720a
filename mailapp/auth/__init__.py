"""Login, logout and API tokens."""

from flask import Blueprint

bp = Blueprint("auth", __name__)

from mailapp.auth import routes  # noqa: E402, F401
