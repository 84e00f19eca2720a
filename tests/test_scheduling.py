"""Scheduling: the atomic claim, schedule versions, and the beat dispatcher's choices (service level)."""

from __future__ import annotations

from datetime import timedelta

from mailapp.campaigns import dispatcher, lifecycle
from mailapp.models import Campaign
from mailapp.models.base import utcnow
from tests.campaign_fixtures import audience, make_ready_campaign  # noqa: F401


def _scheduled(audience, delay: timedelta):  # noqa: F811
    campaign = make_ready_campaign(audience)
    lifecycle.schedule_campaign(campaign.id, utcnow() + delay)
    lifecycle.get_campaign(campaign.id)
    from mailapp.extensions import db

    db.session.commit()
    return campaign


def test_claim_wins_once(db, audience):  # noqa: F811
    campaign = _scheduled(audience, timedelta(seconds=0))
    assert lifecycle.claim_scheduled_campaign(campaign.id, 1)
    db.session.commit()
    assert not lifecycle.claim_scheduled_campaign(campaign.id, 1)
    db.session.refresh(campaign)
    assert campaign.status == "sending"
    assert campaign.started_at is not None


def test_claim_ignores_stale_versions_and_early_messages(db, audience):  # noqa: F811
    campaign = _scheduled(audience, timedelta(minutes=10))
    assert not lifecycle.claim_scheduled_campaign(campaign.id, 1), "a message before its time does nothing"
    lifecycle.schedule_campaign(campaign.id, utcnow())
    db.session.commit()
    assert campaign.schedule_version == 2
    later = utcnow() + timedelta(minutes=11)
    assert not lifecycle.claim_scheduled_campaign(campaign.id, 1, now=later), "rescheduled: v1 is stale"
    assert lifecycle.claim_scheduled_campaign(campaign.id, 2, now=later)


def test_dispatcher_queues_each_schedule_once_as_it_enters_the_horizon(app, db, audience):  # noqa: F811
    campaign = make_ready_campaign(audience)
    far = utcnow() + timedelta(seconds=app.config["SCHEDULE_HORIZON_SECONDS"] + 120)
    lifecycle.schedule_campaign(campaign.id, far)
    db.session.commit()
    assert campaign.start_queued_version == 0
    now = utcnow()
    assert dispatcher.collect_due_work(now=now, horizon_seconds=60).to_queue == []
    later = far - timedelta(seconds=30)
    work = dispatcher.collect_due_work(now=later, horizon_seconds=60)
    db.session.commit()
    assert work.to_queue == [(campaign.id, 1, far)]
    assert work.to_start == []
    assert dispatcher.collect_due_work(now=later, horizon_seconds=60).to_queue == []
    # A reschedule is a new version: queued again.
    lifecycle.schedule_campaign(campaign.id, far + timedelta(hours=1))
    db.session.commit()
    work = dispatcher.collect_due_work(now=far + timedelta(minutes=40), horizon_seconds=60 * 30)
    assert [item[:2] for item in work.to_queue] == [(campaign.id, 2)]


def test_dispatcher_requeues_queued_schedules_due_within_the_lookahead(app, db, audience):  # noqa: F811
    now = utcnow()
    soon = _scheduled(audience, timedelta(seconds=3))
    _scheduled(audience, timedelta(seconds=20))  # beyond the lookahead: its message is trusted
    overdue = _scheduled(audience, timedelta(seconds=0))
    cancelled = _scheduled(audience, timedelta(seconds=2))
    lifecycle.cancel_campaign(cancelled.id)
    never_queued = make_ready_campaign(audience)
    far = now + timedelta(seconds=app.config["SCHEDULE_HORIZON_SECONDS"] + 2)
    lifecycle.schedule_campaign(never_queued.id, far)
    db.session.commit()
    assert soon.start_queued_version == soon.schedule_version, "queued after its commit, within the horizon"

    def collect(at):
        return dispatcher.collect_due_work(now=at, horizon_seconds=1800, lookahead_seconds=5)

    work = collect(now + timedelta(seconds=1))
    db.session.commit()
    assert work.to_requeue == [(soon.id, 1, soon.send_at)]
    assert work.to_start == [(overdue.id, 1)]
    assert work.to_queue == []
    # A schedule coming into the lookahead that was never queued is queued (once) as entering the
    # horizon, not requeued as well.
    work = collect(far - timedelta(seconds=2))
    assert [item[0] for item in work.to_queue] == [never_queued.id]
    assert never_queued.id not in [item[0] for item in work.to_requeue]
    # No lookahead, nothing requeued.
    assert dispatcher.collect_due_work(now=now, horizon_seconds=1800).to_requeue == []


def test_dispatcher_starts_overdue_and_recovers_stalled_starts(db, audience):  # noqa: F811
    overdue = _scheduled(audience, timedelta(seconds=0))
    stalled = make_ready_campaign(audience, status="sending", started_at=utcnow() - timedelta(seconds=90))
    fresh = make_ready_campaign(audience, status="sending", started_at=utcnow() - timedelta(seconds=2))
    snapshotted = make_ready_campaign(
        audience,
        status="sending",
        started_at=utcnow() - timedelta(minutes=5),
        snapshot_taken_at=utcnow() - timedelta(minutes=5),
    )
    cancelled = _scheduled(audience, timedelta(seconds=0))
    lifecycle.cancel_campaign(cancelled.id)
    db.session.commit()
    work = dispatcher.collect_due_work(now=utcnow() + timedelta(seconds=1), horizon_seconds=1800)
    assert work.to_start == [(overdue.id, 1)]
    assert work.stalled == [stalled.id]
    assert fresh.id not in work.stalled
    assert snapshotted.id not in work.stalled


def test_start_fails_a_campaign_whose_layout_vanished(db, audience):  # noqa: F811
    campaign = _scheduled(audience, timedelta(seconds=0))
    assert lifecycle.claim_scheduled_campaign(campaign.id, 1)
    db.session.commit()
    db.session.delete(campaign.layout)
    db.session.commit()
    assert lifecycle.fail_unsendable_start(campaign.id)
    db.session.commit()
    refreshed = db.session.get(Campaign, campaign.id)
    assert refreshed.status == "failed"
    assert "no layout" in refreshed.status_reason
