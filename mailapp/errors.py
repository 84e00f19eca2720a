"""The kinds of bad input and refused actions. Each becomes a form error in the dashboard and the one
JSON error shape in the API: {"error": {"code", "message", "details"}}."""

from __future__ import annotations

from typing import Any


class MailappError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class ValidationError(MailappError):
    """Input that is well-formed JSON or a form, but whose values are wrong."""

    status_code = 422
    code = "validation_error"


class JSONBodyError(ValidationError):
    """A request body that is not usable JSON: not UTF-8, not parseable, or nested too deep.
    details: {"field": None, ...}."""

    code = "invalid_json"


class UnstorableTextError(ValidationError):
    """Text the database cannot store: a NUL character, or an unpaired UTF-16 surrogate (\\ud800 in
    JSON), which has no UTF-8 form. details: {"field": the path of the value, like 'attributes.city'}."""

    code = "unstorable_text"


class TemplateError(ValidationError):
    """A layout or subject that does not compile, uses unknown variables or breaks the sandbox.
    details: [{"line": int | None, "message": str}]."""

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


class TooManyAttemptsError(MailappError):
    """Sign-in attempts over the throttle's limit for this address or account. details: {"retry_after"}."""

    status_code = 429
    code = "too_many_attempts"


class WrongPasswordError(ValidationError):
    """The current password, given to confirm a change of password, is not the user's."""

    code = "wrong_password"
