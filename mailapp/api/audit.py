"""API: the audit log (owner tokens), newest first, filtered like its page."""

from __future__ import annotations

from flask import jsonify, request

from mailapp.api.common import paginated
from mailapp.api.routes import bp
from mailapp.audit import services
from mailapp.errors import ValidationError


@bp.get("/audit")
def audit_log():
    args = {name: request.args.get(name, "") for name in ("user", "action", "since", "until")}
    for name in ("user", "action"):
        if len(args[name]) > 320:
            raise ValidationError(f"{name} is longer than 320 characters.", [{"field": name}])
    statement = services.search(
        user=args["user"], action=args["action"],
        since=services.parse_time(args["since"], "since"),
        until=services.parse_time(args["until"], "until", end=True),
    )
    return jsonify(paginated(statement, services.serialize))
