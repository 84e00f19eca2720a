"""The suppression list as people manage it: the dashboard page (search, pages, add, remove with a
reason, CSV import all-or-nothing, streamed export) and the same through /api/v1/suppressions."""

from __future__ import annotations

import csv
import io

import pytest
from sqlalchemy import func, select

from mailapp.models import MailEventKind, Subscriber, Suppression, SuppressionReason
from mailapp.sending.suppression import (
    BouncePolicy,
    IncomingEvent,
    is_suppressed,
    record_mail_event,
    suppress_address,
)
from tests.factories import SubscriberFactory

PAGE = "/suppressions/"


def suppressed_emails(db) -> set[str]:
    db.session.expire_all()
    return set(db.session.scalars(select(Suppression.email).where(Suppression.lifted_at.is_(None))))


def upload(text: str | bytes, name: str = "list.csv") -> dict:
    data = text.encode() if isinstance(text, str) else text
    return {"file": (io.BytesIO(data), name)}


@pytest.fixture
def some_suppressions(db) -> None:
    for n in range(60):
        reason = SuppressionReason.HARD_BOUNCE if n % 3 == 0 else SuppressionReason.MANUAL
        suppress_address(f"user{n:02d}@example.com", reason, "smtp" if n % 3 == 0 else "dashboard")
    suppress_address("boss@corp.example", SuppressionReason.COMPLAINT, "arf")
    db.session.commit()


# --- the page ---------------------------------------------------------------------------------------------


def test_the_page_lists_newest_first_in_pages_and_searches_by_email_and_reason(
    auth_client, some_suppressions
) -> None:
    first = auth_client.get(PAGE).get_data(as_text=True)
    assert 'data-email="boss@corp.example"' in first
    assert first.count("data-email=") == 50
    assert "Page 1 of 2" in first
    second = auth_client.get(PAGE + "?page=2").get_data(as_text=True)
    assert second.count("data-email=") == 11
    found = auth_client.get(PAGE + "?q=CORP").get_data(as_text=True)
    assert found.count("data-email=") == 1
    hard = auth_client.get(PAGE + "?reason=hard_bounce").get_data(as_text=True)
    assert hard.count("data-email=") == 20
    assert auth_client.get(PAGE + "?q=%25&reason=nonsense").status_code == 200


def test_a_nav_link_leads_to_the_page(auth_client) -> None:
    assert f'href="{PAGE}"' in auth_client.get("/").get_data(as_text=True)


def test_adding_an_address_suppresses_it_without_changing_its_subscriber(auth_client, db) -> None:
    person = SubscriberFactory(email="ann@example.com")
    response = auth_client.post_form(PAGE, {"email": " Ann@Example.com ", "reason": "manual",
                                            "detail": "asked by phone"}, token_page=PAGE)
    assert response.status_code == 302
    row = db.session.scalar(select(Suppression))
    assert (row.email, row.reason, row.source, row.detail) == ("ann@example.com", "manual", "dashboard",
                                                               "asked by phone")
    assert db.session.get(Subscriber, person.id).status == "active"


def test_an_invalid_address_is_a_form_error_and_nothing_is_written(auth_client, db) -> None:
    response = auth_client.post_form(PAGE, {"email": "not an address", "reason": "manual"}, token_page=PAGE)
    assert response.status_code == 422
    assert "Invalid email address" in response.get_data(as_text=True)
    assert suppressed_emails(db) == set()


def test_removing_needs_a_reason_records_it_and_resubscribes_no_one(auth_client, db) -> None:
    person = SubscriberFactory(email="gone@example.com", status="bounced")
    suppression = suppress_address("gone@example.com", SuppressionReason.HARD_BOUNCE, "smtp")
    db.session.commit()
    url = f"{PAGE}{suppression.id}/lift"
    auth_client.post_form(url, {"reason": ""}, token_page=PAGE)
    assert is_suppressed("gone@example.com")
    response = auth_client.post_form(url, {"reason": "new mailbox, confirmed by phone"}, token_page=PAGE)
    assert response.status_code == 302
    assert not is_suppressed("gone@example.com")
    db.session.expire_all()
    row = db.session.get(Suppression, suppression.id)
    assert (row.lifted_reason, row.lifted_by) == ("new mailbox, confirmed by phone", "dashboard")
    assert db.session.get(Subscriber, person.id).status == "bounced"
    lifted_page = auth_client.get(PAGE + "?show=lifted").get_data(as_text=True)
    assert "new mailbox, confirmed by phone" in lifted_page
    assert auth_client.post_form(url, {"reason": "again"}, token_page=PAGE).status_code == 404


def test_importing_one_address_per_line_suppresses_them_all(auth_client, db) -> None:
    suppress_address("old@example.com", SuppressionReason.MANUAL, "dashboard")
    db.session.commit()
    response = auth_client.post_form(
        PAGE + "import", upload("a@example.com\r\n\r\nB@example.com\nold@example.com\na@example.com\n"),
        token_page=PAGE, content_type="multipart/form-data",
    )
    assert response.status_code == 302
    assert suppressed_emails(db) == {"a@example.com", "b@example.com", "old@example.com"}
    reasons = dict(db.session.execute(select(Suppression.email, Suppression.reason)).all())
    assert reasons == {"a@example.com": "import", "b@example.com": "import", "old@example.com": "manual"}


def test_an_import_with_a_bad_line_writes_nothing_and_names_the_line(auth_client, db) -> None:
    text = "name,Email\nAnn,ann@example.com\nBob,bob@@example.com\nCid,cid@example.com\n"
    response = auth_client.post_form(PAGE + "import", upload(text), token_page=PAGE,
                                     content_type="multipart/form-data")
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "nothing was imported" in html
    assert "Line 3:" in html
    assert suppressed_emails(db) == set()


@pytest.mark.parametrize(("content", "message"), [
    (b"\xff\xfe bad bytes", "not UTF-8"),
    (b"name,city\nAnn,Paris\n", "none is called email"),
    (b"a@example.com\x00\n", "NUL"),
    (b"x" * 2048, "larger than"),
])
def test_a_file_that_cannot_be_imported_is_refused(
    app, auth_client, db, monkeypatch, content, message
) -> None:
    monkeypatch.setitem(app.config, "SUPPRESSION_IMPORT_MAX_BYTES", 1024)
    response = auth_client.post_form(PAGE + "import", upload(content), token_page=PAGE,
                                     content_type="multipart/form-data")
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert suppressed_emails(db) == set()


def test_the_export_streams_every_suppression_in_force_and_imports_back(
    auth_client, db, some_suppressions
) -> None:
    suppress_address("=cmd@example.com", SuppressionReason.MANUAL, "dashboard", detail="=HYPERLINK(1)")
    db.session.commit()
    response = auth_client.get(PAGE + "export.csv")
    assert response.headers["Content-Type"].startswith("text/csv")
    text = response.get_data(as_text=True)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 62
    assert rows[0]["email"] == "user00@example.com"
    assert rows[0]["reason"] == "hard_bounce"
    assert "'=HYPERLINK(1)" in text  # formula guard
    db.session.execute(Suppression.__table__.delete())
    db.session.commit()
    back = "\n".join(line for line in text.splitlines() if "cmd@" not in line)
    response = auth_client.post_form(PAGE + "import", upload(back), token_page=PAGE,
                                     content_type="multipart/form-data")
    assert response.status_code == 302
    assert len(suppressed_emails(db)) == 61
    assert db.session.scalar(select(Suppression.reason).where(Suppression.email == "boss@corp.example")) == (
        "complaint"
    )


# --- the API -----------------------------------------------------------------------------------------------


def test_api_lists_searches_and_pages_suppressions(api, some_suppressions) -> None:
    body = api.get("/api/v1/suppressions?per_page=10&page=2").get_json()
    assert (body["total"], body["page"], body["per_page"], len(body["items"])) == (61, 2, 10, 10)
    assert set(body["items"][0]) == {"email", "reason", "source", "detail", "campaign_id", "created_at"}
    assert api.get("/api/v1/suppressions?q=corp").get_json()["items"][0]["email"] == "boss@corp.example"
    assert api.get("/api/v1/suppressions?reason=hard_bounce").get_json()["total"] == 20
    bad = api.get("/api/v1/suppressions?reason=nonsense")
    assert bad.status_code == 422
    assert bad.get_json()["error"]["details"][0]["field"] == "reason"


def test_api_adds_an_address_once_and_refuses_bad_input(api, db) -> None:
    created = api.post("/api/v1/suppressions", json={"email": "Ann@Example.com", "reason": "complaint"})
    assert created.status_code == 201
    assert created.get_json()["email"] == "ann@example.com"
    assert created.get_json()["source"] == "api"
    again = api.post("/api/v1/suppressions", json={"email": "ann@example.com", "reason": "manual"})
    assert (again.status_code, again.get_json()["reason"]) == (200, "complaint")
    cases = (({"email": "nope"}, "email"), ({"email": "b@example.com", "reason": "x"}, "reason"),
             ({"email": "b@example.com", "other": 1}, "other"), ({}, "email"))
    for payload, field in cases:
        response = api.post("/api/v1/suppressions", json=payload)
        assert response.status_code == 422, payload
        assert response.get_json()["error"]["details"][0]["field"] == field
    assert suppressed_emails(db) == {"ann@example.com"}


def test_api_gets_and_lifts_one_address_with_a_reason(api, db) -> None:
    person = SubscriberFactory(email="gone@example.com", status="bounced")
    suppress_address("gone@example.com", SuppressionReason.HARD_BOUNCE, "smtp")
    db.session.commit()
    assert api.get("/api/v1/suppressions/GONE@example.com").get_json()["reason"] == "hard_bounce"
    assert api.get("/api/v1/suppressions/other@example.com").status_code == 404
    missing_reason = api.delete("/api/v1/suppressions/gone@example.com")
    assert missing_reason.status_code == 422
    assert is_suppressed("gone@example.com")
    assert api.delete("/api/v1/suppressions/gone@example.com?reason=fixed").status_code == 204
    assert not is_suppressed("gone@example.com")
    assert api.get("/api/v1/suppressions/gone@example.com").status_code == 404
    assert api.delete("/api/v1/suppressions/gone@example.com", json={"reason": "again"}).status_code == 404
    assert db.session.get(Subscriber, person.id).status == "bounced"


def test_api_imports_all_or_nothing_and_exports_csv(api, db) -> None:
    bad = api.post("/api/v1/suppressions/import", data=upload("email\nok@example.com\nbad@\n"),
                   content_type="multipart/form-data")
    assert bad.status_code == 422
    details = bad.get_json()["error"]["details"]
    assert details[0]["field"] == "file"
    assert details[0]["line"] == 3
    assert suppressed_emails(db) == set()
    good = api.post("/api/v1/suppressions/import", data=upload("email,reason\nok@example.com,hard_bounce\n"),
                    content_type="multipart/form-data")
    assert good.get_json() == {"lines": 1, "added": 1, "already_suppressed": 0}
    exported = api.get("/api/v1/suppressions/export").get_data(as_text=True)
    assert exported.splitlines()[1].startswith("ok@example.com,hard_bounce,api,")
    assert api.post("/api/v1/suppressions/import").status_code == 422
    assert db.session.scalar(select(func.count()).select_from(Suppression)) == 1


# --- the subscriber's page ----------------------------------------------------------------------------------


def test_the_subscriber_page_shows_the_bounced_badge_the_suppression_and_the_events(auth_client, db) -> None:
    person = SubscriberFactory(email="gone@example.com")
    for kind, source, code, diagnostic in (
        (MailEventKind.SOFT_BOUNCE, "dsn", "4.2.2", "Mailbox full"),
        (MailEventKind.HARD_BOUNCE, "smtp", "5.1.1", "550 5.1.1 <gone@example.com>: user unknown"),
    ):
        event = IncomingEvent(kind, "gone@example.com", source, status_code=code, diagnostic=diagnostic)
        record_mail_event(event, BouncePolicy())
    db.session.commit()
    html = auth_client.get(f"/subscribers/{person.id}").get_data(as_text=True)
    assert "text-bg-warning" in html.split('data-testid="subscription"')[1].split("</dd>")[0]
    assert ">bounced<" in html
    events = html.split('data-testid="mail-events"')[1]
    assert 'data-testid="suppressed"' in events
    assert events.index('data-kind="hard_bounce"') < events.index('data-kind="soft_bounce"')
    assert "user unknown" in events
    assert "Mailbox full" in events
    listed = auth_client.get("/subscribers?status=bounced").get_data(as_text=True)
    assert "gone@example.com" in listed


def test_a_subscriber_without_events_says_none_recorded(auth_client, db) -> None:
    person = SubscriberFactory()
    html = auth_client.get(f"/subscribers/{person.id}").get_data(as_text=True)
    assert "None recorded." in html
    assert 'data-testid="suppressed"' not in html
