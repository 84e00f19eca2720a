"""Signed tracking tokens: they carry a delivery id (and a link's position, for clicks), so a forged or
altered token is refused before anything is written. Each kind has its own salt, so an open token
cannot be replayed as an unsubscribe token."""

from __future__ import annotations

import hashlib
import hmac
from base64 import urlsafe_b64encode
from functools import cache

from flask import current_app
from itsdangerous import Signer

KINDS = ("open", "click", "unsubscribe", "view")


class BadToken(Exception):
    """A token that is forged, truncated, altered or of another kind."""


@cache
def _signer(secret_key: str, kind: str) -> Signer:
    return Signer(
        secret_key, salt=f"mailapp.tracking.{kind}", sep=".", key_derivation="hmac",
        digest_method=hashlib.sha256,
    )


def _current_signer(kind: str) -> Signer:
    if kind not in KINDS:
        raise ValueError(f"unknown token kind {kind!r}")
    return _signer(current_app.config["SECRET_KEY"], kind)


def make_token(kind: str, delivery_id: int, position: int | None = None) -> str:
    payload = f"{delivery_id:x}" if position is None else f"{delivery_id:x}-{position:x}"
    return _current_signer(kind).sign(payload).decode()


@cache
def _verifier(secret_key: str, kind: str) -> hmac.HMAC:
    """The HMAC the Signer above computes, keyed once: verifying is on the open pixel's hot path, and
    itsdangerous derives the key again on every call."""
    derived = hmac.new(secret_key.encode(), f"mailapp.tracking.{kind}".encode(), hashlib.sha256).digest()
    return hmac.new(derived, digestmod=hashlib.sha256)


def read_token(kind: str, token: str, *, secret_key: str | None = None) -> tuple[int, int | None]:
    """(delivery_id, position) from a valid token; BadToken otherwise. `secret_key` defaults to the
    current app's: the open pixel's fast path runs outside any app context and passes it.

    The signature is compared as text with the one we would issue, so only that exact spelling passes
    (base64 leaves spare bits in the last character: a byte-level check would accept a few altered
    tokens)."""
    if kind not in KINDS:
        raise ValueError(f"unknown token kind {kind!r}")
    payload, separator, signature = token.rpartition(".")
    if not separator or not payload:
        raise BadToken("not a signed token")
    mac = _verifier(secret_key or current_app.config["SECRET_KEY"], kind).copy()
    mac.update(payload.encode("utf-8", "replace"))
    expected = urlsafe_b64encode(mac.digest()).rstrip(b"=")
    if not hmac.compare_digest(expected, signature.encode("utf-8", "replace")):
        raise BadToken("bad signature")
    delivery_hex, _, position_hex = payload.partition("-")
    try:
        delivery_id = int(delivery_hex, 16)
        position = int(position_hex, 16) if position_hex else None
    except ValueError as error:
        raise BadToken(str(error)) from error
    if kind == "click" and position is None:
        raise BadToken("click token without a link position")
    return delivery_id, position


def public_url(path: str) -> str:
    return f"{current_app.config['PUBLIC_URL']}{path}"


def open_url(delivery_id: int) -> str:
    return public_url(f"/o/{make_token('open', delivery_id)}.gif")


def click_url(delivery_id: int, position: int) -> str:
    return public_url(f"/c/{make_token('click', delivery_id, position)}")


def unsubscribe_url(delivery_id: int) -> str:
    return public_url(f"/u/{make_token('unsubscribe', delivery_id)}")


def view_url(delivery_id: int) -> str:
    return public_url(f"/v/{make_token('view', delivery_id)}")
