"""The providers' webhook endpoints, POST /webhooks/<provider>: public, no session, no CSRF token.

Outside /api/v1 on purpose: the API is ours (bearer tokens, our request shapes, described by our
OpenAPI document), while these take each provider's own payloads, authenticated by the provider's own
signature or credentials. Errors still come in the API's JSON shape (mailapp/web.py): 404 while a
provider is not configured, 401 for a bad signature, credentials or timestamp, 403 for a verified
request that is not ours (an SNS topic not configured, a certificate URL off AWS), 400 for a payload
that is not the provider's documented shape, 413 beyond WEBHOOK_MAX_BYTES. A request is recorded whole
or not at all (200), or staged whole for a task when it is large (202), so a provider that retries
after an error loses nothing."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app, jsonify, request
from flask.blueprints import BlueprintSetupState

from mailapp.extensions import db
from mailapp.webhooks import mailgun, postmark, sendgrid, services, ses
from mailapp.webhooks.events import ProviderEvent
from mailapp.webhooks.tasks import RECORD_BATCH_TASK

bp = Blueprint("webhooks", __name__)

Answer = Response | tuple[Response, int]

log = logging.getLogger(__name__)


@bp.record_once
def _check_settings(state: BlueprintSetupState) -> None:
    """A SendGrid key or SNS host pattern that cannot work stops the app at start, not every webhook."""
    services.check_settings(state.app.config)


@bp.after_request
def _challenge(response: Response) -> Response:
    # RFC 9110: a 401 names the scheme it wants; only Postmark's endpoint takes basic auth.
    if response.status_code == 401 and request.endpoint == "webhooks.postmark_bounce":
        response.headers["WWW-Authenticate"] = postmark.REALM
    return response


def _body() -> bytes:
    # Read no further than the limit: werkzeug answers 413 from the Content-Length or mid-stream.
    request.max_content_length = int(current_app.config["WEBHOOK_MAX_BYTES"])
    return request.get_data(cache=False)


def _take(provider: str, events: list[ProviderEvent]) -> Answer:
    """Record a few events at once (200); stage a large batch for a task (202), so the provider has
    its answer in milliseconds whatever the batch (services explains why a batch is never lost)."""
    if len(events) <= int(current_app.config["WEBHOOK_INLINE_EVENTS"]):
        recorded = services.record(events)
        db.session.commit()
        return jsonify({"received": len(events), "recorded": recorded})
    batch_id = services.stage(provider, events)
    db.session.commit()
    try:
        current_app.extensions["celery"].send_task(RECORD_BATCH_TASK, (batch_id,))
    except Exception:
        # The batch is committed: beat's sweep records it within minutes. The provider must not
        # send it again for a broker hiccup.
        log.exception("could not queue webhook batch %s", batch_id)
    return jsonify({"received": len(events), "queued": True}), 202


@bp.post("/webhooks/ses")
def ses_notification() -> Answer:
    settings = services.sns_settings(current_app.config)
    message = ses.verify(_body(), settings)
    if message.type == ses.SUBSCRIPTION_CONFIRMATION:
        ses.confirm_subscription(message, settings)
    if message.type != ses.NOTIFICATION:
        return jsonify({"received": 0, "recorded": 0})
    events = list(ses.ses_events(message))
    return _take(ses.PROVIDER, events)


@bp.post("/webhooks/sendgrid")
def sendgrid_events() -> Answer:
    settings = services.sendgrid_settings(current_app.config)
    raw = _body()
    sendgrid.verify(
        raw,
        request.headers.get(sendgrid.SIGNATURE_HEADER, ""),
        request.headers.get(sendgrid.TIMESTAMP_HEADER, ""),
        settings,
    )
    events = list(sendgrid.events(raw))
    return _take(sendgrid.PROVIDER, events)


@bp.post("/webhooks/postmark")
def postmark_bounce() -> Answer:
    settings = services.postmark_settings(current_app.config)
    postmark.check_credentials(request.headers.get("Authorization", ""), settings)
    events = list(postmark.events(_body()))
    return _take(postmark.PROVIDER, events)


@bp.post("/webhooks/mailgun")
def mailgun_event() -> Answer:
    settings = services.mailgun_settings(current_app.config)
    signed = mailgun.verify(_body(), settings)
    events = list(mailgun.events(signed))
    services.claim_replay_token(
        mailgun.PROVIDER, signed.token, signed.signed_at, settings.replay_window_seconds
    )
    return _take(mailgun.PROVIDER, events)
