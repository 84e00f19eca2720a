"""Secrets kept at rest in the database (DKIM private keys, relay passwords): sealed with Fernet
(AES-128-CBC with HMAC-SHA256, through `cryptography`) under a key derived from ENCRYPTION_KEY, or from
SECRET_KEY when that is not set. A sealed value is useless without the key, and never shown again once
stored: pages and the API say only whether one is set.

ENCRYPTION_KEY may list several keys separated by commas: the first seals, every one of them opens, so an
operator can rotate keys: put the new one first, and drop the old one once every secret sealed under it
has been saved again (SecretBox.reseal)."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import Flask, current_app

from mailapp.errors import MailappError


class SecretUnreadableError(MailappError):
    """A sealed value that none of the configured keys opens: the key changed since it was stored."""

    status_code = 500
    code = "secret_unreadable"


def _fernet(secret: str) -> Fernet:
    # HKDF, not the raw setting: any string (a long random SECRET_KEY, a passphrase) becomes a
    # uniformly random 32-byte key, and this use of SECRET_KEY is separated from its others.
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"mailapp secret box", info=b"v1").derive(
        secret.encode()
    )
    return Fernet(base64.urlsafe_b64encode(key))


class SecretBox:
    def __init__(self, secrets: list[str]) -> None:
        secrets = [secret for secret in secrets if secret]
        if not secrets:
            raise ValueError("SecretBox needs at least one key")
        self._fernet = MultiFernet([_fernet(secret) for secret in secrets])

    @classmethod
    def from_app(cls, app: Flask) -> SecretBox:
        return cls.from_config(app.config)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> SecretBox:
        configured = (config.get("ENCRYPTION_KEY") or "").split(",")
        keys = [key.strip() for key in configured if key.strip()] or [config["SECRET_KEY"]]
        return cls(keys)

    @classmethod
    def for_current_app(cls) -> SecretBox:
        return cls.from_app(current_app)

    def seal(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode("ascii")

    def open(self, sealed: str) -> str:
        try:
            return self._fernet.decrypt(sealed.encode("ascii")).decode()
        except (InvalidToken, UnicodeError) as error:
            raise SecretUnreadableError(
                "A stored secret cannot be decrypted: ENCRYPTION_KEY (or SECRET_KEY) changed since it was "
                "saved. Restore the old key, or add it after the new one in ENCRYPTION_KEY."
            ) from error

    def reseal(self, sealed: str) -> str:
        """The same secret sealed under the first key (for key rotation)."""
        return self._fernet.rotate(sealed.encode("ascii")).decode("ascii")
