"""The subscribers area."""

from flask import Blueprint

bp = Blueprint("subscribers", __name__)

from mailapp.subscribers import routes  # noqa: E402, F401
