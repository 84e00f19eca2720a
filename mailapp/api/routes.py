"""The API blueprint: its URL prefix and the bearer-token check in front of every endpoint; the
endpoint modules beside it add their routes to it."""

from __future__ import annotations

from flask import Blueprint, g, jsonify, request

from mailapp.auth.services import user_for_token
from mailapp.errors import error_body

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
    user = user_for_token(token.strip()) if scheme.lower() == "bearer" and token.strip() else None
    if user is None:
        body = error_body("unauthorized", "A valid API token is required: Authorization: Bearer <token>.")
        return jsonify(body), 401, {"WWW-Authenticate": "Bearer"}
    g.api_user = user
    return None

