"""App-wide web wiring: the login loader, security headers, error pages, template helpers, and the
streamed CSV download that pages and the API share."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from flask import (
    Flask,
    Response,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from mailapp.audit.services import act_as
from mailapp.auth.permissions import READ_METHODS, Need, need_for
from mailapp.errors import ForbiddenError, MailappError, ValidationError, error_body, field_problem
from mailapp.models import Role
from mailapp.users.services import two_factor_required

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; frame-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
    "frame-ancestors 'self'"
)
# Every response carries these unless its view set its own (the open pixel's fast path sends them too).
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "SAMEORIGIN",
    "Referrer-Policy": "same-origin",
}


def csv_download(lines: Iterable[str], filename: str) -> Response:
    """Streamed: the rows are generated batch by batch while the client downloads."""
    return Response(
        stream_with_context(lines),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"},
    )


def wants_json() -> bool:
    # Provider webhooks are machines too: they get the API's error shape.
    return request.path.startswith(("/api/", "/webhooks/"))


def public_url_for(endpoint: str, **values: object) -> str:
    """An absolute link for mail, on PUBLIC_URL: never built from the request's Host header, which a
    client chooses (a reset link must not point at a host the asker names)."""
    return current_app.config["PUBLIC_URL"].rstrip("/") + url_for(endpoint, **values)


# What a user who must enrol in two-factor sign-in may still open.
ENROLMENT_ENDPOINTS = frozenset(
    {"auth.two_factor_page", "auth.two_factor_enrol", "auth.logout", "static", "bootstrap.static"}
)


def refusal(role: Role, need: Need | None, endpoint: str) -> ForbiddenError:
    """The 403 a role below the need gets, saying what it cannot do and what it would take."""
    if need is None:
        # No role declared for the endpoint (mailapp/auth/permissions.py): refused to everyone.
        return ForbiddenError(f"No role may open {endpoint}: its access is not declared.")
    area = endpoint.partition(".")[0] if "." in endpoint else endpoint
    doing = "open this" if request.method in READ_METHODS else "make this change"
    return ForbiddenError(
        f"Your role ({role}) cannot {doing} in {area}: it needs {need.describe()}.",
        [{"field": None, "role": str(role), "needs": str(need.role)}],
    )


def enforce_page_roles():
    """Every page's role check (the API checks its own after authenticating the token)."""
    from flask_login import current_user

    from mailapp.web_extensions import login_manager

    endpoint = request.endpoint
    if endpoint is None:  # no route matched: the 404 or 405 answers
        return None
    if endpoint.startswith("api.") and endpoint != "api.openapi_json":
        return None
    need = need_for(endpoint, request.method, current_app.view_functions.get(endpoint))
    if need is not None and need.is_public:
        return None
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    user = current_user._get_current_object()
    if need is None or not need.allows(user.user_role, can_export=user.can_export):
        raise refusal(user.user_role, need, endpoint)
    if endpoint not in ENROLMENT_ENDPOINTS and not user.has_two_factor and two_factor_required():
        return redirect(url_for("auth.two_factor_page"))
    act_as(user)
    return None


def init_app(app: Flask) -> None:
    from mailapp.auth.sessions import load_user_for_session
    from mailapp.web_extensions import login_manager

    login_manager.login_view = "auth.login"
    login_manager.login_message_category = "warning"

    # A live server-side session, not just a signed cookie (mailapp/auth/sessions.py).
    login_manager.user_loader(load_user_for_session)

    @app.before_request
    def refuse_nul_in_query_strings() -> None:
        """PostgreSQL cannot hold or compare text with a NUL in it (the driver raises), so no query value
        may carry one, on any page or API endpoint."""
        for name, value in request.args.items(multi=True):
            if "\x00" in name or "\x00" in value:
                field = name.replace("\x00", "")
                raise ValidationError(
                    f"The query parameter {field!r} holds a NUL character.", [{"field": field}]
                )

    app.before_request(enforce_page_roles)

    @app.after_request
    def security_headers(response):
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    @app.errorhandler(MailappError)
    def mailapp_error(error: MailappError):
        if wants_json():
            return jsonify(error.to_dict()), error.status_code
        return render_template("error.html", title=error.code, message=error.message), error.status_code

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(error: RequestEntityTooLarge):
        limit = request.max_content_length or app.config.get("MAX_CONTENT_LENGTH")
        message = "The upload is too large."
        if limit:
            message += f" The limit is {limit / (1024 * 1024):.1f} MB."
        if wants_json():
            details = [field_problem(None, message, limit=limit)]
            return jsonify(error_body("request_entity_too_large", message, details)), 413
        return render_template("error.html", title="413 Request Entity Too Large", message=message), 413

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        if wants_json():
            code = (error.name or "error").lower().replace(" ", "_")
            body = error_body(code, error.description or "")
            return jsonify(body), error.code
        return render_template(
            "error.html", title=f"{error.code} {error.name}", message=error.description
        ), error.code

    @app.context_processor
    def navigation() -> dict:
        # The nav bar links only to areas whose pages exist.
        return {"nav_endpoints": app.view_functions.keys()}

    @app.template_filter("datetime")
    def format_datetime(value: datetime | None) -> str:
        """UTC in the HTML; static/js/app.js rewrites <time> elements into the browser's zone."""
        if value is None:
            return "—"
        return value.strftime("%Y-%m-%d %H:%M UTC")

    @app.template_filter("isotime")
    def iso_datetime(value: datetime | None) -> str:
        return value.isoformat() if value else ""
