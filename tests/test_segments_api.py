"""Segments through the API: save, read, count an unsaved tree, page the matches, refuse bad trees with
the path of the problem, refuse deleting a segment in use; and "resend to non-openers" end to end with
a real worker and the test SMTP server."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, insert, select, text

from mailapp.extensions import db
from mailapp.models import ClickEvent, Link, OpenEvent, Subscriber, Suppression, utcnow
from mailapp.segment_rules import validate_rules
from mailapp.segments import services
from mailapp.sending import tasks
from tests.campaign_fixtures import make_audience
from tests.conftest import is_postgres
from tests.factories import SubscriberFactory, SubscriberListFactory
from tests.test_sending import deliveries, make_campaign, wait_for_status

PRO = {"field": "attribute", "key": "plan", "op": "equals", "value": "pro"}


@pytest.fixture
def readers(db):
    members = SubscriberListFactory()
    people = [
        SubscriberFactory(attributes={"plan": "pro", "seats": 5}, lists=[members]),
        SubscriberFactory(attributes={"plan": "pro", "seats": 50}),
        SubscriberFactory(attributes={"plan": "free"}, lists=[members]),
        SubscriberFactory(attributes={"plan": "pro"}, status="unsubscribed"),
    ]
    return members, people


def test_a_segment_is_saved_read_counted_and_its_matches_paged(api, readers) -> None:
    members, people = readers
    rules = {"all": [PRO, {"any": [{"field": "list", "op": "member", "value": members.id},
                                   {"field": "attribute", "key": "seats", "op": "gte", "value": 10}]}]}
    created = api.post("/api/v1/segments", json={"name": "Pro", "rules": rules})
    assert created.status_code == 201, created.get_json()
    segment = created.get_json()
    assert segment["rules"] == rules

    shown = api.get(f"/api/v1/segments/{segment['id']}").get_json()
    assert (shown["count"], shown["recipients"]) == (2, 2)
    page = api.get(f"/api/v1/segments/{segment['id']}/subscribers").get_json()
    assert [item["id"] for item in page["items"]] == [people[0].id, people[1].id]
    assert page["items"][0]["list_ids"] == [members.id]

    counted = api.post("/api/v1/segments/count", json={"rules": PRO}).get_json()
    assert counted == {"count": 3, "recipients": 2}

    renamed = api.patch(f"/api/v1/segments/{segment['id']}", json={"name": "Pro readers"})
    assert renamed.get_json()["name"] == "Pro readers"
    assert api.delete(f"/api/v1/segments/{segment['id']}").status_code == 204
    assert api.get(f"/api/v1/segments/{segment['id']}").status_code == 404


def test_a_count_leaves_suppressed_addresses_out_of_the_recipients_until_lifted(api, readers) -> None:
    _, people = readers
    suppressed, lifted = people[0], people[1]
    db.session.add_all([
        Suppression(email=suppressed.email, reason="manual", source="test"),
        Suppression(email=lifted.email, reason="manual", source="test", lifted_at=utcnow()),
    ])  # fmt: skip
    db.session.commit()
    counted = api.post("/api/v1/segments/count", json={"rules": PRO}).get_json()
    # Three match; the unsubscribed one and the suppressed one are no recipients; the lifted one is.
    assert counted == {"count": 3, "recipients": 1}


def test_a_bad_tree_gets_a_422_naming_where_it_is_wrong(api, readers) -> None:
    bad = {"any": [PRO, {"field": "attribute", "key": "seats", "op": "gt", "value": "ten"}]}
    response = api.post("/api/v1/segments", json={"name": "Bad", "rules": bad})
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "invalid_rules"
    assert error["details"][0]["field"] == "rules.any[1].value"
    missing_list = {"field": "list", "op": "member", "value": 999}
    response = api.post("/api/v1/segments/count", json={"rules": {"all": [missing_list]}})
    assert response.get_json()["error"]["details"][0]["field"] == "rules.all[0].value"
    assert api.get("/api/v1/segments").get_json()["total"] == 0


def test_a_segment_a_campaign_targets_cannot_be_deleted(api, readers) -> None:
    segment = api.post("/api/v1/segments", json={"name": "Pro", "rules": PRO}).get_json()
    audience = make_audience()
    campaign = api.post("/api/v1/campaigns", json={
        "name": "To pros", "subject": "Hi", "from_email": "news@example.com", "layout_id": audience.layout.id,
        "segment_ids": [segment["id"]],
    })
    assert campaign.status_code == 201, campaign.get_json()
    assert campaign.get_json()["segment_ids"] == [segment["id"]]
    assert campaign.get_json()["list_ids"] == []
    refused = api.delete(f"/api/v1/segments/{segment['id']}")
    assert refused.status_code == 409
    assert refused.get_json()["error"]["details"][0]["campaign_ids"] == [campaign.get_json()["id"]]


def test_a_campaign_needs_a_list_or_a_segment(api, readers) -> None:
    audience = make_audience()
    response = api.post("/api/v1/campaigns", json={
        "name": "Nobody", "subject": "Hi", "from_email": "news@example.com", "layout_id": audience.layout.id,
    })
    assert response.status_code == 422
    assert response.get_json()["error"]["details"][0]["field"] == "list_ids"


def test_only_a_sent_campaign_can_be_resent_to_non_openers(api, readers) -> None:
    campaign, _ = make_campaign(count=2)
    response = api.post(f"/api/v1/campaigns/{campaign.id}/resend-non-openers", json={})
    assert response.status_code == 409


def _record_engagement(delivery_by_email, people) -> None:
    """Reader 0 opened (a human), 1 only had a machine open (Apple MPP), 2 clicked without loading
    images; 3, 4 and 5 did nothing."""
    link = Link(campaign_id=next(iter(delivery_by_email.values())).campaign_id, position=99, url="https://x.org")
    db.session.add(link)
    db.session.flush()
    opened, machine, clicked = (delivery_by_email[people[n].email] for n in range(3))
    db.session.execute(insert(OpenEvent), [
        {"delivery_id": opened.id, "campaign_id": opened.campaign_id, "is_machine": False, "at": utcnow()},
        {"delivery_id": machine.id, "campaign_id": machine.campaign_id, "is_machine": True, "at": utcnow()},
    ])
    db.session.execute(insert(ClickEvent), [{"delivery_id": clicked.id, "campaign_id": clicked.campaign_id,
                                             "link_id": link.id, "is_machine": False, "at": utcnow()}])
    db.session.commit()


@pytest.mark.e2e
def test_resend_to_non_openers_reaches_exactly_those_without_a_human_open(
    api, db, smtp_server, celery_worker
) -> None:
    campaign, people = make_campaign(count=6)
    tasks.enqueue_sending(campaign.id)
    wait_for_status(campaign.id, "sent")
    _record_engagement({row.email: row for row in deliveries(campaign.id)}, people)

    response = api.post(f"/api/v1/campaigns/{campaign.id}/resend-non-openers",
                        json={"subject": "In case you missed it, {{ subscriber.name }}"})
    assert response.status_code == 201, response.get_json()
    copy = response.get_json()
    assert copy["status"] == "draft"
    assert copy["list_ids"] == []
    assert len(copy["segment_ids"]) == 1

    # Reader 3 opens after the copy was made but before it sends: the segment applies at send time.
    late = {row.email: row for row in deliveries(campaign.id)}[people[3].email]
    db.session.execute(insert(OpenEvent), [
        {"delivery_id": late.id, "campaign_id": campaign.id, "is_machine": False, "at": utcnow()}
    ])
    db.session.commit()

    assert api.post(f"/api/v1/campaigns/{copy['id']}/send").status_code == 202
    wait_for_status(copy["id"], "sent")
    resent = sorted(m.to for m in smtp_server.messages if m.message["Subject"].startswith("In case"))
    assert resent == sorted([people[1].email, people[4].email, people[5].email])


def test_resend_to_non_openers_can_be_scheduled_hours_ahead(api, db) -> None:
    campaign, _ = make_campaign(count=2, status="sent")
    before = utcnow()
    response = api.post(f"/api/v1/campaigns/{campaign.id}/resend-non-openers", json={"delay_hours": 24})
    assert response.status_code == 201, response.get_json()
    copy = response.get_json()
    assert copy["status"] == "scheduled"
    assert copy["subject"] == campaign.subject
    send_at = datetime.fromisoformat(copy["send_at"])
    assert before + timedelta(hours=24) <= send_at <= utcnow() + timedelta(hours=24)


def _show(setting: str) -> str:
    return db.session.execute(text(f"SHOW {setting}")).scalar_one()


@pytest.mark.skipif(not is_postgres(), reason="the statement timeout and work_mem are PostgreSQL's")
def test_a_count_past_its_time_is_stopped_with_a_clear_error_and_the_transaction_goes_on(
    api, app, monkeypatch
) -> None:
    lists = [SubscriberListFactory() for _ in range(12)]
    db.session.execute(
        insert(Subscriber),
        [{"email": f"slow{n}@example.com", "attributes": {"n": n}} for n in range(20_000)],
    )
    db.session.commit()
    # 12 list probes for each of 20,000 subscribers: far more than a millisecond.
    rules = {"any": [{"field": "list", "op": "member", "value": each.id} for each in lists]}
    monkeypatch.setitem(app.config, "SEGMENT_COUNT_TIMEOUT_MS", 1)
    refused = api.post("/api/v1/segments/count", json={"rules": rules})
    assert refused.status_code == 422
    body = refused.get_json()
    assert body["error"]["code"] == "segment_too_slow"
    assert "longer than 0.001 s" in body["error"]["message"]
    # The same session counts again once the bound allows it, with its own settings back.
    monkeypatch.setitem(app.config, "SEGMENT_COUNT_TIMEOUT_MS", 60_000)
    before = (_show("statement_timeout"), _show("work_mem"))
    assert services.count(services.checked_rules(rules)).matching == 0
    assert (_show("statement_timeout"), _show("work_mem")) == before
    assert db.session.scalar(select(func.count()).select_from(Subscriber)) == 20_000


def test_the_rules_that_hash_share_the_counts_memory_within_bounds(app) -> None:
    def probing(count: int) -> dict:
        return validate_rules({"any": [{"field": "activity", "op": "not_opened", "value": n + 1}
                                       for n in range(count)] + [PRO]})  # fmt: skip

    budget_kb = app.config["SEGMENT_COUNT_MEMORY_MB"] * 1024
    assert services._hash_memory_kb(validate_rules(PRO)) == 64 * 1024  # nothing hashes: the cap
    assert services._hash_memory_kb(probing(2)) == min(64 * 1024, budget_kb // 2)
    assert services._hash_memory_kb(probing(10)) == max(4 * 1024, budget_kb // 10)
    assert services._hash_memory_kb(probing(150)) == 4 * 1024  # never below PostgreSQL's default
