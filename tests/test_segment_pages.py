"""The segments pages: the builder's form saves a tree the server checks, the live count answers for a
posted tree, and a sent campaign's page makes a resend to non-openers."""

from __future__ import annotations

import json

from sqlalchemy import select, update

from mailapp.extensions import db
from mailapp.models import Campaign, Delivery, Segment, Subscriber
from tests.factories import SubscriberFactory
from tests.test_sending import make_campaign

PRO = {"all": [{"field": "attribute", "key": "plan", "op": "equals", "value": "pro"}]}


def test_the_segment_form_saves_the_tree_the_builder_wrote(auth_client) -> None:
    assert auth_client.get("/segments/new").status_code == 200
    response = auth_client.post_form("/segments/new", {"name": "Pro", "rules": json.dumps(PRO)})
    assert response.status_code == 302
    saved = db.session.scalar(select(Segment))
    assert (saved.name, saved.rules) == ("Pro", PRO)
    assert "Pro" in auth_client.get("/segments/").get_data(as_text=True)


def test_a_bad_tree_from_the_form_is_shown_with_its_path_and_nothing_is_saved(auth_client) -> None:
    bad = {"any": [{"field": "status", "op": "is", "value": "sleeping"}]}
    response = auth_client.post_form("/segments/new", {"name": "Bad", "rules": json.dumps(bad)})
    assert response.status_code == 422
    assert "rules.any[0].value" in response.get_data(as_text=True)
    assert db.session.scalar(select(Segment)) is None


def test_the_live_count_answers_for_a_posted_tree(auth_client) -> None:
    SubscriberFactory(attributes={"plan": "pro"})
    SubscriberFactory(attributes={"plan": "pro"}, status="unsubscribed")
    SubscriberFactory(attributes={"plan": "free"})
    response = auth_client.post_form("/segments/count", {"rules": json.dumps(PRO)})
    assert response.get_json() == {"count": 2, "recipients": 1}
    response = auth_client.post_form("/segments/count", {"rules": "{"})
    assert response.status_code == 422


def test_a_sent_campaign_page_makes_a_resend_to_non_openers(auth_client) -> None:
    campaign, _ = make_campaign(count=2, status="sent")
    db.session.execute(update(Delivery).where(Delivery.campaign_id == campaign.id).values(status="sent"))
    db.session.commit()
    assert "Resend to non-openers" in auth_client.get(f"/campaigns/{campaign.id}").get_data(as_text=True)
    form = {"subject": "Again", "delay_hours": ""}
    response = auth_client.post_form(f"/segments/resend/{campaign.id}", form)
    assert response.status_code == 302
    copy = db.session.scalar(select(Campaign).where(Campaign.id != campaign.id))
    assert (copy.status, copy.subject, copy.lists) == ("draft", "Again", [])
    not_opened = {"field": "activity", "op": "not_opened", "value": campaign.id}
    assert copy.segments[0].rules == {"all": [not_opened]}
    # Nobody opened: both recipients are expected again.
    page = auth_client.get(f"/campaigns/{copy.id}").get_data(as_text=True)
    assert 'data-testid="expected-recipients">2<' in page


def test_the_subscriber_list_filters_by_attribute_with_the_segment_compiler(auth_client) -> None:
    paris = SubscriberFactory(email="ann@example.com", attributes={"city": "Paris", "age": 40})
    SubscriberFactory(email="bob@example.com", attributes={"city": "Lyon", "age": 20})
    SubscriberFactory(email="cat@example.com", attributes={"age": "40"})
    page = auth_client.get("/subscribers?attr_key=city&attr_op=equals&attr_value=Paris")
    text = page.get_data(as_text=True)
    assert paris.email in text
    assert "bob@example.com" not in text
    text = auth_client.get("/subscribers?attr_key=age&attr_op=gte&attr_value=30").get_data(as_text=True)
    # "40" is text, not a number: only Ann's age compares.
    assert "ann@example.com" in text
    assert "cat@example.com" not in text
    assert "bob@example.com" not in text
    text = auth_client.get("/subscribers?attr_key=age&attr_op=gt&attr_value=old").get_data(as_text=True)
    assert "Attribute filter: attribute.value" in text


def test_typed_attribute_rows_round_trip_their_types(auth_client) -> None:
    person = SubscriberFactory(attributes={"city": "Paris", "seats": 3, "since": "2024-02-29", "vip": True})
    page = auth_client.get(f"/subscribers/{person.id}").get_data(as_text=True)
    assert 'data-testid="typed-attributes"' in page
    assert '<option value="seats">' in page  # a key the data has, offered as a suggestion
    form = {
        "email": person.email, "name": person.name, "status": "active",
        "attr_row_key": ["city", "seats", "ratio", "since", "vip", ""],
        "attr_row_type": ["text", "number", "number", "date", "yes/no", "text"],
        "attr_row_value": ["Lyon", "4", "2.5", "2025-01-31", "no", ""],
    }
    response = auth_client.post_form(f"/subscribers/{person.id}", form)
    assert response.status_code == 302
    db.session.expire_all()
    saved = db.session.get(Subscriber, person.id).attributes
    assert saved == {"city": "Lyon", "seats": 4, "ratio": 2.5, "since": "2025-01-31", "vip": False}
    assert isinstance(saved["seats"], int)
    assert saved["vip"] is False
    page = auth_client.get(f"/subscribers/{person.id}").get_data(as_text=True)
    assert 'name="attr_row_value" value="2.5"' in page


def test_a_bad_typed_value_names_its_row_and_changes_nothing(auth_client) -> None:
    person = SubscriberFactory(attributes={"seats": 3})
    form = {"email": person.email, "status": "active", "attr_row_key": ["seats"], "attr_row_type": ["number"],
            "attr_row_value": ["three"]}
    response = auth_client.post_form(f"/subscribers/{person.id}", form)
    assert response.status_code == 422
    text = response.get_data(as_text=True)
    assert "Attribute row 1 (&#39;seats&#39;) &#39;three&#39; is not a number." in text
    db.session.expire_all()
    assert db.session.get(Subscriber, person.id).attributes == {"seats": 3}
