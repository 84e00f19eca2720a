"""The JSON API's blueprint and its bearer-token check: a live token (not revoked, not expired, its
user active) whose role, capped by its user's current role, is enough for the endpoint
(mailapp/auth/permissions.py); 401 without one, 403 when the role is too low."""

from __future__ import annotations

from flask import Blueprint, current_app, g, jsonify, request

from mailapp.audit.services import act_as
from mailapp.auth.permissions import need_for
from mailapp.auth.services import effective_token_role, live_api_token, note_token_use
from mailapp.errors import error_body
from mailapp.extensions import db
from mailapp.web import refusal

API_PREFIX = "/api/v1"
# The public signup endpoint takes signups from anyone, as a hosted form does (rate-limited, CORS only
# from the forms' origins).
PUBLIC_ENDPOINTS = frozenset(
    {"api.openapi_json", "api.api_public_subscribe", "api.api_public_subscribe_preflight"}
)

bp = Blueprint("api", __name__)


@bp.before_request
def require_bearer_token():
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    api_token = live_api_token(token.strip()) if scheme.lower() == "bearer" and token.strip() else None
    if api_token is None:
        body = error_body(
            "unauthorized",
            "A valid API token is required: Authorization: Bearer <token> (not revoked, not expired).",
        )
        return jsonify(body), 401, {"WWW-Authenticate": "Bearer"}
    if note_token_use(api_token):
        db.session.commit()
    role = effective_token_role(api_token)
    endpoint = request.endpoint or ""
    need = need_for(endpoint, request.method, current_app.view_functions.get(endpoint))
    if need is None or not need.allows(role, can_export=api_token.user.can_export):
        raise refusal(role, need, endpoint)
    g.api_user = api_token.user
    g.api_token = api_token
    act_as(api_token.user, token_name=api_token.name or f"token {api_token.id}")
    return None
