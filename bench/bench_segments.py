"""Segment counts at scale: how long POST /api/v1/segments/count's query takes for typical rule trees,
each as a ratio to a plain COUNT(*) of subscribers measured in the same run.

Uses bench_dashboard's data ("full": 1,000,000 subscribers and 10,000,000 deliveries with opens and
clicks, in MAILAPP_BENCH_DATABASE_URL; "smoke": a few hundred rows on SQLite) and times
mailapp.segments.services.count (the matching count and the sendable count) directly, without HTTP.
"""

from __future__ import annotations

import statistics
import time

from bench.bench_dashboard import app_on_dashboard_data
from bench.common import Row, result_row

TARGET_MS = 1000
RUNS = 1
REPEATS = {"smoke": 3, "full": 5}


def trees(campaign_id: int) -> dict[str, dict]:
    return {
        "attribute equals (plan = pro)": {
            "field": "attribute", "key": "plan", "op": "equals", "value": "pro"},
        "number compare and status": {"all": [
            {"field": "attribute", "key": "age", "op": "gte", "value": 40},
            {"field": "status", "op": "is", "value": "active"}]},
        "opened a campaign": {"field": "activity", "op": "opened", "value": campaign_id},
        "did not open a campaign (resend)": {"field": "activity", "op": "not_opened", "value": campaign_id},
        "opened within 30 days": {"field": "activity", "op": "opened_within_days", "value": 30},
        # The hardest shape: campaign rules inside `any` cannot become joins (see README, segments).
        "opened one campaign or did not open another": {"any": [
            {"field": "activity", "op": "opened", "value": campaign_id - 1},
            {"field": "activity", "op": "not_opened", "value": campaign_id}]},
        "mixed: pro and (opened within 30 days or list member)": {"all": [
            {"field": "attribute", "key": "plan", "op": "equals", "value": "pro"},
            {"any": [{"field": "activity", "op": "opened_within_days", "value": 30},
                     {"field": "list", "op": "member", "value": 1}]}]},
    }  # fmt: skip


def _median_ms(action, repeats: int) -> float:
    action()  # warm the cache: the figure is the steady state
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def run(scale: str) -> list[Row]:
    from sqlalchemy import func, select

    from mailapp.extensions import db
    from mailapp.models import Campaign, Subscriber
    from mailapp.segment_rules import validate_rules
    from mailapp.segments import services

    with app_on_dashboard_data(scale, "segments") as (_, sizes):
        newest_sent = select(func.max(Campaign.id)).where(Campaign.status == "sent")
        campaign_id = db.session.scalar(newest_sent)
        baseline = _median_ms(
            lambda: db.session.scalar(select(func.count()).select_from(Subscriber)), REPEATS[scale]
        )
        deliveries = sizes.subscribers * sizes.campaigns
        data = f"{sizes.subscribers:,} subscribers, {deliveries:,} deliveries"
        rows = []
        for label, tree in trees(campaign_id).items():
            rules = validate_rules(tree)
            figures = services.count(rules)
            value = _median_ms(lambda rules=rules: services.count(rules), REPEATS[scale])
            rows.append(result_row(
                f"segment count: {label}", value, "ms", baseline="COUNT(*) of subscribers",
                baseline_value=baseline, target=f"< {TARGET_MS}",
                notes=f"{figures.matching:,} match, {figures.recipients:,} sendable; {data}",
            ))  # fmt: skip
        return rows
