"""ALTCHA proof of work for signup forms that turn it on: the hosted page's widget fetches a challenge
(signed with an HMAC key derived from SECRET_KEY, expiring after ALTCHA_EXPIRY_SECONDS), the browser
solves it, and the signup carries the solution in its `altcha` field. A solution is good once: its
challenge is remembered as spent until it expires. Nothing is stored when a challenge is handed out, so
fetching one (a GET) writes nothing."""

from __future__ import annotations

import hashlib
import hmac
import time
from datetime import UTC, datetime

import altcha
from flask import current_app
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from mailapp.errors import ValidationError
from mailapp.extensions import db
from mailapp.models import SpentAltchaChallenge, utcnow

ALGORITHM = "PBKDF2/SHA-256"
FIELD = "altcha"
# A solved challenge's payload is a few hundred bytes of base64: anything longer is not one, and is
# refused before it is decoded.
MAX_PAYLOAD_CHARS = 4096
MISSING = "Please wait until the anti-spam check (ALTCHA) is done, then send the form again."
INVALID = "The anti-spam check (ALTCHA) failed. Reload the page and try again."
EXPIRED = "The anti-spam check (ALTCHA) has expired. Reload the page and try again."
SPENT = "This anti-spam check (ALTCHA) was already used. Reload the page and try again."


def _hmac_key() -> bytes:
    # Derived, not SECRET_KEY itself: this key is used for one thing only.
    return hmac.new(current_app.config["SECRET_KEY"].encode(), b"mailapp altcha v1", hashlib.sha256).digest()


def new_challenge() -> dict:
    """A fresh signed challenge, as the widget fetches it (JSON)."""
    challenge = altcha.create_challenge(
        ALGORITHM, int(current_app.config["ALTCHA_COST"]),
        expires_at=int(time.time()) + int(current_app.config["ALTCHA_EXPIRY_SECONDS"]),
        hmac_secret=_hmac_key(),
    )
    return challenge.to_dict()


def spend_solution(payload: object) -> None:
    """Check the signup's solution and mark its challenge spent (the caller commits); ValidationError
    naming the `altcha` field when it is missing, forged, wrong, expired or already used."""
    if not payload:
        raise ValidationError(MISSING, [{"field": FIELD}])
    if not isinstance(payload, str) or len(payload) > MAX_PAYLOAD_CHARS:
        raise ValidationError(INVALID, [{"field": FIELD}])
    result = altcha.verify_solution(payload, _hmac_key())
    if result.expired:
        raise ValidationError(EXPIRED, [{"field": FIELD}])
    if not result.verified:
        raise ValidationError(INVALID, [{"field": FIELD}])
    challenge = altcha.Payload.from_base64(payload).challenge
    now = utcnow()
    db.session.execute(delete(SpentAltchaChallenge).where(SpentAltchaChallenge.expires_at < now))
    expires_at = challenge.parameters.expires_at
    try:
        with db.session.begin_nested():
            db.session.add(SpentAltchaChallenge(
                signature=challenge.signature,
                expires_at=datetime.fromtimestamp(expires_at, UTC) if expires_at else now,
            ))
    except IntegrityError:
        raise ValidationError(SPENT, [{"field": FIELD}]) from None
