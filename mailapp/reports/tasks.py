"""Celery tasks of the reports area: keeping the delivery counts few rows per campaign."""

from __future__ import annotations

from celery import shared_task

from mailapp.extensions import db
from mailapp.reports.figures import fold_piled_up_delivery_counts


@shared_task(name="mailapp.reports.tasks.fold_delivery_counts")
def fold_delivery_counts() -> list[int]:
    """Run by beat (see config): folds what sending appended since, so no page that reads the counts
    has to write. Returns the campaigns folded."""
    folded = fold_piled_up_delivery_counts()
    db.session.commit()
    return folded
