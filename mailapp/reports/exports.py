"""Campaign report downloads, as CSV: the delivery log with each recipient's activity, and the figures."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from mailapp.csv_cells import csv_line
from mailapp.extensions import db
from mailapp.reports.activity import _deliveries_after, _with_activity
from mailapp.reports.figures import CampaignReport, get_campaign

EXPORT_CHUNK = 5000



def _iso(value: datetime | None) -> str:
    return value.isoformat() if value else ""


DELIVERY_CSV_HEADER = [
    "email",
    "status",
    "attempts",
    "sent_at",
    "smtp_code",
    "error",
    "message_id",
    "opened",
    "first_opened_at",
    "opens",
    "machine_opens_only",
    "clicked",
    "first_clicked_at",
    "clicks",
    "unsubscribed_at",
]


def delivery_log_csv(campaign_id: int) -> Iterator[str]:
    """The campaign's delivery log with each recipient's activity, streamed in chunks by id."""
    get_campaign(campaign_id)
    yield csv_line(DELIVERY_CSV_HEADER)
    after = 0
    while True:
        deliveries = _deliveries_after(campaign_id, after, EXPORT_CHUNK)
        if not deliveries:
            return
        for row in _with_activity(deliveries):
            d = row.delivery
            yield csv_line(
                [
                    d.email,
                    d.status,
                    d.attempts,
                    _iso(d.sent_at),
                    d.smtp_code or "",
                    d.error,
                    d.message_id,
                    "yes" if row.opened else "no",
                    _iso(d.first_opened_at),
                    d.open_count,
                    "yes" if row.machine_only else "no",
                    "yes" if row.human_click else "no",
                    _iso(d.first_clicked_at),
                    d.click_count,
                    _iso(d.unsubscribed_at),
                ]
            )
        after = deliveries[-1].id
        db.session.expunge_all()


def report_csv(report: CampaignReport) -> Iterator[str]:
    """The report's figures, then its timeline, then its links: three tables separated by blank lines."""
    yield csv_line(["metric", "value"])
    for name in (
        "recipients",
        "sent",
        "failed",
        "unique_opens",
        "opens",
        "machine_opens",
        "open_rate",
        "clicks",
        "scanner_clicks",
        "unique_clicks",
        "click_rate",
        "click_to_open_rate",
        "unsubscribes",
        "unsubscribe_rate",
        "hard_bounces",
        "hard_bounce_rate",
        "soft_bounces",
        "soft_bounce_rate",
        "complaints",
        "complaint_rate",
    ):
        yield csv_line([name, getattr(report, name)])
    yield "\r\n"
    yield csv_line([
        "period_start", "period_hours", "opens", "human_opens", "machine_opens", "clicks", "hard_bounces",
        "soft_bounces", "complaints",
    ])
    for point in report.timeline:
        yield csv_line(
            [
                point.at.isoformat(),
                int(point.span.total_seconds() // 3600),
                point.opens,
                point.human_opens,
                point.machine_opens,
                point.clicks,
                point.hard_bounces,
                point.soft_bounces,
                point.complaints,
            ]
        )
    yield "\r\n"
    yield csv_line(["link_position", "url", "clicks", "unique_clicks"])
    for link in report.top_links:
        yield csv_line([link.position, link.url, link.clicks, link.unique_clicks])
