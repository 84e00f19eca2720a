"""Lists: services, dashboard pages and the JSON API."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from mailapp.errors import ConflictError, NotFoundError, ValidationError
from mailapp.models.subscriber import Subscriber, SubscriberList, list_members
from mailapp.subscribers import subscriber_lists
from tests.factories import SubscriberFactory, SubscriberListFactory

# --- services -----------------------------------------------------------------------------------------


def test_create_rename_describe_delete_list(db):
    created = subscriber_lists.create_list("  Newsletter  ", "Weekly news")
    db.session.commit()
    assert created.name == "Newsletter"
    assert created.description == "Weekly news"

    subscriber_lists.update_list(created, name="Weekly", description="Every Monday")
    db.session.commit()
    assert db.session.get(SubscriberList, created.id).name == "Weekly"
    assert db.session.get(SubscriberList, created.id).description == "Every Monday"

    subscriber_lists.delete_list(created)
    db.session.commit()
    assert db.session.get(SubscriberList, created.id) is None


def test_list_names_are_unique_regardless_of_case(db):
    subscriber_lists.create_list("Customers")
    db.session.commit()
    with pytest.raises(ConflictError):
        subscriber_lists.create_list("customers")
    other = subscriber_lists.create_list("Prospects")
    with pytest.raises(ConflictError):
        subscriber_lists.update_list(other, name="CUSTOMERS")
    # Renaming a list to its own name is not a conflict.
    subscriber_lists.update_list(other, name="Prospects")


@pytest.mark.parametrize("name", ["", "   ", None, 42, "x" * 201])
def test_list_name_is_validated(db, name):
    with pytest.raises(ValidationError):
        subscriber_lists.create_list(name)


def test_deleting_a_list_keeps_its_subscribers(db):
    target = SubscriberListFactory()
    subscriber = SubscriberFactory(lists=[target])
    subscriber_lists.delete_list(target)
    db.session.commit()
    assert db.session.get(Subscriber, subscriber.id) is not None
    assert db.session.scalar(select(func.count()).select_from(list_members)) == 0


def test_list_counts_by_status(db):
    target = SubscriberListFactory()
    SubscriberFactory.create_batch(3, lists=[target])
    SubscriberFactory(lists=[target], status="unsubscribed")
    SubscriberFactory(lists=[target], status="blocklisted")
    SubscriberFactory()  # on no list
    counts = subscriber_lists.list_counts([target.id])[target.id]
    assert (counts.total, counts.active, counts.unsubscribed, counts.blocklisted) == (5, 3, 1, 1)


def test_get_list_missing_raises_not_found(db):
    with pytest.raises(NotFoundError):
        subscriber_lists.get_list(999)


# --- views --------------------------------------------------------------------------------------------


def test_lists_page_empty_state(auth_client):
    html = auth_client.get("/lists").get_data(as_text=True)
    assert "No lists yet" in html


def test_create_list_through_the_page(auth_client, db):
    data = {"name": "Members", "description": "Paying"}
    response = auth_client.post_form("/lists", data, token_page="/lists")
    assert response.status_code == 302
    created = db.session.scalar(select(SubscriberList).where(SubscriberList.name == "Members"))
    assert response.headers["Location"].endswith(f"/lists/{created.id}")
    page = auth_client.get("/lists").get_data(as_text=True)
    assert "Members" in page
    assert "Paying" in page


def test_create_list_with_taken_name_shows_error(auth_client, db):
    SubscriberListFactory(name="Members")
    response = auth_client.post_form("/lists", {"name": "members"}, token_page="/lists")
    assert response.status_code == 422
    assert "already exists" in response.get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(SubscriberList)) == 1


def test_create_list_without_name_is_refused(auth_client, db):
    response = auth_client.post_form("/lists", {"name": ""}, token_page="/lists")
    assert response.status_code == 422
    assert db.session.scalar(select(func.count()).select_from(SubscriberList)) == 0


def test_list_page_shows_members_counts_and_buttons(auth_client):
    target = SubscriberListFactory(name="VIP")
    SubscriberFactory(email="ann@example.com", lists=[target])
    SubscriberFactory(email="bob@example.com", lists=[target], status="unsubscribed")
    html = auth_client.get(f"/lists/{target.id}").get_data(as_text=True)
    assert "ann@example.com" in html
    assert "bob@example.com" in html
    assert f"/lists/{target.id}/export" in html
    assert f"/lists/{target.id}/import" in html
    assert 'data-testid="list-counts"' in html


def test_list_page_paginates_members_by_keyset(auth_client):
    target = SubscriberListFactory()
    people = SubscriberFactory.create_batch(55, lists=[target])
    first = auth_client.get(f"/lists/{target.id}").get_data(as_text=True)
    assert people[-1].email in first
    assert people[0].email not in first
    older_than = people[5].id  # the first page shows ids people[54]..people[5]
    assert f"before={older_than}" in first
    second = auth_client.get(f"/lists/{target.id}?before={older_than}").get_data(as_text=True)
    assert people[0].email in second
    assert people[-1].email not in second


def test_rename_list_through_the_page(auth_client, db):
    target = SubscriberListFactory(name="Old")
    response = auth_client.post_form(f"/lists/{target.id}", {"name": "New", "description": "d"},
                                     token_page=f"/lists/{target.id}")
    assert response.status_code == 302
    db.session.expire_all()
    assert db.session.get(SubscriberList, target.id).name == "New"


def test_delete_list_through_the_page(auth_client, db):
    target = SubscriberListFactory()
    response = auth_client.post_form(f"/lists/{target.id}/delete", token_page="/lists")
    assert response.status_code == 302
    db.session.expire_all()
    assert db.session.get(SubscriberList, target.id) is None


def test_delete_list_without_csrf_is_refused(auth_client, db):
    target = SubscriberListFactory()
    response = auth_client.post(f"/lists/{target.id}/delete")
    assert response.status_code == 400
    assert db.session.get(SubscriberList, target.id) is not None


def test_list_pages_need_login(client):
    response = client.get("/lists")
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


def test_missing_list_page_is_404(auth_client):
    assert auth_client.get("/lists/424242").status_code == 404


# --- API ----------------------------------------------------------------------------------------------


def test_api_create_get_patch_delete_list(api):
    response = api.post("/api/v1/lists", json={"name": "Weekly", "description": "News"})
    assert response.status_code == 201
    created = response.get_json()
    assert created["name"] == "Weekly"
    assert created["subscriber_count"] == 0

    assert api.get(f"/api/v1/lists/{created['id']}").get_json()["description"] == "News"

    patched = api.patch(f"/api/v1/lists/{created['id']}", json={"name": "Monthly"})
    assert patched.status_code == 200
    assert patched.get_json()["name"] == "Monthly"
    assert patched.get_json()["description"] == "News"

    assert api.delete(f"/api/v1/lists/{created['id']}").status_code == 204
    assert api.get(f"/api/v1/lists/{created['id']}").status_code == 404


def test_api_list_name_taken_is_409(api):
    assert api.post("/api/v1/lists", json={"name": "Weekly"}).status_code == 201
    response = api.post("/api/v1/lists", json={"name": "WEEKLY"})
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "conflict"


@pytest.mark.parametrize("body", [{}, {"name": ""}, {"name": 5}, {"name": "ok", "description": 3}])
def test_api_bad_list_body_is_422(api, body):
    response = api.post("/api/v1/lists", json=body)
    assert response.status_code == 422
    assert set(response.get_json()["error"]) == {"code", "message", "details"}


def test_api_list_body_must_be_json_object(api):
    response = api.post("/api/v1/lists", data="not json", content_type="application/json")
    assert response.status_code == 422


def test_api_patch_unknown_field_is_422(api):
    target = SubscriberListFactory()
    assert api.patch(f"/api/v1/lists/{target.id}", json={"colour": "red"}).status_code == 422


def test_api_lists_are_paged(api):
    SubscriberListFactory.create_batch(5)
    body = api.get("/api/v1/lists?page=2&per_page=2").get_json()
    assert body["total"] == 5
    assert body["page"] == 2
    assert body["per_page"] == 2
    assert len(body["items"]) == 2
    assert api.get("/api/v1/lists?per_page=0").status_code == 422


def test_api_missing_list_is_404(api):
    for call in (api.get, api.patch, api.delete):
        response = call("/api/v1/lists/999", json={})
        assert response.status_code == 404
        assert response.get_json()["error"]["code"] == "not_found"


def test_api_needs_a_token(client):
    assert client.get("/api/v1/lists").status_code == 401
