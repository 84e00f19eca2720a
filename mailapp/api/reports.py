"""API: a campaign's report, the same numbers as its report page."""

from __future__ import annotations

from flask import jsonify

from mailapp.api.routes import bp
from mailapp.reports.figures import campaign_report


@bp.get("/campaigns/<int:campaign_id>/report")
def campaign_report_json(campaign_id: int):
    return jsonify(campaign_report(campaign_id).as_api())
