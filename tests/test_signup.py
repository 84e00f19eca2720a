"""Signup forms, double opt-in and the preference center: the hosted form and public API, honeypot,
rate limits, CORS, the answer that never reveals an address, confirmation links (GET asks, POST
confirms, links expire), resend, welcome emails, consent records, and the preference center."""

from __future__ import annotations

import re
import time

import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from sqlalchemy import func, select

from mailapp.extensions import db
from mailapp.models import (
    AuditEntry,
    Campaign,
    ConsentRecord,
    Delivery,
    SignupForm,
    Subscriber,
    Suppression,
    SystemMessage,
)
from mailapp.sending import tokens
from mailapp.sending.snapshot import snapshot_recipients
from mailapp.signup import services
from tests.factories import CampaignFactory, LayoutFactory, SubscriberFactory, SubscriberListFactory
from tests.tracking_fixtures import make_campaign, make_delivery

CONFIRM_LINK = re.compile(r"http://mailapp\.test(/s/confirm/[A-Za-z0-9_.-]+)")
ORIGIN = "https://www.example.org"


def make_form(*, double_opt_in: bool = True, choosable: bool = False, lists=None, **fields) -> SignupForm:
    lists = lists or [SubscriberListFactory(double_opt_in=double_opt_in)]
    form = SignupForm(
        slug=fields.pop("slug", "news"),
        name="News",
        title="Join our news",
        consent_text="I agree to emails.",
        lists=lists,
        lists_choosable=choosable,
        allowed_origins=[ORIGIN],
        ask_name=True,
        fields=fields.pop("fields", []),
        **fields,
    )
    db.session.add(form)
    db.session.commit()
    return form


def sign_up(client, slug: str = "news", **data):
    data.setdefault("email", "ana@example.com")
    return client.post(
        f"/s/{slug}",
        data=data,
        headers={"User-Agent": "TestBrowser/1.0"},
        environ_base={"REMOTE_ADDR": "203.0.113.77"},
    )


def subscriber(email: str = "ana@example.com") -> Subscriber | None:
    db.session.expire_all()
    return db.session.scalar(select(Subscriber).where(Subscriber.email == email))


def system_messages() -> list[SystemMessage]:
    db.session.expire_all()
    return list(db.session.scalars(select(SystemMessage).order_by(SystemMessage.id)))


def consent_count() -> int:
    return db.session.scalar(select(func.count()).select_from(ConsentRecord))


def mail_arrives(smtp_server, count: int):
    """The first `count` messages the worker sends. The test's transaction ends first: on SQLite every
    transaction takes the write lock (BEGIN IMMEDIATE), and holding it would starve the worker."""
    db.session.rollback()
    return smtp_server.wait_for(count)


def confirm_path(smtp_server) -> str:
    (message,) = mail_arrives(smtp_server, 1)
    found = CONFIRM_LINK.search(message.html())
    assert found is not None, message.html()
    return found.group(1)


# --- hosted form ------------------------------------------------------------------------------------


def test_the_hosted_page_shows_the_form_with_its_texts_and_a_honeypot(client):
    make_form(intro="Weekly, no spam.")
    page = client.get("/s/news")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "Join our news" in html
    assert "Weekly, no spam." in html
    assert "I agree to emails." in html
    assert 'name="website"' in html
    assert "cdn" not in html.lower()
    assert 'name="viewport"' in html


def test_a_single_opt_in_signup_joins_at_once_and_records_consent(client, smtp_server):
    form = make_form(double_opt_in=False)
    response = sign_up(client, name="Ana")
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/s/news/thanks")
    found = subscriber()
    assert found.status == "active"
    assert found.name == "Ana"
    assert [row.id for row in found.lists] == [form.lists[0].id]
    consent = db.session.scalar(select(ConsentRecord))
    assert consent.form_id == form.id
    assert consent.consent_text == "I agree to emails."
    assert consent.ip == "203.0.113.0"
    assert consent.user_agent == "TestBrowser/1.0"
    assert consent.created_at is not None
    assert system_messages() == []


def test_a_form_with_a_redirect_sends_the_browser_to_the_site(client):
    make_form(double_opt_in=False, redirect_url="https://www.example.org/thanks")
    assert sign_up(client).headers["Location"] == "https://www.example.org/thanks"


def test_a_filled_honeypot_is_answered_like_a_signup_and_dropped(client, smtp_server):
    make_form()
    response = sign_up(client, website="http://spam.example")
    assert response.status_code == 303
    assert subscriber() is None
    assert consent_count() == 0
    assert system_messages() == []


def test_a_bad_address_is_a_form_error_and_writes_nothing(client):
    make_form()
    response = sign_up(client, email="not-an-address")
    assert response.status_code == 422
    assert 'data-testid="error"' in response.get_data(as_text=True)
    assert consent_count() == 0


def test_form_attributes_are_typed_and_only_the_asked_ones_kept(client):
    make_form(double_opt_in=False, fields=[{"name": "age", "type": "number", "label": "Age"}])
    assert sign_up(client, email="ana@example.com", age="41", extra="x").status_code == 303
    assert subscriber().attributes == {"age": 41}
    assert sign_up(client, email="bo@example.com", age="old").status_code == 422
    assert subscriber("bo@example.com") is None


def test_a_date_field_takes_iso_dates_only(client):
    make_form(double_opt_in=False, fields=[{"name": "birthday", "type": "date", "label": "Birthday"}])
    assert sign_up(client, birthday="1990-02-28").status_code == 303
    assert subscriber().attributes == {"birthday": "1990-02-28"}
    response = sign_up(client, email="bo@example.com", birthday="next tuesday")
    assert response.status_code == 422
    assert "Birthday must be a date" in response.get_data(as_text=True)


# --- double opt-in ----------------------------------------------------------------------------------


def test_a_double_opt_in_signup_waits_for_the_button_and_a_get_changes_nothing(
    app, client, smtp_server, celery_worker
):
    form = make_form()
    sign_up(client, name="Ana")
    found = subscriber()
    assert found.status == "unconfirmed"
    assert list(found.lists) == []
    path = confirm_path(smtp_server)
    page = client.get(path)
    assert page.status_code == 200
    assert 'method="post"' in page.get_data(as_text=True)
    assert subscriber().status == "unconfirmed"
    assert app.test_client(use_cookies=False).post(path).status_code == 200
    found = subscriber()
    assert found.status == "active"
    assert [row.id for row in found.lists] == [form.lists[0].id]
    assert db.session.scalar(select(ConsentRecord)).confirmed_at is not None


def test_an_unconfirmed_subscriber_is_never_in_a_snapshot(client):
    subscriber_list = SubscriberListFactory(double_opt_in=True)
    make_form(lists=[subscriber_list])
    sign_up(client)
    found = subscriber()
    # Even put on the list by hand, the status keeps them out.
    found.lists.append(subscriber_list)
    active = SubscriberFactory(lists=[subscriber_list])
    campaign = CampaignFactory(lists=[subscriber_list])
    db.session.commit()
    assert snapshot_recipients(campaign.id) == 1
    assert db.session.scalars(select(Delivery.email)).all() == [active.email]


def test_an_address_already_subscribed_gets_the_same_answer_and_nothing_new(
    client, smtp_server, celery_worker
):
    form = make_form()
    known = SubscriberFactory(email="ana@example.com", lists=[form.lists[0]])
    fresh = sign_up(client, email="new@example.com")
    again = sign_up(client)
    assert again.status_code == fresh.status_code == 303
    assert again.headers["Location"] == fresh.headers["Location"]
    assert len(mail_arrives(smtp_server, 1)) == 1  # the new address's confirmation only
    assert [(row.email, row.kind) for row in system_messages()] == [("new@example.com", "confirmation")]
    assert [message.to for message in smtp_server.messages] == ["new@example.com"]
    assert subscriber().name == known.name
    assert consent_count() == 1


def test_an_unsubscribed_address_must_confirm_again_even_for_a_single_opt_in_list(
    client, smtp_server, celery_worker
):
    form = make_form(double_opt_in=False)
    SubscriberFactory(email="ana@example.com", status="unsubscribed")
    sign_up(client)
    assert subscriber().status == "unsubscribed"
    assert list(subscriber().lists) == []
    client.post(confirm_path(smtp_server))
    assert subscriber().status == "active"
    assert [row.id for row in subscriber().lists] == [form.lists[0].id]


def test_a_suppressed_address_is_sent_nothing_and_told_the_same(client, smtp_server):
    make_form()
    db.session.add(Suppression(email="ana@example.com", reason="complaint", source="test"))
    db.session.commit()
    response = sign_up(client)
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/s/news/thanks")
    assert subscriber() is None
    assert system_messages() == []


def test_an_expired_confirmation_link_confirms_nothing(app, client, smtp_server, celery_worker):
    make_form()
    sign_up(client)
    mail_arrives(smtp_server, 1)
    consent = db.session.scalar(select(ConsentRecord))

    class Past(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - (app.config["CONFIRM_LINK_TTL_HOURS"] * 3600 + 60)

    old = URLSafeTimedSerializer(app.config["SECRET_KEY"], salt=services.CONFIRM_SALT, signer=Past)
    path = f"/s/confirm/{old.dumps(consent.id)}"
    assert client.get(path).status_code == 404
    response = client.post(path)
    assert response.status_code == 404
    assert "expired" in response.get_data(as_text=True)
    assert subscriber().status == "unconfirmed"


def test_a_forged_confirmation_link_confirms_nothing(client):
    make_form()
    sign_up(client)
    assert client.post("/s/confirm/MQ.forged.token").status_code == 404
    assert subscriber().status == "unconfirmed"


def test_resend_from_the_dashboard_and_the_api_sends_the_link_again(
    auth_client, api, smtp_server, celery_worker
):
    make_form()
    sign_up(auth_client)
    mail_arrives(smtp_server, 1)
    found = subscriber()
    assert 'data-testid="resend-confirmation"' in auth_client.get(f"/subscribers/{found.id}").get_data(
        as_text=True
    )
    response = auth_client.post_form(f"/subscribers/{found.id}/resend-confirmation")
    assert response.status_code == 302
    mail_arrives(smtp_server, 2)
    answer = api.post(f"/api/v1/subscribers/{found.id}/resend-confirmation")
    assert answer.status_code == 202
    assert answer.get_json() == {"queued": True, "system_message_id": system_messages()[-1].id}
    messages = mail_arrives(smtp_server, 3)
    assert {CONFIRM_LINK.search(message.html()).group(1) for message in messages}


def test_resend_for_a_confirmed_subscriber_is_a_404(api):
    found = SubscriberFactory()
    db.session.commit()
    response = api.post(f"/api/v1/subscribers/{found.id}/resend-confirmation")
    assert response.status_code == 404


def test_the_welcome_email_follows_the_confirmation_in_the_lists_layout(client, smtp_server, celery_worker):
    layout = LayoutFactory(html="<html><body><h1>Hi {{ subscriber.email }}</h1>{{ message }}</body></html>")
    subscriber_list = SubscriberListFactory(double_opt_in=True, welcome_layout_id=layout.id)
    make_form(lists=[subscriber_list])
    sign_up(client)
    client.post(confirm_path(smtp_server))
    welcome = mail_arrives(smtp_server, 2)[1]
    assert welcome.message["Subject"] == f"Welcome to {subscriber_list.name}"
    assert "Hi ana@example.com" in welcome.html()


def test_the_confirmation_uses_the_lists_chosen_layout(client, smtp_server, celery_worker):
    layout = LayoutFactory(html="<html><body><p>ACME header</p>{{ message }}</body></html>")
    make_form(lists=[SubscriberListFactory(double_opt_in=True, confirmation_layout_id=layout.id)])
    sign_up(client)
    (message,) = mail_arrives(smtp_server, 1)
    assert "ACME header" in message.html()
    assert CONFIRM_LINK.search(message.text())


# --- rate limits ------------------------------------------------------------------------------------


@pytest.fixture
def low_limits(app):
    saved = app.config["SIGNUP_MAX_PER_ADDRESS"], app.config["SIGNUP_MAX_PER_FORM"]
    app.config["SIGNUP_MAX_PER_ADDRESS"], app.config["SIGNUP_MAX_PER_FORM"] = 2, 3
    yield
    app.config["SIGNUP_MAX_PER_ADDRESS"], app.config["SIGNUP_MAX_PER_FORM"] = saved


def test_signups_per_address_are_rate_limited(client, low_limits):
    make_form(double_opt_in=False)
    assert [sign_up(client).status_code for _ in range(3)] == [303, 303, 429]


def test_signups_per_form_are_rate_limited(client, low_limits):
    make_form(double_opt_in=False)
    codes = [sign_up(client, email=f"p{n}@example.com").status_code for n in range(4)]
    assert codes == [303, 303, 303, 429]
    assert subscriber("p3@example.com") is None


# --- public API and CORS ----------------------------------------------------------------------------


def test_the_public_api_takes_a_json_signup_from_an_allowed_origin(client):
    form = make_form(double_opt_in=False)
    response = client.post(
        "/api/v1/public/subscribe",
        json={"form": "news", "email": "ana@example.com", "name": "Ana"},
        headers={"Origin": ORIGIN},
    )
    assert response.status_code == 202
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert [row.id for row in subscriber().lists] == [form.lists[0].id]


def test_the_public_api_takes_a_form_body_without_a_token(client):
    make_form(double_opt_in=False)
    response = client.post("/api/v1/public/subscribe", data={"form": "news", "email": "ana@example.com"})
    assert response.status_code == 202
    assert subscriber().status == "active"


def test_the_public_api_refuses_an_origin_the_form_does_not_list(client):
    make_form(double_opt_in=False)
    response = client.post(
        "/api/v1/public/subscribe",
        json={"form": "news", "email": "ana@example.com"},
        headers={"Origin": "https://evil.example"},
    )
    assert response.status_code == 403
    assert "Access-Control-Allow-Origin" not in response.headers
    assert response.get_json()["error"]["code"] == "origin_not_allowed"
    assert subscriber() is None


def test_a_preflight_is_answered_for_an_allowed_origin_only(client):
    make_form()
    allowed = client.options(
        "/api/v1/public/subscribe",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert allowed.status_code == 204
    assert allowed.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "POST" in allowed.headers["Access-Control-Allow-Methods"]
    assert "Content-Type" in allowed.headers["Access-Control-Allow-Headers"]
    refused = client.options(
        "/api/v1/public/subscribe",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert refused.status_code == 403
    assert "Access-Control-Allow-Origin" not in refused.headers


def test_the_public_api_names_the_bad_field(client):
    make_form()
    response = client.post(
        "/api/v1/public/subscribe", json={"form": "news", "email": "nope"}, headers={"Origin": ORIGIN}
    )
    assert response.status_code == 422
    assert response.get_json()["error"]["details"][0]["field"] == "email"
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN


# --- preference center ------------------------------------------------------------------------------


def preference_setup():
    public_a = SubscriberListFactory(name="Weekly", public=True)
    public_b = SubscriberListFactory(name="Offers", public=True)
    private = SubscriberListFactory(name="VIP", public=False)
    person = SubscriberFactory(name="Ana", lists=[public_a, private])
    delivery = make_delivery(make_campaign(), subscriber=person)
    db.session.commit()
    return f"/p/{tokens.make_token('unsubscribe', delivery.id)}", person.id, public_a, public_b, private


def lists_of(subscriber_id: int) -> set[str]:
    db.session.expire_all()
    return {row.name for row in db.session.get(Subscriber, subscriber_id).lists}


def test_the_preference_center_get_shows_public_lists_and_changes_nothing(client):
    path, person_id, *_ = preference_setup()
    page = client.get(path)
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "Weekly" in html
    assert "Offers" in html
    assert "VIP" not in html
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert lists_of(person_id) == {"Weekly", "VIP"}


def test_the_preference_center_post_updates_name_and_public_lists_only(app, client):
    path, person_id, _, public_b, _ = preference_setup()
    response = app.test_client(use_cookies=False).post(
        path, data={"name": "Ana Maria", "lists": [str(public_b.id)], "action": "save"}
    )
    assert response.status_code == 200
    assert lists_of(person_id) == {"Offers", "VIP"}
    assert db.session.get(Subscriber, person_id).name == "Ana Maria"


def test_the_preference_center_unsubscribes_from_everything(client):
    path, person_id, *_ = preference_setup()
    client.post(path, data={"name": "Ana", "action": "unsubscribe"})
    db.session.expire_all()
    assert db.session.get(Subscriber, person_id).status == "unsubscribed"


def test_a_forged_preference_link_is_refused(client):
    preference_setup()
    assert client.get("/p/1-1-1.AAAAAAAAAAAAAAAAAAAA").status_code == 404
    assert client.post("/p/1-1-1.AAAAAAAAAAAAAAAAAAAA", data={"action": "unsubscribe"}).status_code == 404


def test_preferences_url_in_a_layout_leads_to_the_recipients_preference_center(client):
    from mailapp.sending.compose import campaign_source
    from mailapp.sending.render import Recipient, renderer_for

    layout = LayoutFactory(
        html='<html><body>{{ message }}<a href="{{ preferences_url }}">Prefs</a></body></html>'
    )
    campaign = make_campaign(layout=layout, track_clicks=False)
    delivery = make_delivery(campaign)
    renderer = renderer_for(campaign_source(db.session.get(Campaign, campaign.id)), "http://mailapp.test")
    recipient = Recipient(delivery_id=delivery.id, email=delivery.email, subscriber_id=delivery.subscriber_id)
    for fast in (True, False):
        html = renderer.render(recipient, fast=fast, strings=True).html
        path = re.search(r'href="http://mailapp\.test(/p/[^"]+)"', html).group(1)
        assert client.get(path).status_code == 200


# --- dashboard --------------------------------------------------------------------------------------


def form_fields(list_id: int, **overrides) -> dict:
    fields = {
        "name": "Garden news",
        "slug": "garden",
        "lists": [str(list_id)],
        "ask_name": "y",
        "fields": "city:text:City\nage:number:Age",
        "title": "Join",
        "intro": "",
        "consent_text": "I agree.",
        "button_text": "Join",
        "thank_you_text": "Thanks!",
        "redirect_url": "",
        "allowed_origins": "https://www.example.org/\nhttps://shop.example.org",
    }
    return {**fields, **overrides}


def test_an_editor_creates_a_form_and_gets_its_snippet(auth_client):
    subscriber_list = SubscriberListFactory()
    db.session.commit()
    response = auth_client.post_form("/signup-forms/new", form_fields(subscriber_list.id))
    assert response.status_code == 302
    form = db.session.scalar(select(SignupForm))
    assert form.slug == "garden"
    assert [row.id for row in form.lists] == [subscriber_list.id]
    assert form.fields == [
        {"name": "city", "type": "text", "label": "City"},
        {"name": "age", "type": "number", "label": "Age"},
    ]
    assert form.allowed_origins == ["https://www.example.org", "https://shop.example.org"]
    page = auth_client.get(f"/signup-forms/{form.id}").get_data(as_text=True)
    # The snippet is shown as text to copy, never as markup of the dashboard.
    assert "&lt;form method=&#34;post&#34; action=&#34;http://mailapp.test/s/garden&#34;&gt;" in page
    assert "Garden news" in auth_client.get("/signup-forms").get_data(as_text=True)
    assert "signup_form.save" in db.session.scalars(select(AuditEntry.action)).all()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"fields": "email:text:Email"}, "cannot be an attribute name"),
        ({"fields": "city:colour:City"}, "the type must be one of"),
        ({"allowed_origins": "www.example.org"}, "is not an origin"),
        ({"redirect_url": "javascript:alert(1)"}, "must start with https://"),
        ({"slug": "Not A Slug"}, "Lower-case letters, digits and dashes."),
    ],
)
def test_a_bad_form_setting_is_named_and_nothing_is_saved(auth_client, overrides, message):
    subscriber_list = SubscriberListFactory()
    db.session.commit()
    response = auth_client.post_form("/signup-forms/new", form_fields(subscriber_list.id, **overrides))
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(SignupForm)) == 0


def test_two_forms_cannot_share_an_address(auth_client):
    subscriber_list = SubscriberListFactory()
    make_form(slug="garden", lists=[subscriber_list])
    response = auth_client.post_form("/signup-forms/new", form_fields(subscriber_list.id))
    assert response.status_code == 422
    assert "Another form has this address." in response.get_data(as_text=True)


def test_a_lists_opt_in_settings_are_saved(auth_client):
    subscriber_list = SubscriberListFactory()
    layout = LayoutFactory()
    db.session.commit()
    response = auth_client.post_form(
        f"/lists/{subscriber_list.id}/opt-in",
        {
            "double_opt_in": "y",
            "public": "y",
            "confirmation_layout_id": str(layout.id),
            "welcome_layout_id": "0",
        },
    )
    assert response.status_code == 302
    db.session.expire_all()
    assert subscriber_list.double_opt_in is True
    assert subscriber_list.public is True
    assert subscriber_list.confirmation_layout_id == layout.id
    assert subscriber_list.welcome_layout_id is None
