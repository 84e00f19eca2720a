"""Report pages: the campaign report with its charts, the per-recipient activity table, CSV exports,
and the list of campaign reports."""

from __future__ import annotations

from flask import Blueprint, Response, render_template, request
from flask_login import login_required

from mailapp.audit.services import record_read
from mailapp.ids import id_arg, page_arg
from mailapp.reports import activity, charts, exports, figures
from mailapp.web import csv_download

bp = Blueprint("reports", __name__)

HUMAN_OPENS = "#0d6efd"
MACHINE_OPENS = "#adb5bd"
CLICKS = "#198754"
HARD_BOUNCES = "#dc3545"
SOFT_BOUNCES = "#ffc107"
COMPLAINTS = "#6f42c1"


@bp.get("/")
@login_required
def index():
    page = figures.sent_campaigns_page(request.args.get("page", 1, type=page_arg))
    rows = figures.summaries(list(page.items))
    return render_template("reports/index.html", page=page, rows=rows)


@bp.get("/campaigns/<int:campaign_id>")
@login_required
def campaign(campaign_id: int):
    report = figures.campaign_report(campaign_id)
    return render_template(
        "reports/campaign.html",
        report=report,
        timeline_chart=timeline_chart(report),
        events_chart=events_chart(report),
        links_chart=charts.horizontal_bars(
            [(link.url, link.clicks, link.unique_clicks) for link in report.top_links if link.clicks],
            title="Top links by clicks",
        ),
    )


def timeline_chart(report: figures.CampaignReport):  # Markup
    points = report.timeline
    return _over_time(points, "Opens and clicks over time", [
        charts.Series("human opens", HUMAN_OPENS, [point.human_opens for point in points]),
        charts.Series("machine opens", MACHINE_OPENS, [point.machine_opens for point in points]),
        charts.Series("clicks", CLICKS, [point.clicks for point in points]),
    ])


def events_chart(report: figures.CampaignReport):  # Markup
    points = report.timeline
    return _over_time(points, "Bounces and complaints over time", [
        charts.Series("hard bounces", HARD_BOUNCES, [point.hard_bounces for point in points]),
        charts.Series("soft bounces", SOFT_BOUNCES, [point.soft_bounces for point in points]),
        charts.Series("complaints", COMPLAINTS, [point.complaints for point in points]),
    ])


def _over_time(points: list[figures.TimelinePoint], title: str, series: list[charts.Series]):  # Markup
    labels = [
        point.at.strftime("%d %b %H:00") if point.span.total_seconds() == 3600 else point.at.strftime("%d %b")
        for point in points
    ]
    hourly = sum(1 for point in points if point.span.total_seconds() == 3600)
    return charts.grouped_bars(
        labels, series, title=title,
        marker_index=hourly if hourly < len(points) else None,
        marker_label="daily from here",
    )


@bp.get("/campaigns/<int:campaign_id>/recipients")
@login_required
def recipients(campaign_id: int):
    show = request.args.get("show", "all")
    if show not in activity.ACTIVITY_FILTERS:
        show = "all"
    after = request.args.get("after", 0, type=id_arg)
    rows, next_after = activity.activity_page(campaign_id, show=show, after=after)
    return render_template(
        "reports/recipients.html",
        campaign=figures.get_campaign(campaign_id),
        rows=rows,
        show=show,
        after=after,
        next_after=next_after,
        filters=activity.ACTIVITY_FILTERS,
    )


@bp.get("/campaigns/<int:campaign_id>/report.csv")
@login_required
def report_csv(campaign_id: int) -> Response:
    report = figures.campaign_report(campaign_id)
    return csv_download(exports.report_csv(report), f"campaign-{campaign_id}-report.csv")


@bp.get("/campaigns/<int:campaign_id>/deliveries.csv")
@login_required
def deliveries_csv(campaign_id: int) -> Response:
    campaign = figures.get_campaign(campaign_id)
    record_read("export.deliveries", campaign, f"delivery log of {campaign.name!r} exported as CSV")
    return csv_download(exports.delivery_log_csv(campaign_id), f"campaign-{campaign_id}-deliveries.csv")
