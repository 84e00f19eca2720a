"""The kinds of bad input and refused actions. Each becomes a form error in the dashboard and the one
JSON error shape in the API: {"error": {"code", "message", "details"}}.

details is always a list of problems, each {"field": the input it is about (None for the request as a
whole), "message": what is wrong with it}; a kind of error may add keys of its own to each problem
(a template error's "line", for one), never take these two away."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def field_problem(field: str | None, message: str, **extra: Any) -> dict[str, Any]:
    """One entry of an error's details."""
    return {"field": field, "message": message, **extra}


def error_body(code: str, message: str, details: Iterable[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """The API's one error shape, for MailappErrors and for errors raised outside the app's code."""
    return {"error": {"code": code, "message": message, "details": list(details)}}


class MailappError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(
        self, message: str, details: Iterable[Mapping[str, Any]] | Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        if isinstance(details, Mapping):
            details = [details]
        # A problem that names no field or says nothing of its own is about the whole input, and says
        # what the error says: every consumer may then rely on both keys.
        self.details: list[dict[str, Any]] = [
            {"field": None, "message": message, **problem} for problem in details or ()
        ]

    def to_dict(self) -> dict[str, Any]:
        return error_body(self.code, self.message, self.details)


class ValidationError(MailappError):
    """Input that is well-formed JSON or a form, but whose values are wrong."""

    status_code = 422
    code = "validation_error"


class JSONBodyError(ValidationError):
    """A request body that is not usable JSON: not UTF-8, not parseable, or nested too deep.
    details: [{"field": None, "message"}]."""

    code = "invalid_json"


class UnstorableTextError(ValidationError):
    """Text the database cannot store: a NUL character, or an unpaired UTF-16 surrogate (\\ud800 in
    JSON), which has no UTF-8 form.
    details: [{"field": the path of the value, like 'attributes.city', "message"}]."""

    code = "unstorable_text"


class TemplateError(ValidationError):
    """A layout or subject that does not compile, uses unknown variables or breaks the sandbox.
    details: [{"field", "message", "line": int | None}]."""

    code = "template_error"


class ImportFileError(ValidationError):
    """A CSV file that cannot be imported at all (no header, no email column, not UTF-8)."""

    code = "import_error"


class NotFoundError(MailappError):
    status_code = 404
    code = "not_found"


class ConflictError(MailappError):
    """A unique value taken (email, list name, layout name)."""

    status_code = 409
    code = "conflict"


class InvalidStateError(MailappError):
    """An action the object's current state does not allow, like editing a campaign that is sending."""

    status_code = 409
    code = "invalid_state"


class ForbiddenError(MailappError):
    """A signed-in user or a valid token whose role is below what the action needs."""

    status_code = 403
    code = "forbidden"


class TooManyAttemptsError(MailappError):
    """Sign-in attempts over the throttle's limit for this address or account.
    details: [{"field": None, "message", "retry_after": seconds}]."""

    status_code = 429
    code = "too_many_attempts"


class WrongPasswordError(ValidationError):
    """The current password, given to confirm a change of password, is not the user's."""

    code = "wrong_password"


class WebhookPayloadError(MailappError):
    """A provider webhook whose body is not the provider's documented shape (not JSON, a missing or
    mistyped field). details: [{"field": the path of the field, or None, "message"}]."""

    status_code = 400
    code = "invalid_payload"


class WebhookAuthenticationError(MailappError):
    """A provider webhook whose signature, credentials or timestamp do not check out: forged, altered,
    too old, or replayed. details: [{"field": the header or field at fault, "message"}]."""

    status_code = 401
    code = "invalid_signature"


class WebhookForbiddenError(MailappError):
    """A provider webhook that proves where it comes from but is not for this installation: an SNS topic
    not configured, or a certificate or confirmation URL on a host that is not the provider's."""

    status_code = 403
    code = "forbidden"
class InvalidCodeError(ValidationError):
    """A two-factor code (TOTP or recovery code) that is wrong, already used, or from another window."""

    code = "invalid_code"


class InvalidLinkError(MailappError):
    """An invite or password-reset link that is forged, expired, or already used."""

    status_code = 400
    code = "invalid_link"
