"""VERP addresses: a signed token naming one delivery in the envelope sender (bounces+<token>@domain) and
in the mailto List-Unsubscribe address (unsubscribe+<token>@domain), and reading them back.

The token is `base32(delivery id, 8 bytes big-endian || 10 bytes of signature)`, lower case, without
padding: 29 characters, so "unsubscribe+" and the token make 41 of the 64 characters a local part may
have (RFC 5321 4.5.3.1.1). Lower-case base32 survives MTAs that fold the local part's case, and has
neither "+" nor "-" nor ".", which some MTAs treat as separators. One HMAC-SHA256 per delivery, keyed
from SECRET_KEY apart from the tracking tokens' key: its first 10 bytes sign the bounce address, the
next 10 the unsubscribe address, so the Return-Path a recipient sees cannot unsubscribe anyone and a
List-Unsubscribe address cannot fake a bounce. 80 bits of signature: forging one takes 2^80 tries.

Delivery ids are never reused (AUTOINCREMENT, migration 0003), so the id alone names one recipient.
Delivery id 0 stands for test sends: its tokens are valid and name no delivery."""

from __future__ import annotations

import hashlib
import hmac
from base64 import b32decode
from dataclasses import dataclass, field
from functools import cache

KINDS = ("bounces", "unsubscribe")
_SALT = b"mailapp.verp.v1"
_ID_BYTES = 8
_SIGNATURE_BYTES = 10
TOKEN_LENGTH = 29  # base32 of 18 bytes, unpadded
# RFC 5321's limit on a local part.
MAX_LOCAL_PART = 64


@cache
def _keyed_mac(secret_key: str) -> hmac.HMAC:
    """The keyed HMAC state, copied per delivery: keying costs as much as the HMAC itself."""
    key = hmac.new(secret_key.encode(), _SALT, hashlib.sha256).digest()
    return hmac.new(key, digestmod=hashlib.sha256)


def _signatures(secret_key: str, id_bytes: bytes) -> bytes:
    mac = _keyed_mac(secret_key).copy()
    mac.update(id_bytes)
    return mac.digest()[: 2 * _SIGNATURE_BYTES]


_BASE32 = "abcdefghijklmnopqrstuvwxyz234567"
# Two base32 characters per 10 bits: the stdlib's b32encode is a Python loop, 20 µs a token.
_PAIRS = [a + b for a in _BASE32 for b in _BASE32]


def _token(id_bytes: bytes, signature: bytes) -> str:
    """Lower-case RFC 4648 base32 of the 18 bytes, unpadded: the same as
    b32encode(...).rstrip(b"=").lower(), at a tenth of the cost."""
    # 144 bits, 6 zero bits added: 15 pairs, of which the last character is padding alone.
    number = int.from_bytes(id_bytes + signature, "big") << 6
    pairs = _PAIRS
    return "".join([pairs[(number >> shift) & 1023] for shift in range(140, -1, -10)])[:TOKEN_LENGTH]


@dataclass(frozen=True, slots=True)
class VerpAddresses:
    """Both addresses of one delivery."""

    bounces: str
    unsubscribe: str


@dataclass(frozen=True)
class Verp:
    """VERP addresses under one bounce domain and key. Built once per send run; `addresses` is the hot
    path (one HMAC and two base32 encodings, a few microseconds)."""

    domain: str
    secret_key: str = field(repr=False)
    # The last delivery's addresses: the message builder asks for the mailto address and the send loop
    # for the envelope sender of the same delivery, one after the other, and one HMAC serves both.
    _last: list[tuple[int, VerpAddresses]] = field(default_factory=list, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "domain", self.domain.strip().lower())

    def addresses(self, delivery_id: int) -> VerpAddresses:
        last = self._last[0] if self._last else None
        if last is not None and last[0] == delivery_id:
            return last[1]
        id_bytes = delivery_id.to_bytes(_ID_BYTES, "big")
        signatures = _signatures(self.secret_key, id_bytes)
        addresses = VerpAddresses(
            f"bounces+{_token(id_bytes, signatures[:_SIGNATURE_BYTES])}@{self.domain}",
            f"unsubscribe+{_token(id_bytes, signatures[_SIGNATURE_BYTES:])}@{self.domain}",
        )
        self._last[:] = [(delivery_id, addresses)]
        return addresses

    def bounce_address(self, delivery_id: int) -> str:
        return self.addresses(delivery_id).bounces

    def read(self, address: str) -> tuple[str, int] | None:
        """(kind, delivery id) for a valid VERP address at this domain, else None: another domain, a
        forged, altered or truncated token. Case-insensitive, as MTAs may fold it either way."""
        local, at, domain = address.strip().strip("<>").rpartition("@")
        if not at or domain.lower().rstrip(".") != self.domain or len(local) > MAX_LOCAL_PART:
            return None
        kind, plus, token = local.lower().partition("+")
        if not plus or kind not in KINDS or len(token) != TOKEN_LENGTH:
            return None
        try:
            raw = b32decode(token.upper() + "===")  # 29 characters pad to 32
        except ValueError:
            return None
        id_bytes, signature = raw[:_ID_BYTES], raw[_ID_BYTES:]
        if _token(id_bytes, signature) != token:
            return None  # the last character's spare bit: exactly one spelling of each token passes
        signatures = _signatures(self.secret_key, id_bytes)
        expected = signatures[:_SIGNATURE_BYTES] if kind == "bounces" else signatures[_SIGNATURE_BYTES:]
        if not hmac.compare_digest(signature, expected):
            return None
        return kind, int.from_bytes(id_bytes, "big")


def verp_for(bounce_domain: str | None, secret_key: str) -> Verp | None:
    """The VERP of this configuration: None when BOUNCE_DOMAIN is unset (envelope senders stay the
    From address, List-Unsubscribe has no mailto)."""
    domain = (bounce_domain or "").strip()
    return Verp(domain, secret_key) if domain else None
