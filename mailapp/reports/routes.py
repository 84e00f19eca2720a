"""Report pages: the campaign report with its charts, the per-recipient activity table, CSV exports,
and the list of campaign reports."""

from __future__ import annotations

from flask import Blueprint, Response, render_template, request, stream_with_context
from flask_login import login_required

from mailapp.extensions import db
from mailapp.ids import id_arg, page_arg
from mailapp.reports import charts, services

bp = Blueprint("reports", __name__)

HUMAN_OPENS = "#0d6efd"
MACHINE_OPENS = "#adb5bd"
CLICKS = "#198754"


@bp.get("/")
@login_required
def index():  # noqa: ANN201
    page = services.sent_campaigns_page(request.args.get("page", 1, type=page_arg))
    rows = services.summaries(list(page.items))
    db.session.commit()  # keeps any delivery counts just folded (see reports.services.status_counts)
    return render_template("reports/index.html", page=page, rows=rows)


@bp.get("/campaigns/<int:campaign_id>")
@login_required
def campaign(campaign_id: int):  # noqa: ANN201
    report = services.campaign_report(campaign_id)
    db.session.commit()
    return render_template(
        "reports/campaign.html",
        report=report,
        timeline_chart=timeline_chart(report),
        links_chart=charts.horizontal_bars(
            [(link.url, link.clicks, link.unique_clicks) for link in report.top_links if link.clicks],
            title="Top links by clicks",
        ),
    )


def timeline_chart(report: services.CampaignReport):  # noqa: ANN201 - Markup
    points = report.timeline
    labels = [
        point.at.strftime("%d %b %H:00") if point.span.total_seconds() == 3600 else point.at.strftime("%d %b")
        for point in points
    ]
    hourly = sum(1 for point in points if point.span.total_seconds() == 3600)
    return charts.grouped_bars(
        labels,
        [
            charts.Series("human opens", HUMAN_OPENS, [point.human_opens for point in points]),
            charts.Series("machine opens", MACHINE_OPENS, [point.machine_opens for point in points]),
            charts.Series("clicks", CLICKS, [point.clicks for point in points]),
        ],
        title="Opens and clicks over time",
        marker_index=hourly if hourly < len(points) else None,
        marker_label="daily from here",
    )


@bp.get("/campaigns/<int:campaign_id>/recipients")
@login_required
def recipients(campaign_id: int):  # noqa: ANN201
    show = request.args.get("show", "all")
    if show not in services.ACTIVITY_FILTERS:
        show = "all"
    after = request.args.get("after", 0, type=id_arg)
    rows, next_after = services.activity_page(campaign_id, show=show, after=after)
    return render_template(
        "reports/recipients.html",
        campaign=services.get_campaign(campaign_id),
        rows=rows,
        show=show,
        after=after,
        next_after=next_after,
        filters=services.ACTIVITY_FILTERS,
    )


def _csv_download(lines, filename: str) -> Response:  # noqa: ANN001
    return Response(
        stream_with_context(lines),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"},
    )


@bp.get("/campaigns/<int:campaign_id>/report.csv")
@login_required
def report_csv(campaign_id: int) -> Response:
    report = services.campaign_report(campaign_id)
    db.session.commit()
    return _csv_download(services.report_csv(report), f"campaign-{campaign_id}-report.csv")


@bp.get("/campaigns/<int:campaign_id>/deliveries.csv")
@login_required
def deliveries_csv(campaign_id: int) -> Response:
    services.get_campaign(campaign_id)
    return _csv_download(services.delivery_log_csv(campaign_id), f"campaign-{campaign_id}-deliveries.csv")
