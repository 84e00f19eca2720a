"""API: the public signup endpoint for websites posting with their own code (no token), and resending
a subscriber's confirmation (token). CORS answers only the origins a signup form lists."""

from __future__ import annotations

from typing import Any

from flask import Response, current_app, jsonify, request
from sqlalchemy import select

from mailapp.api.common import json_body, refuse_unknown_fields
from mailapp.api.routes import bp
from mailapp.errors import NotFoundError, ValidationError, error_body
from mailapp.extensions import db
from mailapp.models import SignupForm, Subscriber
from mailapp.sending.tasks import commit_and_send
from mailapp.signup import mailer, proof_of_work, services
from mailapp.signup.routes import queue_confirmation

FIELDS = {"form", "email", "name", "lists", "attributes", services.HONEYPOT_FIELD, proof_of_work.FIELD}
CORS_MAX_AGE = "600"


def _origin_allowed(origin: str, form: SignupForm | None) -> bool:
    if form is not None:
        return origin.lower() in (form.allowed_origins or [])
    # A preflight names no form: any form's origin may ask, each POST is then checked for its own form.
    return any(
        origin.lower() in (row or []) for row in db.session.scalars(select(SignupForm.allowed_origins))
    )


def _cors(response: Response, origin: str) -> Response:
    response.headers["Access-Control-Allow-Origin"] = origin
    response.headers["Vary"] = "Origin"
    return response


@bp.route("/public/subscribe", methods=["OPTIONS"])
def api_public_subscribe_preflight():
    origin = request.headers.get("Origin", "")
    if not origin or not _origin_allowed(origin, None):
        return jsonify(error_body("origin_not_allowed", "This origin may not post signups.")), 403
    response = Response(status=204)
    response.headers["Access-Control-Allow-Methods"] = "POST, OPTIONS"
    response.headers["Access-Control-Allow-Headers"] = "Content-Type"
    response.headers["Access-Control-Max-Age"] = CORS_MAX_AGE
    return _cors(response, origin)


def _given() -> dict[str, Any]:
    limit = int(current_app.config["SIGNUP_MAX_BYTES"])
    if request.is_json:
        return json_body(max_bytes=limit)
    request.max_content_length = limit
    values: dict[str, Any] = {key: request.form.get(key) for key in request.form if key != "lists"}
    values["lists"] = request.form.getlist("lists")
    attributes = {key: values.pop(key) for key in list(values) if key not in FIELDS}
    values["attributes"] = attributes
    return values


def _list_ids(raw: Any) -> list[int]:
    if raw is None:
        return []
    if not isinstance(raw, list) or len(raw) > 100:
        raise ValidationError("lists must be an array of list ids.", [{"field": "lists"}])
    ids = []
    for value in raw:
        if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 10:
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**31:
            raise ValidationError("lists must be an array of list ids.", [{"field": "lists"}])
        ids.append(value)
    return ids


# OPTIONS is the preflight view above, not Flask's automatic answer.
@bp.post("/public/subscribe", provide_automatic_options=False)
def api_public_subscribe():
    """A signup through a form, as its hosted page would take it. 202 whatever became of it (the
    answer never tells whether the address is known); 422 for bad input, 429 over the rate limit."""
    origin = request.headers.get("Origin", "")
    data = _given()
    refuse_unknown_fields(data, FIELDS, "a signup")
    slug = data.get("form")
    if not isinstance(slug, str) or not slug:
        raise ValidationError("Name the signup form (its address).", [{"field": "form"}])
    form = db.session.scalar(select(SignupForm).where(SignupForm.slug == slug))
    if form is None:
        raise NotFoundError("No such signup form.", [{"field": "form"}])
    if origin and not _origin_allowed(origin, form):
        return jsonify(error_body("origin_not_allowed", "This origin may not post to this form.")), 403
    attributes = data.get("attributes") or {}
    if not isinstance(attributes, dict):
        raise ValidationError("attributes must be an object.", [{"field": "attributes"}])
    honeypot = data.get(services.HONEYPOT_FIELD) or ""
    outcome = services.submit_signup(
        form,
        services.SignupInput(
            email=data.get("email"),
            name=data.get("name") or "",
            list_ids=_list_ids(data.get("lists")),
            attributes=attributes,
            honeypot=honeypot if isinstance(honeypot, str) else "filled",
            altcha=data.get(proof_of_work.FIELD),
            ip=request.remote_addr,
            user_agent=request.headers.get("User-Agent", ""),
        ),
    )
    commit_and_send(queue_confirmation(outcome))
    response = jsonify({"status": "accepted", "message": services.ACCEPTED})
    response.status_code = 202
    return _cors(response, origin) if origin else response


@bp.after_request
def cors_on_signup_errors(response: Response) -> Response:
    """Browsers show a cross-origin page its error answers (422, 429) only with the CORS header."""
    origin = request.headers.get("Origin", "")
    if (
        request.endpoint == "api.api_public_subscribe"
        and origin
        and response.status_code >= 400
        and response.status_code != 403
        and "Access-Control-Allow-Origin" not in response.headers
    ) and _origin_allowed(origin, None):
        _cors(response, origin)
    return response


@bp.post("/subscribers/<int:subscriber_id>/resend-confirmation")
def api_resend_confirmation(subscriber_id: int):
    """Email the subscriber's newest signup waiting for confirmation its link again."""
    if db.session.get(Subscriber, subscriber_id) is None:
        raise NotFoundError(f"Subscriber {subscriber_id} not found.")
    consent = services.latest_pending_consent(subscriber_id)
    queued = mailer.queue_confirmation(consent.id)
    commit_and_send([queued])
    # Queued: the worker sends it; what became of it is in the subscriber's system_messages.
    return jsonify({"queued": queued is not None, "system_message_id": queued.id if queued else None}), 202
