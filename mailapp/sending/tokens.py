"""Signed tracking tokens: a forged or altered token is refused before anything is written, and a token
names one delivery forever, even when its row id is reused.

Format v2 (issued since migration 0003): `<delivery>-<campaign>-<subscriber>[-<position>].<signature>`,
ids in lower-case hex (subscriber 0 when the delivery has none), the signature 20 characters of
urlsafe base64 (120 bits). One HMAC-SHA512 per delivery, over "<delivery>-<campaign>-<subscriber>":
its first 60 bytes, base64-encoded, are cut into four signatures, one per kind (open, click,
unsubscribe, view). HMAC output bytes are independent of each other, so a token of one kind tells
nothing about another kind's signature: the pixel URL that image proxies fetch and log cannot
unsubscribe anyone. The renderer computes that one HMAC per message (`TokenMinter`), not one per link.
The click position is not signed: changing it only reaches another of the campaign's stored links for
the same delivery, and the message already holds all of them.

Why campaign and subscriber ids, and why in clear: a token must bind more than a row id (on SQLite a
deleted campaign's delivery ids were reused, so an old unsubscribe link named a stranger's delivery).
The ids ride in the token, so the HMAC alone proves the triple and the open pixel's fast path can
verify it without the database; whoever loads the row checks it still holds that campaign and
subscriber (`TokenClaims.names`): click, unsubscribe and view at request time, opens when the buffer
is flushed. A reused id has another campaign, so the old link answers 404. A delivery whose subscriber
was deleted keeps a NULL subscriber_id and still matches: the action then touches only that delivery.

Format v1 (issued before migration 0003): `<delivery>[-<position>].<signature>`, an itsdangerous
signer per kind over the delivery id alone. Links in inboxes keep working, but only for deliveries
that existed when migration 0003 ran (`Delivery.accepts_v1_tokens`): a v1 token names nothing but an
id, and a newer row with that id may be a reused one."""

from __future__ import annotations

import hashlib
import hmac
import re
from base64 import urlsafe_b64encode
from dataclasses import dataclass
from functools import cache

from flask import current_app
from itsdangerous import Signer

KINDS = ("open", "click", "unsubscribe", "view")

SIGNATURE_LENGTH = 20
_V2_SALT = b"mailapp.tracking.v2"
# Lower-case hex without leading zeros: exactly one spelling of each id passes.
_HEX = r"(0|[1-9a-f][0-9a-f]{0,15})"
_V2_TOKEN = re.compile(rf"({_HEX}-{_HEX}-{_HEX})(?:-{_HEX})?\.([A-Za-z0-9_-]{{{SIGNATURE_LENGTH}}})")


class BadToken(Exception):
    """A token that is forged, truncated, altered or of another kind."""


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown token kind {kind!r}")


@dataclass(frozen=True)
class TokenClaims:
    """What a valid token says. campaign_id is None for a v1 token, which binds the delivery id only."""

    delivery_id: int
    position: int | None
    campaign_id: int | None = None
    subscriber_id: int = 0

    def names(self, campaign_id: int, subscriber_id: int | None, accepts_v1_tokens: bool) -> bool:
        """Whether the delivery row holding these values is the one the token was issued for."""
        if self.campaign_id is None:
            return accepts_v1_tokens
        return campaign_id == self.campaign_id and subscriber_id in (None, self.subscriber_id)


# --- v2 ---------------------------------------------------------------------------------------------


@cache
def _v2_mac(secret_key: str) -> hmac.HMAC:
    """The keyed HMAC state, copied per delivery: keying costs as much as the HMAC itself."""
    key = hmac.new(secret_key.encode(), _V2_SALT, hashlib.sha512).digest()
    return hmac.new(key, digestmod=hashlib.sha512)


def _signatures(mac: hmac.HMAC, ids: str) -> str:
    mac = mac.copy()
    mac.update(ids.encode("ascii"))
    return urlsafe_b64encode(mac.digest()[: 3 * SIGNATURE_LENGTH]).decode("ascii")


def _slice(kind: str) -> slice:
    start = KINDS.index(kind) * SIGNATURE_LENGTH
    return slice(start, start + SIGNATURE_LENGTH)


@dataclass(frozen=True, slots=True)
class DeliveryTokens:
    """Every token of one delivery, from its one HMAC."""

    ids: str
    signatures: str

    @property
    def open(self) -> str:
        return f"{self.ids}.{self.signatures[0:20]}"

    @property
    def unsubscribe(self) -> str:
        return f"{self.ids}.{self.signatures[40:60]}"

    @property
    def view(self) -> str:
        return f"{self.ids}.{self.signatures[60:80]}"

    def click(self, position: int) -> str:
        return f"{self.ids}-{position:x}.{self.signatures[20:40]}"

    def token(self, kind: str, position: int | None = None) -> str:
        _check_kind(kind)
        if kind == "click":
            if position is None:
                raise ValueError("a click token needs the link's position")
            return self.click(position)
        return f"{self.ids}.{self.signatures[_slice(kind)]}"


class TokenMinter:
    """The tokens of each delivery of a send: the signing key is derived once, then one HMAC per
    delivery. `secret_key` defaults to the current app's."""

    def __init__(self, secret_key: str | None = None) -> None:
        self._mac = _v2_mac(secret_key or current_app.config["SECRET_KEY"])

    def issue(self, delivery_id: int, campaign_id: int, subscriber_id: int | None) -> DeliveryTokens:
        ids = f"{delivery_id:x}-{campaign_id:x}-{subscriber_id or 0:x}"
        return DeliveryTokens(ids, _signatures(self._mac, ids))


def make_token(
    kind: str, delivery_id: int, position: int | None = None, *,
    campaign_id: int | None = None, subscriber_id: int | None = None,
) -> str:
    """One v2 token. Without campaign_id, the campaign and subscriber are read from the delivery row
    (tools and tests; the send path mints with the ids it holds); a delivery that does not exist gets
    a token that names nothing."""
    _check_kind(kind)
    if campaign_id is None:
        campaign_id, subscriber_id = _delivery_binding(delivery_id)
    return TokenMinter().issue(delivery_id, campaign_id, subscriber_id).token(kind, position)


def _delivery_binding(delivery_id: int) -> tuple[int, int | None]:
    from mailapp.extensions import db
    from mailapp.models import Delivery

    row = db.session.get(Delivery, delivery_id)
    return (row.campaign_id, row.subscriber_id) if row is not None else (0, None)


# --- v1 ---------------------------------------------------------------------------------------------


@cache
def _v1_signer(secret_key: str, kind: str) -> Signer:
    return Signer(
        secret_key, salt=f"mailapp.tracking.{kind}", sep=".", key_derivation="hmac",
        digest_method=hashlib.sha256,
    )


def make_v1_token(kind: str, delivery_id: int, position: int | None = None) -> str:
    """A token as issued before migration 0003 (tests of the links still in inboxes)."""
    _check_kind(kind)
    payload = f"{delivery_id:x}" if position is None else f"{delivery_id:x}-{position:x}"
    return _v1_signer(current_app.config["SECRET_KEY"], kind).sign(payload).decode()


@cache
def _v1_verifier(secret_key: str, kind: str) -> hmac.HMAC:
    """The HMAC the v1 Signer computes, keyed once: itsdangerous derives the key again on every call."""
    derived = hmac.new(secret_key.encode(), f"mailapp.tracking.{kind}".encode(), hashlib.sha256).digest()
    return hmac.new(derived, digestmod=hashlib.sha256)


def _read_v1(kind: str, token: str, secret_key: str) -> TokenClaims:
    payload, separator, signature = token.rpartition(".")
    if not separator or not payload:
        raise BadToken("not a signed token")
    mac = _v1_verifier(secret_key, kind).copy()
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
    return TokenClaims(delivery_id, position)


# --- reading ----------------------------------------------------------------------------------------


def read_token(kind: str, token: str, *, secret_key: str | None = None) -> TokenClaims:
    """The claims of a valid token of this kind (v2, or v1 for the links still in inboxes); BadToken
    otherwise. `secret_key` defaults to the current app's: the open pixel's fast path runs outside
    any app context and passes it.

    Signatures are compared as text with the ones we would issue, so only that exact spelling passes.
    The claims still have to `names()` the delivery row before anything is done with it."""
    _check_kind(kind)
    key = secret_key or current_app.config["SECRET_KEY"]
    match = _V2_TOKEN.fullmatch(token)
    if match is None:
        claims = _read_v1(kind, token, key)
    else:
        ids, delivery_hex, campaign_hex, subscriber_hex, position_hex, signature = match.groups()
        expected = _signatures(_v2_mac(key), ids)[_slice(kind)]
        if not hmac.compare_digest(expected, signature):
            raise BadToken("bad signature")
        claims = TokenClaims(
            int(delivery_hex, 16),
            int(position_hex, 16) if position_hex is not None else None,
            int(campaign_hex, 16),
            int(subscriber_hex, 16),
        )
    if (kind == "click") != (claims.position is not None):
        raise BadToken("a click token has a link position, and only a click token")
    return claims


def public_url(path: str) -> str:
    return f"{current_app.config['PUBLIC_URL']}{path}"


def open_url(delivery_id: int, **binding: int | None) -> str:
    return public_url(f"/o/{make_token('open', delivery_id, **binding)}.gif")


def click_url(delivery_id: int, position: int, **binding: int | None) -> str:
    return public_url(f"/c/{make_token('click', delivery_id, position, **binding)}")


def unsubscribe_url(delivery_id: int, **binding: int | None) -> str:
    return public_url(f"/u/{make_token('unsubscribe', delivery_id, **binding)}")


def view_url(delivery_id: int, **binding: int | None) -> str:
    return public_url(f"/v/{make_token('view', delivery_id, **binding)}")
