"""Reading never writes: no page or API endpoint that answers GET commits a change to any row, not
even on PostgreSQL where the delivery counts pile up rows while a campaign sends (a beat task folds
those, see reports.tasks.fold_delivery_counts). Tracking links are the exception by design: an open
or a click is recorded by a GET."""

from __future__ import annotations

import pytest
from sqlalchemy import event, func, select

from mailapp.domains.services import create_domain
from mailapp.extensions import db
from mailapp.layouts.images import store_image
from mailapp.models import (
    CampaignDeliveryCount,
    ConsentRecord,
    Delivery,
    Segment,
    SenderIdentity,
    SignupForm,
    SmtpRelay,
    SubscriberImport,
    SuppressionReason,
)
from mailapp.reports import figures as reports
from mailapp.sending import tokens
from mailapp.sending.suppression import suppress_address
from mailapp.signup import services as signup_services
from tests.campaign_fixtures import audience, make_delivery, make_ready_campaign
from tests.factories import SubscriberFactory

__all__ = ["audience"]

# Endpoints a GET may write from: tracking records opens and clicks; the dev inbox, the static files,
# sign-in and the OpenAPI document hold no database state worth a look.
WRITING_OR_STATELESS = ("tracking.", "devinbox.", "static", "bootstrap.", "auth.", "users.accept_invite")
# An API token's last use is stamped by design, at most once a minute per token.
TOKEN_USE_STAMP = "UPDATE api_tokens SET last_used_at"
# Exports of personal data are reads the audit log records.
AUDITED_READ = "INSERT INTO audit_entries"


@pytest.fixture
def committed_writes(db):
    """Every INSERT, UPDATE or DELETE that a commit made permanent. (A commit with nothing written, like
    the one that ends SQLite's idle transaction before a layout preview, is not a write.)"""
    seen: list[str] = []

    def note_write(connection, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip().startswith((TOKEN_USE_STAMP, AUDITED_READ)):
            return
        if statement.lstrip().split(" ", 1)[0].upper() in {"INSERT", "UPDATE", "DELETE", "WITH"}:
            connection.info.setdefault("writes", []).append(statement)

    def keep(connection) -> None:
        seen.extend(connection.info.pop("writes", []))

    def drop(connection) -> None:
        connection.info.pop("writes", None)

    listeners = [("before_cursor_execute", note_write), ("commit", keep), ("rollback", drop)]
    for name, listener in listeners:
        event.listen(db.engine, name, listener)
    yield seen
    for name, listener in listeners:
        event.remove(db.engine, name, listener)


def signup_ids(audience) -> dict[str, int | str]:
    """A signup form, a signup waiting for its confirmation, and a delivery's preference link."""
    form = SignupForm(slug="news", name="News", lists=[audience.lists[0]], altcha=True)
    db.session.add(form)
    db.session.flush()
    person = audience.active[0]
    consent = ConsentRecord(subscriber_id=person.id, form_id=form.id, email=person.email,
                            pending_list_ids=[audience.lists[0].id])
    db.session.add(consent)
    db.session.commit()
    delivery = db.session.scalars(select(Delivery)).first()
    return {
        "form_id": form.id, "slug": form.slug, "token": signup_services.confirmation_token(consent.id),
        "delivery_token": tokens.make_token("unsubscribe", delivery.id),
    }


def test_no_get_handler_commits_a_write(app, db, auth_client, api, audience, committed_writes, monkeypatch):
    monkeypatch.setattr(reports, "FOLD_COUNT_ROWS_FROM", 1)
    campaign = make_ready_campaign(audience, status="sending")
    for status in ("pending", "sent", "failed", "sent"):
        make_delivery(campaign.id, SubscriberFactory().id, status=status)
    record = SubscriberImport(list_id=audience.lists[0].id, filename="people.csv")
    db.session.add(record)
    sending_domain = create_domain("example.com", ed25519=True)
    suppress_address(audience.active[1].email, SuppressionReason.HARD_BOUNCE, "smtp")
    relay = SmtpRelay(name="relay", host="127.0.0.1")
    identity = SenderIdentity(name="identity", from_email="news@example.com")
    segment = Segment(name="active", rules={"field": "status", "op": "is", "value": "active"})
    db.session.add_all([record, relay, identity, segment])
    db.session.commit()
    image = store_image(b"\x89PNG\r\n\x1a\n" + b"\x00" * 16, "dot.png")
    db.session.commit()
    ids = {
        "campaign_id": campaign.id,
        "list_id": audience.lists[0].id,
        "layout_id": audience.layout.id,
        "subscriber_id": audience.active[0].id,
        "import_id": record.id,
        "domain_id": sending_domain.id,
        "email": audience.active[1].email,
        "relay_id": relay.id,
        "identity_id": identity.id,
        "segment_id": segment.id,
        # A layout image, so that its public URL (/media/<id>-<digest>.<ext>) is read too.
        "image_id": image.id,
        "digest": image.digest,
        "extension": image.extension,
        **signup_ids(audience),
    }
    count_rows = select(func.count()).select_from(CampaignDeliveryCount)
    rows_before = db.session.scalar(count_rows)
    db.session.commit()
    committed_writes.clear()

    visited = []
    for rule in app.url_map.iter_rules():
        if "GET" not in rule.methods or rule.endpoint.startswith(WRITING_OR_STATELESS):
            continue
        url = rule.rule
        for name in rule.arguments:
            url = url.replace(f"<int:{name}>", str(ids[name])).replace(f"<{name}>", str(ids[name]))
        client = api if rule.rule.startswith("/api/") else auth_client
        response = client.get(url)
        response.close()
        assert response.status_code in (200, 302), (url, response.status_code)
        assert committed_writes == [], url
        visited.append(url)

    assert f"/campaigns/{campaign.id}/progress.json" in visited
    assert f"/api/v1/campaigns/{campaign.id}/report" in visited
    assert f"/s/confirm/{ids['token']}" in visited
    assert f"/p/{ids['delivery_token']}" in visited
    db.session.expire_all()
    assert db.session.scalar(count_rows) == rows_before


def test_beat_folds_the_delivery_counts_that_pages_no_longer_fold(app):
    from mailapp.reports.tasks import fold_delivery_counts

    celery = app.extensions["celery"]
    scheduled = {entry["task"] for entry in celery.conf.beat_schedule.values()}
    assert fold_delivery_counts.name in scheduled
    assert fold_delivery_counts.name in celery.tasks
