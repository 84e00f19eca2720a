"""The campaign lifecycle's shape: one state table that knows every status, and a tasks module that
holds only tasks (the plain functions they run live in mailapp.campaigns.lifecycle)."""

from __future__ import annotations

from celery import Task

from mailapp.campaigns import lifecycle, tasks
from mailapp.models.campaign import CampaignStatus


def test_every_campaign_status_has_a_row_in_the_state_table():
    assert set(lifecycle.ALLOWED_ACTIONS) == set(CampaignStatus)
    assert set(CampaignStatus) >= lifecycle.EDITABLE_STATES | lifecycle.FINISHED_STATES


def test_the_campaign_tasks_module_holds_only_tasks(app):
    defined_here = {
        name: value
        for name, value in vars(tasks).items()
        if not name.startswith("_") and getattr(value, "__module__", None) == tasks.__name__
    }
    assert defined_here
    plain = [name for name, value in defined_here.items() if not isinstance(value, Task)]
    assert plain == []
