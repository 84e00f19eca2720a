"""Relays and sender identities: validation, create/update/delete, their JSON shape, and a relay's
"Test connection". A relay's password is sealed (mailapp.secret_box) as it is stored and never shown
again: its JSON says only whether one is set.

Services flush; the view that owns the transaction commits."""

from __future__ import annotations

import contextlib
import smtplib
import socket
import ssl
from collections.abc import Mapping
from typing import Any

from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from mailapp.addresses import normalize_email
from mailapp.audit import services as audit
from mailapp.errors import ConflictError, NotFoundError, ValidationError, field_problem
from mailapp.extensions import db
from mailapp.ids import id_from_text, is_id
from mailapp.models import SenderIdentity, SmtpRelay, TlsMode
from mailapp.models.base import iso_or_none
from mailapp.secret_box import SecretBox
from mailapp.sending.relay import Relay, describe
from mailapp.sending.relay_choice import relay_settings

NAME_MAX = 200
HOST_MAX = 255
PASSWORD_MAX = 1000
MAX_CONNECTIONS = 100
MAX_RATE = 100_000.0
MAX_CAP = 1_000_000_000

RELAY_FIELDS = ("name", "host", "port", "tls_mode", "username", "password", "max_connections",
                "rate_per_second", "cap_per_hour", "cap_per_day", "backup_relay_id", "enabled", "is_default")
IDENTITY_FIELDS = ("name", "from_name", "from_email", "reply_to", "relay_id")


# --- shared checks ------------------------------------------------------------------------------------


class _Checker:
    """Collects every problem of one input, so a form shows each beside its field at once."""

    def __init__(self, data: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise ValidationError(f"Unknown field(s): {', '.join(unknown)}.",
                                  [field_problem(name, "Unknown field.") for name in unknown])
        self.data = data
        self.problems: list[dict[str, Any]] = []
        self.values: dict[str, Any] = {}

    def text(self, name: str, limit: int, *, required: bool = False, header: bool = False) -> None:
        if name not in self.data:
            return
        raw = self.data[name]
        raw = "" if raw is None else raw
        if not isinstance(raw, str):
            self.problems.append(field_problem(name, "Must be a string."))
            return
        value = raw.strip()
        if header and ("\r" in value or "\n" in value):
            self.problems.append(
                field_problem(name, "Cannot contain line breaks (it goes into a mail header).")
            )
        elif required and not value:
            self.problems.append(field_problem(name, "This field is required."))
        elif len(value) > limit:
            self.problems.append(field_problem(name, f"Must be at most {limit} characters."))
        else:
            self.values[name] = value

    def email(self, name: str, *, required: bool = False) -> None:
        self.text(name, 320, required=required, header=True)
        if self.values.get(name):
            try:
                self.values[name] = normalize_email(self.values[name])
            except ValidationError as error:
                self.values.pop(name)
                self.problems.append(field_problem(name, error.message))

    def number(self, name: str, low: float, high: float, *, whole: bool = True) -> None:
        if name not in self.data:
            return
        raw = self.data[name]
        if isinstance(raw, str) and raw.strip():
            with contextlib.suppress(ValueError):  # a form's text; left as it is, it is refused below
                raw = int(raw) if whole else float(raw)
        kinds = (int,) if whole else (int, float)
        if isinstance(raw, bool) or not isinstance(raw, kinds) or not low <= raw <= high:
            kind = "a whole number" if whole else "a number"
            self.problems.append(field_problem(name, f"Must be {kind} from {low:g} to {high:g}."))
        else:
            self.values[name] = raw if whole else float(raw)

    def flag(self, name: str) -> None:
        if name in self.data:
            if isinstance(self.data[name], bool):
                self.values[name] = self.data[name]
            else:
                self.problems.append(field_problem(name, "Must be true or false."))

    def relay_ref(self, name: str) -> None:
        """An existing relay's id, or null/blank for none."""
        if name not in self.data:
            return
        raw = self.data[name]
        if raw is None or raw == "" or raw == 0:
            self.values[name] = None
            return
        relay_id = id_from_text(raw) if isinstance(raw, str) else raw if is_id(raw) else None
        if relay_id is None:
            self.problems.append(field_problem(name, "Must be a relay's id, or null."))
        elif db.session.get(SmtpRelay, relay_id) is None:
            self.problems.append(field_problem(name, f"Relay {relay_id} does not exist."))
        else:
            self.values[name] = relay_id

    def done(self, labels: Mapping[str, str]) -> dict[str, Any]:
        if self.problems:
            first = self.problems[0]
            more = f" (and {len(self.problems) - 1} more problem(s))" if len(self.problems) > 1 else ""
            raise ValidationError(f"{labels.get(first['field'], first['field'])}: {first['message']}{more}",
                                  self.problems)
        return self.values


def _flush_unique(kind: str, name: str) -> None:
    try:
        db.session.flush()
    except IntegrityError as error:
        db.session.rollback()
        raise ConflictError(f"A {kind} named {name!r} already exists.", [{"field": "name"}]) from error


def _require_free_name(model: type, name: str | None, kind: str, own_id: int | None) -> None:
    if name is None:
        return
    taken = db.session.scalar(select(model.id).where(model.name == name))
    if taken is not None and taken != own_id:
        raise ConflictError(f"A {kind} named {name!r} already exists.", [{"field": "name"}])


# --- relays -------------------------------------------------------------------------------------------

RELAY_LABELS = {
    "name": "Name", "host": "Host", "port": "Port", "tls_mode": "TLS", "username": "Username",
    "password": "Password", "max_connections": "Max connections", "rate_per_second": "Rate per second",
    "cap_per_hour": "Cap per hour", "cap_per_day": "Cap per day", "backup_relay_id": "Backup relay",
    "enabled": "Enabled", "is_default": "Default relay",
}


def get_relay(relay_id: int) -> SmtpRelay:
    relay = db.session.get(SmtpRelay, relay_id)
    if relay is None:
        raise NotFoundError(f"Relay {relay_id} does not exist.")
    return relay


def list_relays() -> list[SmtpRelay]:
    return list(db.session.scalars(select(SmtpRelay).order_by(SmtpRelay.name)))


def _check_relay(data: Mapping[str, Any], relay: SmtpRelay | None) -> dict[str, Any]:
    check = _Checker(data, RELAY_FIELDS)
    creating = relay is None
    check.text("name", NAME_MAX, required=True)
    check.text("host", HOST_MAX, required=True)
    if check.values.get("host") and any(char.isspace() for char in check.values["host"]):
        check.values.pop("host")
        check.problems.append(field_problem("host", "A host name has no spaces."))
    allowed = [host.strip().lower() for host in current_app.config["RELAY_ALLOWED_HOSTS"].split(",")
               if host.strip()]
    if check.values.get("host") and allowed and check.values["host"].lower() not in allowed:
        check.problems.append(field_problem(
            "host", f"Relays may only name these hosts here (RELAY_ALLOWED_HOSTS): {', '.join(allowed)}."))
        check.values.pop("host")
    check.number("port", 1, 65535)
    if "tls_mode" in data:
        if isinstance(data["tls_mode"], str) and data["tls_mode"] in {mode.value for mode in TlsMode}:
            check.values["tls_mode"] = data["tls_mode"]
        else:
            check.problems.append(field_problem("tls_mode", "Must be one of none, starttls, ssl."))
    check.text("username", 320)
    if "password" in data:
        raw = data["password"]
        if raw is not None and not isinstance(raw, str):
            check.problems.append(field_problem("password", "Must be a string, or null to remove it."))
        elif raw is not None and len(raw) > PASSWORD_MAX:
            check.problems.append(field_problem("password", f"Must be at most {PASSWORD_MAX} characters."))
        else:
            check.values["password"] = raw or ""
    check.number("max_connections", 1, MAX_CONNECTIONS)
    check.number("rate_per_second", 0, MAX_RATE, whole=False)
    check.number("cap_per_hour", 0, MAX_CAP)
    check.number("cap_per_day", 0, MAX_CAP)
    check.relay_ref("backup_relay_id")
    check.flag("enabled")
    check.flag("is_default")
    if creating:
        for name in ("name", "host"):
            if name not in data:
                check.problems.append(field_problem(name, "This field is required."))
    backup_id = check.values.get("backup_relay_id")
    if backup_id is not None and relay is not None and _backup_chain_reaches(backup_id, relay.id):
        check.values.pop("backup_relay_id")
        check.problems.append(field_problem(
            "backup_relay_id", "That relay (or its own backup) falls back on this one: a loop."))
    return check.done(RELAY_LABELS)


def _backup_chain_reaches(start_id: int, target_id: int) -> bool:
    seen: set[int] = set()
    current: int | None = start_id
    while current is not None and current not in seen:
        if current == target_id:
            return True
        seen.add(current)
        current = db.session.scalar(select(SmtpRelay.backup_relay_id).where(SmtpRelay.id == current))
    return False


def _apply_relay(relay: SmtpRelay, values: dict[str, Any]) -> None:
    password = values.pop("password", None)
    if password is not None:
        relay.password_sealed = SecretBox.for_current_app().seal(password) if password else ""
    for name, value in values.items():
        setattr(relay, name, value)
    if values.get("is_default"):
        # One default at a time: choosing this one unsets the others.
        db.session.execute(
            update(SmtpRelay).where(SmtpRelay.is_default, SmtpRelay.id != relay.id).values(is_default=False),
            execution_options={"synchronize_session": "fetch"},
        )


def create_relay(data: Mapping[str, Any]) -> SmtpRelay:
    values = _check_relay(data, None)
    _require_free_name(SmtpRelay, values.get("name"), "relay", None)
    relay = SmtpRelay(name=values["name"], host=values["host"])
    db.session.add(relay)
    _flush_unique("relay", values["name"])
    _apply_relay(relay, values)
    db.session.flush()
    audit.record("relay.create", relay, f"Added the relay {relay.name} ({relay.host}:{relay.port}).")
    return relay


def update_relay(relay_id: int, changes: Mapping[str, Any]) -> SmtpRelay:
    relay = get_relay(relay_id)
    values = _check_relay(changes, relay)
    _require_free_name(SmtpRelay, values.get("name"), "relay", relay.id)
    _apply_relay(relay, values)
    _flush_unique("relay", relay.name)
    # Names only: a password must never reach the log.
    changed = ", ".join(sorted(values)) or "nothing"
    audit.record("relay.update", relay, f"Changed the relay {relay.name}: {changed}.")
    return relay


def delete_relay(relay_id: int) -> None:
    """Campaigns and identities that named it fall back on the default; relays that had it as their
    backup have none."""
    relay = get_relay(relay_id)
    audit.record("relay.delete", relay, f"Deleted the relay {relay.name}.")
    db.session.delete(relay)
    db.session.flush()


def relay_to_dict(relay: SmtpRelay) -> dict[str, Any]:
    return {
        "id": relay.id, "name": relay.name, "host": relay.host, "port": relay.port,
        "tls_mode": relay.tls_mode, "username": relay.username, "password_set": bool(relay.password_sealed),
        "max_connections": relay.max_connections, "rate_per_second": relay.rate_per_second,
        "cap_per_hour": relay.cap_per_hour, "cap_per_day": relay.cap_per_day,
        "backup_relay_id": relay.backup_relay_id, "enabled": relay.enabled, "is_default": relay.is_default,
        "failed_over_until": iso_or_none(relay.failed_over_until),
        "failover_reason": relay.failover_reason, "created_at": iso_or_none(relay.created_at),
        "updated_at": iso_or_none(relay.updated_at),
    }


def test_connection(relay_id: int) -> dict[str, Any]:
    """Connect, EHLO, STARTTLS and log in as configured, within RELAY_TEST_TIMEOUT_SECONDS a step:
    {ok, greeting, extensions, error} with the error in words."""
    relay = get_relay(relay_id)
    config = current_app.config
    timeout = float(config["RELAY_TEST_TIMEOUT_SECONDS"])
    settings = relay_settings(relay, {**config, "MAIL_SUPPRESS_SEND": False})
    address = f"{relay.host}:{relay.port}"
    connection = Relay.from_settings(settings, timeout, name=relay.name, relay_id=relay.id).new_connection()
    try:
        connection.__enter__()
        host = connection.host
        host.ehlo_or_helo_if_needed()
        extensions = [f"{name.upper()} {value}".strip() for name, value in host.esmtp_features.items()]
        return {"ok": True, "greeting": connection.greeting, "extensions": extensions, "error": None}
    except (OSError, smtplib.SMTPException) as error:
        why = _in_words(error, address, timeout)
        return {"ok": False, "greeting": connection.greeting, "extensions": [], "error": why}
    finally:
        if connection.host is not None:
            try:
                connection.host.quit()
            except (OSError, smtplib.SMTPException):
                connection.host.close()


def _in_words(error: BaseException, address: str, timeout: float) -> str:
    if isinstance(error, ConnectionRefusedError):
        return f"{address} refused the connection: nothing listens on that port."
    if isinstance(error, socket.gaierror):
        return f"The host of {address} cannot be found: {describe(error)}."
    if isinstance(error, TimeoutError | socket.timeout):
        return f"{address} did not answer within {timeout:g} seconds."
    if isinstance(error, smtplib.SMTPAuthenticationError):
        return f"The login was refused: {error.smtp_code} {error.smtp_error.decode('utf-8', 'replace')}"
    if isinstance(error, smtplib.SMTPNotSupportedError):
        return f"{address} does not offer STARTTLS; choose TLS 'none' or 'ssl'."
    if isinstance(error, ssl.SSLError):
        return f"TLS with {address} failed: {describe(error)}."
    if isinstance(error, smtplib.SMTPServerDisconnected):
        return f"{address} closed the connection: {describe(error)}."
    if isinstance(error, smtplib.SMTPResponseException):
        return f"{address} answered {error.smtp_code} {error.smtp_error.decode('utf-8', 'replace')}"
    return f"Cannot talk to {address}: {describe(error)}."


# --- sender identities -----------------------------------------------------------------------------

IDENTITY_LABELS = {"name": "Name", "from_name": "From name", "from_email": "From email",
                   "reply_to": "Reply-to", "relay_id": "Relay"}


def get_identity(identity_id: int) -> SenderIdentity:
    identity = db.session.get(SenderIdentity, identity_id)
    if identity is None:
        raise NotFoundError(f"Sender identity {identity_id} does not exist.")
    return identity


def list_identities() -> list[SenderIdentity]:
    return list(db.session.scalars(select(SenderIdentity).order_by(SenderIdentity.name)))


def _check_identity(data: Mapping[str, Any], creating: bool) -> dict[str, Any]:
    check = _Checker(data, IDENTITY_FIELDS)
    check.text("name", NAME_MAX, required=True)
    check.text("from_name", 200, header=True)
    check.email("from_email", required=True)
    check.email("reply_to")
    check.relay_ref("relay_id")
    if creating:
        for name in ("name", "from_email"):
            if name not in data:
                check.problems.append(field_problem(name, "This field is required."))
    return check.done(IDENTITY_LABELS)


def create_identity(data: Mapping[str, Any]) -> SenderIdentity:
    values = _check_identity(data, creating=True)
    _require_free_name(SenderIdentity, values.get("name"), "sender identity", None)
    identity = SenderIdentity(**values)
    db.session.add(identity)
    _flush_unique("sender identity", identity.name)
    audit.record("identity.create", identity, f"Added the sender identity {identity.name}.")
    return identity


def update_identity(identity_id: int, changes: Mapping[str, Any]) -> SenderIdentity:
    identity = get_identity(identity_id)
    values = _check_identity(changes, creating=False)
    _require_free_name(SenderIdentity, values.get("name"), "sender identity", identity.id)
    for name, value in values.items():
        setattr(identity, name, value)
    _flush_unique("sender identity", identity.name)
    return identity


def delete_identity(identity_id: int) -> None:
    """Campaigns that picked it keep their From fields (copied when picked) and lose the link."""
    identity = get_identity(identity_id)
    audit.record("identity.delete", identity, f"Deleted the sender identity {identity.name}.")
    db.session.delete(identity)
    db.session.flush()


def sending_domain(from_email: str) -> str:
    """The domain a sending domain (DKIM) would match for this address: tied at display time, no key."""
    return from_email.rpartition("@")[2]


def identity_to_dict(identity: SenderIdentity) -> dict[str, Any]:
    return {
        "id": identity.id, "name": identity.name, "from_name": identity.from_name,
        "from_email": identity.from_email, "reply_to": identity.reply_to, "relay_id": identity.relay_id,
        "domain": sending_domain(identity.from_email), "created_at": iso_or_none(identity.created_at),
        "updated_at": iso_or_none(identity.updated_at),
    }


def identity_sender_fields(identity_id: int) -> dict[str, str]:
    """What picking the identity fills in on a campaign."""
    identity = get_identity(identity_id)
    return {"from_name": identity.from_name, "from_email": identity.from_email, "reply_to": identity.reply_to}
