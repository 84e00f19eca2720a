"""Subscribers: services, dashboard pages and the JSON API."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from mailapp.errors import ConflictError, ValidationError
from mailapp.models.base import utcnow
from mailapp.models.subscriber import Subscriber, list_members
from mailapp.subscribers import services
from tests.factories import CampaignFactory, SubscriberFactory, SubscriberListFactory

# --- services -----------------------------------------------------------------------------------------


def test_create_subscriber_normalizes_email_and_joins_lists(db):
    news, vip = SubscriberListFactory(), SubscriberListFactory()
    created = services.create_subscriber(
        "  Ann.Lee@Example.COM ", "Ann", '{"city": "Paris"}', [news.id, vip.id]
    )
    db.session.commit()
    stored = db.session.get(Subscriber, created.id)
    assert stored.email == "ann.lee@example.com"
    assert stored.attributes == {"city": "Paris"}
    assert stored.status == "active"
    assert sorted(item.id for item in stored.lists) == sorted([news.id, vip.id])


def test_email_is_unique_regardless_of_case(db):
    services.create_subscriber("ann@example.com")
    db.session.commit()
    with pytest.raises(ConflictError):
        services.create_subscriber("ANN@example.com")
    other = services.create_subscriber("bob@example.com")
    with pytest.raises(ConflictError):
        services.update_subscriber(other, email="Ann@Example.com")


@pytest.mark.parametrize(
    "email", ["", "   ", "not-an-email", "a@b", "ann@@example.com", "x\n@example.com", None]
)
def test_invalid_email_is_refused(db, email):
    with pytest.raises(ValidationError):
        services.create_subscriber(email)
    assert db.session.scalar(select(func.count()).select_from(Subscriber)) == 0


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("[1, 2]", "must be a JSON object"),
        ('"text"', "must be a JSON object"),
        ("{'single': 'quotes'}", "not valid JSON"),
        ('{"a": 1,}', "not valid JSON"),
        (42, "must be a JSON object"),
    ],
)
def test_attributes_must_be_a_json_object(db, raw, message):
    with pytest.raises(ValidationError, match=message):
        services.create_subscriber("ann@example.com", attributes=raw)


def test_bad_status_and_unknown_lists_are_refused(db):
    with pytest.raises(ValidationError, match="Status"):
        services.create_subscriber("ann@example.com", status="gone")
    with pytest.raises(ValidationError, match="No such list"):
        services.create_subscriber("ann@example.com", list_ids=[12345])
    with pytest.raises(ValidationError, match="list_ids"):
        services.create_subscriber("ann@example.com", list_ids="1,2")


def test_resubscribe_clears_unsubscribe_fields(db):
    subscriber = SubscriberFactory(
        status="unsubscribed", unsubscribed_at=datetime(2026, 1, 2, tzinfo=UTC), unsubscribed_campaign_id=7
    )
    services.set_subscriber_status(subscriber, "active")
    db.session.commit()
    stored = db.session.get(Subscriber, subscriber.id)
    assert stored.status == "active"
    assert stored.unsubscribed_at is None
    assert stored.unsubscribed_campaign_id is None


def test_unsubscribe_by_admin_records_the_time(db):
    subscriber = SubscriberFactory()
    services.set_subscriber_status(subscriber, "unsubscribed")
    assert subscriber.unsubscribed_at is not None
    services.set_subscriber_status(subscriber, "blocklisted")
    assert subscriber.status == "blocklisted"


def test_delete_subscriber_removes_memberships(db):
    target = SubscriberListFactory()
    subscriber = SubscriberFactory(lists=[target])
    services.delete_subscriber(subscriber)
    db.session.commit()
    assert db.session.scalar(select(func.count()).select_from(list_members)) == 0


def test_search_filters_and_keyset_pages(db):
    news = SubscriberListFactory()
    ann = SubscriberFactory(email="ann@example.com", name="Ann Lee", lists=[news])
    bob = SubscriberFactory(email="bob@other.org", name="Bob 100%", status="unsubscribed")
    carl = SubscriberFactory(email="carl@example.com", name="Carl", lists=[news], status="blocklisted")

    def emails(**filters):
        return [s.email for s in services.subscriber_page(**filters).items]

    assert emails() == [carl.email, bob.email, ann.email]
    assert emails(q="EXAMPLE") == [carl.email, ann.email]
    assert emails(q="Ann@Example.com") == [ann.email]  # a whole address: exact, through the index
    assert emails(q="nn@example.com") == []
    assert emails(q="@example.com") == [carl.email, ann.email]  # not an address: contains
    assert emails(q="lee") == [ann.email]
    assert emails(q="100%") == [bob.email]  # % is matched literally
    assert emails(q="_") == []
    assert emails(list_id=news.id) == [carl.email, ann.email]
    assert emails(status="unsubscribed") == [bob.email]
    assert emails(list_id=news.id, status="active") == [ann.email]

    first = services.subscriber_page(limit=2)
    assert [s.email for s in first.items] == [carl.email, bob.email]
    assert first.newer_than is None
    second = services.subscriber_page(limit=2, before=first.older_than)
    assert [s.email for s in second.items] == [ann.email]
    assert second.older_than is None
    back = services.subscriber_page(limit=2, after=second.newer_than)
    assert [s.email for s in back.items] == [carl.email, bob.email]
    assert back.newer_than is None


def test_count_subscribers_matches_filters(db):
    news = SubscriberListFactory()
    SubscriberFactory.create_batch(3, lists=[news])
    SubscriberFactory(status="unsubscribed")
    assert services.count_subscribers() == 4
    assert services.count_subscribers(list_id=news.id) == 3
    assert services.count_subscribers(status="unsubscribed") == 1
    assert services.count_subscribers(q="person", list_id=news.id) == 3


# --- views --------------------------------------------------------------------------------------------


def test_subscribers_page_empty_state(auth_client):
    assert "No subscribers yet" in auth_client.get("/subscribers").get_data(as_text=True)


def test_add_subscriber_through_the_page(auth_client, db):
    news = SubscriberListFactory(name="News")
    response = auth_client.post_form(
        "/subscribers/new",
        {"email": "Ann@Example.com", "name": "Ann", "attributes": '{"plan": "pro"}', "status": "active",
         "lists": [str(news.id)]},
        token_page="/subscribers/new",
    )
    assert response.status_code == 302
    stored = db.session.scalar(select(Subscriber))
    assert stored.email == "ann@example.com"
    assert stored.attributes == {"plan": "pro"}
    assert [item.name for item in stored.lists] == ["News"]


def test_bad_attributes_show_a_form_error_and_store_nothing(auth_client, db):
    response = auth_client.post_form(
        "/subscribers/new", {"email": "ann@example.com", "attributes": "[1]", "status": "active"},
        token_page="/subscribers/new",
    )
    assert response.status_code == 422
    assert "must be a JSON object" in response.get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(Subscriber)) == 0


def test_duplicate_email_shows_a_form_error(auth_client, db):
    SubscriberFactory(email="ann@example.com")
    response = auth_client.post_form(
        "/subscribers/new", {"email": "ANN@example.com", "status": "active"}, token_page="/subscribers/new"
    )
    assert response.status_code == 422
    assert "already exists" in response.get_data(as_text=True)


def test_invalid_email_shows_a_form_error(auth_client):
    response = auth_client.post_form(
        "/subscribers/new", {"email": "nope", "status": "active"}, token_page="/subscribers/new"
    )
    assert response.status_code == 422
    assert "Invalid email address" in response.get_data(as_text=True)


def test_edit_subscriber_through_the_page(auth_client, db):
    subscriber = SubscriberFactory(email="ann@example.com", attributes={"a": "1"})
    page = f"/subscribers/{subscriber.id}"
    assert "ann@example.com" in auth_client.get(page).get_data(as_text=True)
    response = auth_client.post_form(
        page, {"email": "ann@example.com", "name": "Ann B", "attributes": '{"b": 2}', "status": "active"},
        token_page=page,
    )
    assert response.status_code == 302
    db.session.expire_all()
    stored = db.session.get(Subscriber, subscriber.id)
    assert stored.name == "Ann B"
    assert stored.attributes == {"b": 2}


def test_subscriber_page_shows_unsubscribe_details_and_resubscribe(auth_client, db):
    campaign = CampaignFactory(name="Spring sale")
    subscriber = SubscriberFactory(
        status="unsubscribed",
        unsubscribed_at=datetime(2026, 3, 4, 5, 6, tzinfo=UTC),
        unsubscribed_campaign_id=campaign.id,
    )
    page = f"/subscribers/{subscriber.id}"
    html = auth_client.get(page).get_data(as_text=True)
    assert "2026-03-04 05:06 UTC" in html
    assert f'href="/campaigns/{campaign.id}">Spring sale</a>' in html
    assert "Resubscribe" in html
    listing = auth_client.get("/subscribers?status=unsubscribed").get_data(as_text=True)
    assert "2026-03-04 05:06 UTC" in listing
    assert ">Spring sale</a>" in listing
    assert "Campaign #" not in listing
    response = auth_client.post_form(f"{page}/status", {"status": "active"}, token_page=page)
    assert response.status_code == 302
    db.session.expire_all()
    stored = db.session.get(Subscriber, subscriber.id)
    assert stored.status == "active"
    assert stored.unsubscribed_at is None


@pytest.mark.parametrize("status", ["unsubscribed", "blocklisted"])
def test_the_status_dropdown_reactivates_a_subscriber_only_with_the_confirmation(auth_client, db, status):
    subscriber = SubscriberFactory(status=status, name="Ann")
    page = f"/subscribers/{subscriber.id}"
    assert "They asked to receive mail again" in auth_client.get(page).get_data(as_text=True)
    form = {"email": subscriber.email, "name": "Ann", "attributes": "{}", "status": "active"}
    refused = auth_client.post_form(page, form, token_page=page)
    assert refused.status_code == 422
    assert f"This subscriber is {status}: tick" in refused.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Subscriber, subscriber.id).status == status
    accepted = auth_client.post_form(page, {**form, "confirm_reactivation": "y"}, token_page=page)
    assert accepted.status_code == 302
    db.session.expire_all()
    assert db.session.get(Subscriber, subscriber.id).status == "active"
    # An active subscriber's form neither shows nor needs the box.
    assert "They asked to receive mail again" not in auth_client.get(page).get_data(as_text=True)
    assert auth_client.post_form(page, form, token_page=page).status_code == 302


def test_a_deleted_campaign_is_named_by_its_number(auth_client, db):
    subscriber = SubscriberFactory(
        status="unsubscribed", unsubscribed_at=utcnow(), unsubscribed_campaign_id=987
    )
    html = auth_client.get(f"/subscribers/{subscriber.id}").get_data(as_text=True)
    assert "a deleted campaign (#987)" in html
    assert 'href="/campaigns/987"' not in html


def test_blocklist_and_unblocklist_through_the_page(auth_client, db):
    subscriber = SubscriberFactory()
    page = f"/subscribers/{subscriber.id}"
    auth_client.post_form(f"{page}/status", {"status": "blocklisted"}, token_page=page)
    db.session.expire_all()
    assert db.session.get(Subscriber, subscriber.id).status == "blocklisted"
    assert "Unblocklist" in auth_client.get(page).get_data(as_text=True)
    auth_client.post_form(f"{page}/status", {"status": "active"}, token_page=page)
    db.session.expire_all()
    assert db.session.get(Subscriber, subscriber.id).status == "active"


def test_bad_status_action_is_refused(auth_client, db):
    subscriber = SubscriberFactory()
    page = f"/subscribers/{subscriber.id}"
    response = auth_client.post_form(f"{page}/status", {"status": "deleted"}, token_page=page)
    assert response.status_code == 400
    db.session.expire_all()
    assert db.session.get(Subscriber, subscriber.id).status == "active"


def test_delete_subscriber_through_the_page(auth_client, db):
    subscriber = SubscriberFactory()
    page = f"/subscribers/{subscriber.id}"
    assert auth_client.post_form(f"{page}/delete", token_page=page).status_code == 302
    db.session.expire_all()
    assert db.session.get(Subscriber, subscriber.id) is None


def test_subscribers_page_searches_filters_and_pages(auth_client):
    news = SubscriberListFactory(name="News")
    people = SubscriberFactory.create_batch(52, lists=[news])
    SubscriberFactory(email="zed@elsewhere.org", status="blocklisted")
    html = auth_client.get("/subscribers").get_data(as_text=True)
    assert "zed@elsewhere.org" in html
    assert people[0].email not in html  # on the second page
    assert "before=" in html
    assert auth_client.get("/subscribers?q=elsewhere").get_data(as_text=True).count("@elsewhere.org") >= 1
    by_status = auth_client.get("/subscribers?status=blocklisted").get_data(as_text=True)
    assert "zed@elsewhere.org" in by_status
    assert people[1].email not in by_status
    by_list = auth_client.get(f"/subscribers?list_id={news.id}").get_data(as_text=True)
    assert "zed@elsewhere.org" not in by_list
    nothing = auth_client.get("/subscribers?q=nobody-matches").get_data(as_text=True)
    assert "No subscriber matches" in nothing


# --- API ----------------------------------------------------------------------------------------------


def test_api_create_get_patch_delete_subscriber(api):
    news = SubscriberListFactory()
    response = api.post(
        "/api/v1/subscribers",
        json={"email": "Ann@Example.com", "name": "Ann", "attributes": {"city": "Oslo"},
              "list_ids": [news.id]},
    )
    assert response.status_code == 201
    created = response.get_json()
    assert created["email"] == "ann@example.com"
    assert created["list_ids"] == [news.id]
    assert created["status"] == "active"

    url = f"/api/v1/subscribers/{created['id']}"
    assert api.get(url).get_json()["attributes"] == {"city": "Oslo"}
    patched = api.patch(url, json={"name": "Ann L", "status": "unsubscribed", "list_ids": []}).get_json()
    assert patched["name"] == "Ann L"
    assert patched["status"] == "unsubscribed"
    assert patched["unsubscribed_at"] is not None
    assert patched["list_ids"] == []
    assert api.delete(url).status_code == 204
    assert api.get(url).status_code == 404


def test_api_duplicate_email_in_any_case_is_409(api):
    assert api.post("/api/v1/subscribers", json={"email": "ann@example.com"}).status_code == 201
    response = api.post("/api/v1/subscribers", json={"email": "ANN@EXAMPLE.COM"})
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "conflict"


@pytest.mark.parametrize(
    "body",
    [
        {"email": "not-an-email"},
        {},
        {"email": "ann@example.com", "attributes": [1]},
        {"email": "ann@example.com", "attributes": "{bad json"},
        {"email": "ann@example.com", "status": "gone"},
        {"email": "ann@example.com", "list_ids": [999]},
        {"email": "ann@example.com", "colour": "red"},
        {"email": "ann@example.com", "name": 5},
    ],
)
def test_api_bad_subscriber_is_422(api, body, db):
    response = api.post("/api/v1/subscribers", json=body)
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert set(error) == {"code", "message", "details"}
    assert error["message"]
    assert db.session.scalar(select(func.count()).select_from(Subscriber)) == 0


def test_api_patch_to_taken_email_is_409(api):
    SubscriberFactory(email="ann@example.com")
    bob = SubscriberFactory(email="bob@example.com")
    assert api.patch(f"/api/v1/subscribers/{bob.id}", json={"email": "Ann@example.com"}).status_code == 409


def test_api_lists_subscribers_with_filters_and_pages(api):
    news = SubscriberListFactory()
    people = SubscriberFactory.create_batch(5, lists=[news])
    SubscriberFactory(email="zed@elsewhere.org", name="Zed", status="unsubscribed")
    body = api.get("/api/v1/subscribers?per_page=2&page=1").get_json()
    assert body["total"] == 6
    assert body["page"] == 1
    assert [item["email"] for item in body["items"]] == ["zed@elsewhere.org", people[-1].email]
    assert body["items"][1]["list_ids"] == [news.id]
    assert api.get("/api/v1/subscribers?page=4&per_page=2").get_json()["items"] == []
    assert api.get(f"/api/v1/subscribers?list_id={news.id}").get_json()["total"] == 5
    assert api.get("/api/v1/subscribers?status=unsubscribed").get_json()["total"] == 1
    assert api.get("/api/v1/subscribers?q=ZED").get_json()["items"][0]["name"] == "Zed"
    assert api.get("/api/v1/subscribers?status=gone").status_code == 422
    assert api.get("/api/v1/subscribers?list_id=abc").status_code == 422
    assert api.get("/api/v1/subscribers?page=0").status_code == 422


def test_api_missing_subscriber_is_404(api):
    assert api.get("/api/v1/subscribers/999").status_code == 404
    assert api.patch("/api/v1/subscribers/999", json={"name": "x"}).status_code == 404
    assert api.delete("/api/v1/subscribers/999").status_code == 404
