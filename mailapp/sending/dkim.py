"""DKIM signing of outgoing messages (RFC 6376): relaxed/relaxed canonicalization, rsa-sha256 and, when
the domain has that key too, ed25519-sha256 (RFC 8463), both through OpenSSL (`cryptography`). No
database, no Flask: a DkimSigner is built once per send run from the domain's keys, and signs each
message's final bytes. tests/test_dkim.py verifies every signature with dkimpy.

What a signer does per message is only what must be: the body hash, the signed headers'
canonicalization and the signatures. The private key objects, the tag list up to `t=` and the
canonical form of the signature header's fixed part are made once."""

from __future__ import annotations

import hashlib
import re
import time
from base64 import b64decode, b64encode
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from mailapp.errors import MailappError

# The headers signed when present, in this order. From is listed twice: the second, empty instance
# forbids adding a From after signing (RFC 6376 §5.4.2, "over-signing"). RFC 8058 requires both
# List-Unsubscribe headers to be covered for one-click unsubscribe.
SIGNED_HEADERS = (
    "from", "reply-to", "to", "subject", "date", "message-id", "mime-version", "content-type",
    "list-unsubscribe", "list-unsubscribe-post", "list-id", "feedback-id",
)
OVERSIGNED_HEADERS = ("from",)
RSA_KEY_BITS = 2048
# A folded signature header's lines stay well under the 78 characters RFC 5322 recommends.
_SIGNATURE_LINE = 72

_HEADER_FIELD = re.compile(rb"([^:\r\n]+):(.*(?:\r\n[ \t].*)*)\r\n")
_WHITE_SPACE_RUN = re.compile(rb"[ \t]+")


class DkimKeyError(MailappError):
    """A stored key that cannot be read, or is not of its algorithm: the send run cannot sign, so it
    stops (the engine pauses the campaign with this message) rather than send unsigned mail."""

    status_code = 500
    code = "dkim_key_error"


@dataclass(frozen=True)
class DkimKey:
    """One selector's private key, PKCS#8 PEM (RSA and Ed25519 alike)."""

    selector: str
    algorithm: str  # "rsa-sha256" or "ed25519-sha256"
    private_pem: str


def generate_rsa_key() -> tuple[str, str]:
    """A new RSA-2048 key: (private PKCS#8 PEM, public key as the base64 SPKI DER of a DKIM p= tag)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return _private_pem(key), b64encode(spki).decode("ascii")


def generate_ed25519_key() -> tuple[str, str]:
    """A new Ed25519 key: (private PKCS#8 PEM, public key as the base64 of its raw 32 bytes, RFC 8463)."""
    key = ed25519.Ed25519PrivateKey.generate()
    return _private_pem(key), b64encode(
        key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    ).decode("ascii")


def _private_pem(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")


def canonical_body(body: bytes) -> bytes:
    """RFC 6376 §3.4.4 relaxed body: white space runs become one space, none at line ends, no empty
    lines at the end; a non-empty body ends with CRLF. The body has CRLF line endings (message.py
    makes only those, and smtplib sends them as they are).

    With bytes.replace and `in`, which run in C at memory speed: a regular expression spends ~50 ns a
    byte trying its pattern at every position, several times the RSA signature for a 20 KB body."""
    if body and not body.endswith(b"\r\n"):
        body += b"\r\n"  # the last line's white space is then trimmed like any other's
    if b"\t" in body:
        body = body.replace(b"\t", b" ")
    while b"  " in body:
        body = body.replace(b"  ", b" ")
    if b" \r\n" in body:
        body = body.replace(b" \r\n", b"\r\n")
    end = len(body)
    while body.endswith(b"\r\n", 0, end):
        end -= 2
    return body[:end + 2] if end else b""


def canonical_header(name: bytes, value: bytes) -> bytes:
    """RFC 6376 §3.4.2 relaxed header: lower-case name, unfolded value with white space runs as one
    space and none around the colon or at the end."""
    value = _WHITE_SPACE_RUN.sub(b" ", value.replace(b"\r\n", b"")).strip(b" ")
    return name.strip().lower() + b":" + value + b"\r\n"


class _Selector:
    """One signature's invariants: its signing function, and its tags before t=, as written and in
    their canonical form."""

    def __init__(self, domain: str, key: DkimKey) -> None:
        try:
            private = serialization.load_pem_private_key(key.private_pem.encode("ascii"), password=None)
        except (ValueError, TypeError, UnicodeError) as error:
            raise DkimKeyError(f"The DKIM key of selector {key.selector} cannot be read.") from error
        if key.algorithm == "rsa-sha256" and isinstance(private, rsa.RSAPrivateKey):
            self._sign = self._rsa(private)
        elif key.algorithm == "ed25519-sha256" and isinstance(private, ed25519.Ed25519PrivateKey):
            self._sign = private.sign
        else:
            raise DkimKeyError(f"The DKIM key of selector {key.selector} is not an {key.algorithm} key.")
        self.head = f"v=1; a={key.algorithm}; c=relaxed/relaxed; d={domain};\r\n\ts={key.selector};"
        self.canonical_head = canonical_header(b"DKIM-Signature", self.head.encode("ascii"))[:-2]

    @staticmethod
    def _rsa(private: rsa.RSAPrivateKey):  # the signing function
        scheme, prehashed = padding.PKCS1v15(), Prehashed(hashes.SHA256())
        return lambda digest: private.sign(digest, scheme, prehashed)

    def sign(self, digest: bytes) -> bytes:
        """rsa-sha256 signs the SHA-256 digest (PKCS#1 v1.5); ed25519-sha256 signs the digest itself
        as its message (RFC 8463 §3), so both take the same 32 bytes."""
        return self._sign(digest)


class DkimSigner:
    """Signs messages of one domain with one or two keys (RSA, and Ed25519 when given)."""

    def __init__(self, domain: str, keys: list[DkimKey]) -> None:
        if not keys:
            raise DkimKeyError("A DKIM signer needs at least one key.")
        self.domain = domain
        self._selectors = [_Selector(domain, key) for key in keys]
        # The h= value as written and in canonical form, for each set of headers present: messages of
        # one campaign all have the same set, so this is computed once.
        self._h_tags: dict[tuple[bytes, ...], tuple[str, str]] = {}

    def sign(self, message: bytes, *, now: int | None = None) -> bytes:
        """The message with its DKIM-Signature header(s) in front."""
        split = message.find(b"\r\n\r\n")
        if split < 0:
            head, body = message + b"\r\n", b""
        else:
            head, body = message[:split + 2], message[split + 4:]
        body_hash = b64encode(hashlib.sha256(canonical_body(body)).digest()).decode("ascii")
        fields: dict[bytes, bytes] = {}
        for name, value in _HEADER_FIELD.findall(head):
            # A later instance wins: the last one is signed first (RFC 6376 §5.4.2).
            fields[name.strip().lower()] = value
        present = tuple(name for name in _SIGNED_NAMES if name in fields)
        signed = b"".join(canonical_header(name, fields[name]) for name in present)
        h_tag, canonical_h_tag = self._h_tags.get(present) or self._h_tag(present)
        timestamp = int(time.time()) if now is None else now
        # What follows the fixed tags, as written and canonical: relaxed canonicalization unfolds
        # "\r\n\t" into one space, and there is no other white space to reduce.
        tail = f" t={timestamp};\r\n\th={h_tag};\r\n\tbh={body_hash};\r\n\tb="
        canonical_tail = f" t={timestamp}; h={canonical_h_tag}; bh={body_hash}; b=".encode("ascii")
        signatures = []
        for selector in self._selectors:
            digest = hashlib.sha256(signed + selector.canonical_head + canonical_tail).digest()
            value = b64encode(selector.sign(digest)).decode("ascii")
            folded = "\r\n\t".join(
                value[start:start + _SIGNATURE_LINE] for start in range(0, len(value), _SIGNATURE_LINE)
            )
            signatures.append(f"DKIM-Signature: {selector.head}{tail}{folded}\r\n".encode("ascii"))
        return b"".join(signatures) + message

    def _h_tag(self, present: tuple[bytes, ...]) -> tuple[str, str]:
        """The h= value, folded after a colon where a line would pass _SIGNATURE_LINE (RFC 6376 allows
        folding white space around its colons), and its canonical form."""
        names = [name.decode("ascii") for name in present]
        names += [name for name in OVERSIGNED_HEADERS if name in names]
        lines = [""]
        for name in names:
            if lines[-1] and len(lines[-1]) + len(name) > _SIGNATURE_LINE - 4:
                lines.append("")
            lines[-1] += name if not lines[-1] else ":" + name
        self._h_tags[present] = h_tags = (":\r\n\t ".join(lines), ": ".join(lines))
        return h_tags


_SIGNED_NAMES = tuple(name.encode("ascii") for name in SIGNED_HEADERS)


def public_key_matches(published: str, ours: str) -> bool:
    """Whether a p= value from DNS is our public key (white space inside it is allowed in DNS)."""
    try:
        return b64decode(re.sub(r"\s+", "", published), validate=True) == b64decode(ours)
    except ValueError:
        return False
