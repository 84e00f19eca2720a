"""The audit log page (owners): search by user, action and dates, newest first, paginated."""

from __future__ import annotations

from flask import Blueprint, render_template, request
from flask_login import login_required

from mailapp.audit import services
from mailapp.errors import ValidationError
from mailapp.extensions import db
from mailapp.ids import page_arg

bp = Blueprint("audit", __name__)
PER_PAGE = 50


@bp.get("/")
@login_required
def index():
    filters = {name: request.args.get(name, "")[:320] for name in ("user", "action", "since", "until")}
    error = None
    try:
        since = services.parse_time(filters["since"], "since")
        until = services.parse_time(filters["until"], "until", end=True)
    except ValidationError as problem:
        error, since, until = problem.message, None, None
    statement = services.search(user=filters["user"], action=filters["action"], since=since, until=until)
    page = request.args.get("page", 1, type=page_arg)
    pager = db.paginate(statement, page=page, per_page=PER_PAGE, error_out=False)
    return render_template("audit/index.html", pager=pager, filters=filters, error=error)
