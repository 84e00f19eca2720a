"""Signups through a form, double opt-in confirmation and the preference center: who joins which
list when, what consent they gave, and the rule that a signup's answer never reveals whether the
address was known.

Pending lists are kept on the consent record and the person joins them only when they confirm, so an
unconfirmed person is on no list and no campaign snapshot can reach them; a new address waiting for
its first confirmation has the subscriber status `unconfirmed` (the snapshot takes `active` only)."""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import select

from mailapp.addresses import normalize_email_field
from mailapp.auth.throttle import DatabaseAttemptCounter, RedisAttemptCounter
from mailapp.errors import NotFoundError, TooManyAttemptsError, ValidationError
from mailapp.extensions import db
from mailapp.models import (
    ConsentRecord,
    SignupForm,
    Subscriber,
    SubscriberList,
    SubscriberStatus,
    Suppression,
    utcnow,
)
from mailapp.signup import proof_of_work
from mailapp.subscribers.validation import AttributeLimits, clean_attributes, clean_name
from mailapp.tracking.machine import truncate_ip
from mailapp.tracking.services import delivery_for_token, unsubscribe_delivery

HONEYPOT_FIELD = "website"
CONFIRM_SALT = "mailapp.signup.confirm"
INVALID_CONFIRM_LINK = "This confirmation link is not valid. It may be mistyped, or from an old email."
EXPIRED_CONFIRM_LINK = "This confirmation link has expired. Sign up again to get a new one."
FIELD_TYPES = ("text", "number", "date", "checkbox")
# Every signup gets this answer, whatever became of it: it must not tell whether the address is known.
ACCEPTED = "Thanks! If this address needs confirming, we have sent it a link."


@dataclass
class SignupInput:
    email: Any
    name: Any = ""
    list_ids: list[int] = field(default_factory=list)
    attributes: dict[str, Any] = field(default_factory=dict)
    honeypot: str = ""
    # The ALTCHA solution (base64 payload), for forms that ask for one.
    altcha: object = None
    ip: str | None = None
    user_agent: str = ""


@dataclass
class SignupOutcome:
    """What the caller does after committing: the consent whose confirmation to send, if any."""

    confirmation_consent_id: int | None = None


def form_by_slug(slug: str) -> SignupForm:
    form = db.session.scalar(select(SignupForm).where(SignupForm.slug == slug))
    if form is None:
        raise NotFoundError("No such signup form.")
    return form


# --- rate limits ------------------------------------------------------------------------------------


def _counter():
    redis_url = current_app.config.get("REDIS_URL") or ""
    return RedisAttemptCounter(redis_url) if redis_url else DatabaseAttemptCounter()


def count_signup(form_id: int, email: str) -> None:
    """Count a signup for the address and for the form in the current window (the login throttle's
    counters); TooManyAttemptsError when either is over its limit."""
    config = current_app.config
    window = max(1, int(config["SIGNUP_THROTTLE_WINDOW_SECONDS"]))
    now = time.time()
    window_start = int(now // window) * window
    counter = _counter()
    by_address = counter.add(_key("signup-address", email), window_start, window)
    by_form = counter.add(_key("signup-form", str(form_id)), window_start, window)
    if by_address > config["SIGNUP_MAX_PER_ADDRESS"] or by_form > config["SIGNUP_MAX_PER_FORM"]:
        retry_after = max(1, math.ceil(window_start + window - now))
        raise TooManyAttemptsError(
            f"Too many signups. Try again in {retry_after} seconds.",
            details=[{"field": None, "message": "rate limit", "retry_after": retry_after}],
        )


def _key(kind: str, value: str) -> str:
    return hashlib.sha256(f"{kind}:{value}".encode()).hexdigest()


# --- signing up -------------------------------------------------------------------------------------


def _chosen_lists(form: SignupForm, list_ids: list[int]) -> list[SubscriberList]:
    if not form.lists_choosable:
        return list(form.lists)
    offered = {subscriber_list.id: subscriber_list for subscriber_list in form.lists}
    unknown = [list_id for list_id in list_ids if list_id not in offered]
    if unknown:
        raise ValidationError("Choose only lists this form offers.", [{"field": "lists"}])
    if not list_ids:
        raise ValidationError("Choose at least one list.", [{"field": "lists"}])
    return [offered[list_id] for list_id in dict.fromkeys(list_ids)]


def _finite_number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _form_attributes(form: SignupForm, given: dict[str, Any]) -> dict[str, Any]:
    """Only the attributes the form asks for, each checked against its type."""
    attributes: dict[str, Any] = {}
    for spec in form.fields or []:
        name, kind = spec["name"], spec.get("type", "text")
        value = given.get(name)
        if value in (None, ""):
            continue
        label = spec.get("label") or name
        if kind == "number":
            number = _finite_number(value)
            if number is None:
                raise ValidationError(f"{label} must be a number.", [{"field": name}])
            value = int(number) if number.is_integer() else number
        elif kind == "date":
            try:
                value = date.fromisoformat(value).isoformat() if isinstance(value, str) else None
            except ValueError:
                value = None
            if value is None:
                raise ValidationError(f"{label} must be a date (YYYY-MM-DD).", [{"field": name}])
        elif kind == "checkbox":
            value = value not in (False, "0", "false", "off")
        elif not isinstance(value, str):
            raise ValidationError(f"{label} must be text.", [{"field": name}])
        attributes[name] = value
    return clean_attributes(attributes, AttributeLimits.from_config(current_app.config))


def submit_signup(form: SignupForm, given: SignupInput) -> SignupOutcome:
    """Record a signup through the form. Bad input raises ValidationError before anything is written;
    everything else answers the same (ACCEPTED): a filled honeypot, a suppressed, blocklisted or
    bounced address, and an address already on the chosen lists change nothing and send nothing. The
    caller commits, then sends the outcome's confirmation."""
    email = normalize_email_field(given.email)
    name = clean_name(given.name) if form.ask_name else ""
    lists = _chosen_lists(form, given.list_ids)
    attributes = _form_attributes(form, given.attributes)
    if given.honeypot:
        return SignupOutcome()  # a bot: accepted as far as it can tell, and dropped
    if form.altcha:
        proof_of_work.spend_solution(given.altcha)
    count_signup(form.id, email)
    suppressed = db.session.scalar(
        select(Suppression.id).where(Suppression.email == email, Suppression.lifted_at.is_(None))
    )
    subscriber = db.session.scalar(select(Subscriber).where(Subscriber.email == email))
    if suppressed is not None or (
        subscriber is not None
        and subscriber.status in (SubscriberStatus.BLOCKLISTED, SubscriberStatus.BOUNCED)
    ):
        return SignupOutcome()
    if subscriber is None:
        subscriber = Subscriber(
            email=email, name=name, attributes=attributes, status=SubscriberStatus.UNCONFIRMED
        )
        db.session.add(subscriber)
        db.session.flush()
    is_active = subscriber.status == SubscriberStatus.ACTIVE
    already_on = {subscriber_list.id for subscriber_list in subscriber.lists} if is_active else set()
    wanted = [subscriber_list for subscriber_list in lists if subscriber_list.id not in already_on]
    if not wanted:
        return SignupOutcome()
    # Single opt-in lists are joined at once, double opt-in ones on confirmation; someone who
    # unsubscribed confirms every list, since a form anyone can fill must not undo their choice.
    must_confirm_all = subscriber.status == SubscriberStatus.UNSUBSCRIBED
    joining_now = [
        subscriber_list
        for subscriber_list in wanted
        if not subscriber_list.double_opt_in and not must_confirm_all
    ]
    pending = [subscriber_list for subscriber_list in wanted if subscriber_list not in joining_now]
    if not is_active and not must_confirm_all:
        # New or unconfirmed: the form's values are theirs. A known address's are not overwritten
        # by whoever fills in a form with it.
        subscriber.name = name or subscriber.name
        subscriber.attributes = {**(subscriber.attributes or {}), **attributes}
    if joining_now:
        subscriber.lists.extend(joining_now)
        subscriber.status = SubscriberStatus.ACTIVE
    consent = ConsentRecord(
        subscriber_id=subscriber.id,
        form_id=form.id,
        email=email,
        consent_text=form.consent_text,
        list_ids=[subscriber_list.id for subscriber_list in wanted],
        pending_list_ids=[subscriber_list.id for subscriber_list in pending],
        ip=truncate_ip(given.ip),
        user_agent=(given.user_agent or "")[:500],
    )
    db.session.add(consent)
    db.session.flush()
    return SignupOutcome(consent.id if pending else None)


# --- confirmation -----------------------------------------------------------------------------------


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=CONFIRM_SALT)


def confirmation_token(consent_id: int) -> str:
    return _serializer().dumps(consent_id)


def consent_for_token(token: str) -> ConsentRecord:
    """The consent a valid, unexpired confirmation token names; NotFoundError otherwise. Reads only."""
    max_age = int(current_app.config["CONFIRM_LINK_TTL_HOURS"]) * 3600
    try:
        consent_id = _serializer().loads(token, max_age=max_age)
    except SignatureExpired as error:
        raise NotFoundError(EXPIRED_CONFIRM_LINK) from error
    except BadSignature as error:
        raise NotFoundError(INVALID_CONFIRM_LINK) from error
    consent = db.session.get(ConsentRecord, consent_id) if isinstance(consent_id, int) else None
    if consent is None or consent.subscriber_id is None:
        raise NotFoundError(INVALID_CONFIRM_LINK)
    return consent


def confirm(token: str) -> tuple[ConsentRecord, list[SubscriberList]]:
    """Confirm the signup: the subscriber becomes active and joins the pending lists. Idempotent (a
    second click joins nothing new). Returns the consent and the lists joined now. The caller commits,
    then sends the welcome emails of those lists."""
    consent = consent_for_token(token)
    subscriber = db.session.get(Subscriber, consent.subscriber_id)
    if subscriber is None or subscriber.status in (SubscriberStatus.BLOCKLISTED, SubscriberStatus.BOUNCED):
        raise NotFoundError(INVALID_CONFIRM_LINK)
    joined: list[SubscriberList] = []
    if consent.confirmed_at is None:
        lists = db.session.scalars(
            select(SubscriberList).where(SubscriberList.id.in_(consent.pending_list_ids or []))
        ).all()
        current = {subscriber_list.id for subscriber_list in subscriber.lists}
        joined = [subscriber_list for subscriber_list in lists if subscriber_list.id not in current]
        subscriber.lists.extend(joined)
        subscriber.status = SubscriberStatus.ACTIVE
        subscriber.unsubscribed_at = None
        consent.confirmed_at = utcnow()
        db.session.flush()
    return consent, joined


def latest_pending_consent(subscriber_id: int) -> ConsentRecord:
    """The subscriber's newest signup still waiting for its confirmation (resend)."""
    consent = db.session.scalar(
        select(ConsentRecord)
        .where(ConsentRecord.subscriber_id == subscriber_id, ConsentRecord.confirmed_at.is_(None))
        .order_by(ConsentRecord.id.desc())
        .limit(1)
    )
    if consent is None or not consent.pending_list_ids:
        raise NotFoundError("This subscriber has no signup waiting for confirmation.")
    return consent


# --- preference center ------------------------------------------------------------------------------


@dataclass
class Preferences:
    subscriber: Subscriber
    public_lists: list[SubscriberList]
    chosen_ids: set[int]


def preferences_for(token: str) -> Preferences:
    """What the preference center shows for a delivery's token. Reads only."""
    delivery = delivery_for_token("unsubscribe", token)
    subscriber = db.session.get(Subscriber, delivery.subscriber_id) if delivery.subscriber_id else None
    if subscriber is None:
        raise NotFoundError("This link no longer names a subscriber.")
    public_lists = db.session.scalars(
        select(SubscriberList).where(SubscriberList.public.is_(True)).order_by(SubscriberList.name)
    ).all()
    chosen = {subscriber_list.id for subscriber_list in subscriber.lists}
    return Preferences(subscriber, list(public_lists), chosen)


def update_preferences(token: str, *, name: Any, list_ids: list[int], unsubscribe_all: bool) -> Preferences:
    """The reader's name and public lists, or unsubscribe from everything. Lists that are not public
    are left as they are (the reader never saw them). The caller commits."""
    preferences = preferences_for(token)
    subscriber = preferences.subscriber
    if unsubscribe_all:
        unsubscribe_delivery(delivery_for_token("unsubscribe", token))
        return preferences_for(token)
    subscriber.name = clean_name(name)
    public_ids = {subscriber_list.id for subscriber_list in preferences.public_lists}
    wanted = set(list_ids) & public_ids
    subscriber.lists = [
        subscriber_list for subscriber_list in subscriber.lists if subscriber_list.id not in public_ids
    ] + [subscriber_list for subscriber_list in preferences.public_lists if subscriber_list.id in wanted]
    db.session.flush()
    return preferences_for(token)


# --- forms in the dashboard -------------------------------------------------------------------------


def parse_fields(text: str) -> list[dict[str, str]]:
    """ "attribute:type:Label" lines into the form's field specs."""
    specs = []
    for number, line in enumerate((text or "").splitlines(), start=1):
        if not line.strip():
            continue
        name, _, rest = line.strip().partition(":")
        kind, _, label = rest.partition(":")
        name, kind = name.strip(), (kind.strip() or "text")
        if not name.isidentifier() or name in ("email", "name", HONEYPOT_FIELD):
            raise ValidationError(
                f"Line {number}: {name!r} cannot be an attribute name.", [{"field": "fields"}]
            )
        if kind not in FIELD_TYPES:
            raise ValidationError(
                f"Line {number}: the type must be one of {', '.join(FIELD_TYPES)}.", [{"field": "fields"}]
            )
        specs.append({"name": name, "type": kind, "label": label.strip() or name})
    return specs


def parse_origins(text: str) -> list[str]:
    origins = []
    for line in (text or "").split():
        origin = line.strip().rstrip("/")
        scheme, _, host = origin.partition("://")
        if scheme not in ("http", "https") or not host or "/" in host:
            raise ValidationError(
                f"{line!r} is not an origin like https://www.example.com.", [{"field": "allowed_origins"}]
            )
        origins.append(origin.lower())
    return origins


def check_redirect_url(url: str) -> str:
    url = (url or "").strip()
    if url and not url.startswith(("https://", "http://")):
        raise ValidationError("The address to go to must start with https://.", [{"field": "redirect_url"}])
    return url


def save_form(form: SignupForm | None, values: dict[str, Any]) -> SignupForm:
    """Create (form None) or update a signup form from the dashboard's values. The caller commits."""
    slug_owner = db.session.scalar(select(SignupForm).where(SignupForm.slug == values["slug"]))
    if slug_owner is not None and slug_owner is not form:
        raise ValidationError("Another form has this address.", [{"field": "slug"}])
    lists = db.session.scalars(select(SubscriberList).where(SubscriberList.id.in_(values["list_ids"]))).all()
    if not lists:
        raise ValidationError("Choose at least one list.", [{"field": "lists"}])
    if form is None:
        form = SignupForm()
        db.session.add(form)
    form.name, form.slug = values["name"], values["slug"]
    form.lists = list(lists)
    form.lists_choosable, form.ask_name = bool(values["lists_choosable"]), bool(values["ask_name"])
    form.altcha = bool(values.get("altcha"))
    form.fields = parse_fields(values["fields"])
    form.allowed_origins = parse_origins(values["allowed_origins"])
    form.redirect_url = check_redirect_url(values["redirect_url"])
    for text_field in ("title", "intro", "consent_text", "button_text", "thank_you_text"):
        setattr(form, text_field, values[text_field] or "")
    form.button_text = form.button_text or "Subscribe"
    db.session.flush()
    return form
