"""Secrets at rest: sealed values open with the key that sealed them (or any listed after a rotation),
and never with another."""

from __future__ import annotations

import pytest

from mailapp.secret_box import SecretBox, SecretUnreadableError


def test_a_sealed_secret_opens_with_its_key_and_does_not_contain_the_plaintext():
    box = SecretBox(["first key"])
    sealed = box.seal("relay password ü")
    assert "relay password" not in sealed
    assert box.open(sealed) == "relay password ü"


def test_a_secret_sealed_under_another_key_is_refused_with_a_clear_error():
    sealed = SecretBox(["old key"]).seal("dkim private key")
    with pytest.raises(SecretUnreadableError, match="ENCRYPTION_KEY"):
        SecretBox(["new key"]).open(sealed)


def test_after_a_rotation_old_secrets_still_open_and_reseal_moves_them_to_the_new_key():
    old_sealed = SecretBox(["old key"]).seal("password")
    rotated = SecretBox(["new key", "old key"])
    assert rotated.open(old_sealed) == "password"
    assert SecretBox(["new key"]).open(rotated.reseal(old_sealed)) == "password"


def test_the_app_box_uses_encryption_key_when_set_and_secret_key_otherwise(app):
    from_secret_key = SecretBox.from_app(app).seal("x")
    assert SecretBox([app.config["SECRET_KEY"]]).open(from_secret_key) == "x"
    app.config["ENCRYPTION_KEY"] = "separate key, previous key"
    try:
        sealed = SecretBox.from_app(app).seal("y")
        assert SecretBox(["separate key"]).open(sealed) == "y"
        with pytest.raises(SecretUnreadableError):
            SecretBox([app.config["SECRET_KEY"]]).open(sealed)
    finally:
        app.config["ENCRYPTION_KEY"] = ""
