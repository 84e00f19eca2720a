"""The dashboard home page."""

from __future__ import annotations

from flask import Blueprint, render_template
from flask_login import login_required

from mailapp.dashboard.services import home_summary
from mailapp.reports import charts
from mailapp.timezones import zone_or_utc
from mailapp.web import viewer_zone_name

bp = Blueprint("dashboard", __name__)

GROWTH_COLOR = "#6f42c1"


@bp.route("/")
@login_required
def home():
    summary = home_summary(zone=zone_or_utc(viewer_zone_name()))
    growth_chart = charts.grouped_bars(
        [day.strftime("%d %b") for day, _ in summary.growth],
        [charts.Series(
            "new subscribers", GROWTH_COLOR, [count for _, count in summary.growth], "new subscriber"
        )],
        title="New subscribers per day, last 30 days",
        tick_every=5,
    )
    return render_template("dashboard/home.html", summary=summary, growth_chart=growth_chart)
