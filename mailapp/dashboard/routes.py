"""The dashboard home page."""

from __future__ import annotations

from flask import render_template
from flask_login import login_required

from mailapp.dashboard import bp
from mailapp.dashboard.services import home_summary


@bp.route("/")
@login_required
def home():  # noqa: ANN201
    return render_template("dashboard/home.html", summary=home_summary())
