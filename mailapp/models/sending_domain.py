"""Sending domains: a domain whose mail mailapp DKIM-signs, with its keys and its last DNS check."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from mailapp.models.base import Base, UTCDateTime, utcnow

# RFC 1035: a name is at most 253 characters written out, a label (a selector is one) at most 63.
DOMAIN_MAX_LENGTH = 253
SELECTOR_MAX_LENGTH = 63


class SendingDomain(Base):
    __tablename__ = "sending_domains"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Lower case, IDNA (xn--) form, no final dot: the d= of the signatures and the key to look up by.
    domain: Mapped[str] = mapped_column(String(DOMAIN_MAX_LENGTH), unique=True)
    selector: Mapped[str] = mapped_column(String(SELECTOR_MAX_LENGTH))
    # PKCS#8 PEM sealed with SecretBox (mailapp/secret_box.py): never shown again once stored.
    rsa_private_key_sealed: Mapped[str] = mapped_column(Text)
    # What the DKIM record's p= publishes: base64 of the DER SubjectPublicKeyInfo.
    rsa_public_key: Mapped[str] = mapped_column(Text)
    # RFC 8463 dual signing: a second selector with an Ed25519 key (p= is the raw 32-byte key).
    ed25519_selector: Mapped[str | None] = mapped_column(String(SELECTOR_MAX_LENGTH))
    ed25519_private_key_sealed: Mapped[str | None] = mapped_column(Text)
    ed25519_public_key: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The last DNS check: True when nothing in it is an error; its findings as [{record, status, message}].
    check_passed: Mapped[bool | None] = mapped_column(Boolean)
    check_findings: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)

    @property
    def has_ed25519(self) -> bool:
        return self.ed25519_selector is not None
