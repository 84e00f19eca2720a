"""Two-factor sign-in with TOTP (RFC 6238, via pyotp): enrolment confirmed by a current code, the
secret sealed at rest (SecretBox), ten one-time recovery codes stored hashed, and codes that cannot be
replayed: a code is taken only if its 30-second step is later than the last one taken for the user."""

from __future__ import annotations

import hashlib
import secrets

import pyotp
import segno
from markupsafe import Markup
from sqlalchemy import delete, select, update

from mailapp.audit.services import record
from mailapp.errors import InvalidCodeError, InvalidStateError
from mailapp.extensions import db
from mailapp.models import RecoveryCode, User, utcnow
from mailapp.secret_box import SecretBox

ISSUER = "mailapp"
RECOVERY_CODE_COUNT = 10
# One step either side: a phone's clock a little off, or a code typed as it turns over.
VALID_WINDOW = 1


def new_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(user: User, secret: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=ISSUER)


def qr_svg(uri: str) -> Markup:
    """The URI as an inline SVG QR code: drawn here, no external service, no script."""
    return Markup(segno.make(uri, error="m").svg_inline(scale=5, dark="#000", light="#fff"))  # noqa: S704 - segno's own SVG


def _clean(code: str) -> str:
    return "".join(code.split()).replace("-", "").lower()


def _hash_code(code: str) -> str:
    return hashlib.sha256(_clean(code).encode()).hexdigest()


def _take_totp(user: User, secret: str, code: str) -> bool:
    """Whether `code` is a current code not taken before; takes it (records its step) if so."""
    code = _clean(code)
    if not (code.isascii() and code.isdigit() and len(code) == 6):
        return False
    try:
        step = pyotp.TOTP(secret).verify_and_get_timecode(code, valid_window=VALID_WINDOW)
    except pyotp.exceptions.OTPVerificationError:
        return False
    # The conditional UPDATE is the replay guard: of two requests with the same code, one wins.
    taken = db.session.execute(
        update(User)
        .where(User.id == user.id, (User.totp_last_step.is_(None)) | (User.totp_last_step < step))
        .values(totp_last_step=step)
        .execution_options(synchronize_session=False)
    ).rowcount
    if taken:
        user.totp_last_step = step
    return bool(taken)


def _take_recovery_code(user: User, code: str) -> bool:
    taken = db.session.execute(
        update(RecoveryCode)
        .where(
            RecoveryCode.user_id == user.id,
            RecoveryCode.code_hash == _hash_code(code),
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount
    return bool(taken)


def check_code(user: User, code: str, *, allow_recovery: bool = True) -> str:
    """Take a TOTP code (or a recovery code): "totp" or "recovery"; InvalidCodeError otherwise."""
    if user.totp_secret_sealed is None:
        raise InvalidStateError("Two-factor sign-in is not on for this account.")
    code = (code or "")[:64]
    if _take_totp(user, SecretBox.for_current_app().open(user.totp_secret_sealed), code):
        return "totp"
    if allow_recovery and _take_recovery_code(user, code):
        return "recovery"
    raise InvalidCodeError(
        "That code is wrong, expired, or already used. Enter the current code from your app, "
        "or an unused recovery code.",
        [{"field": "code"}],
    )


def enrol(user: User, secret: str, code: str) -> list[str]:
    """Turn two-factor sign-in on with `secret` once `code` proves the app has it; the recovery codes
    (shown once: only their hashes are kept)."""
    if user.totp_secret_sealed is not None:
        raise InvalidStateError("Two-factor sign-in is already on. Turn it off first to change apps.")
    if not _take_totp(user, secret, code or ""):
        raise InvalidCodeError(
            "That code does not match. Enter the current 6-digit code your app shows.", [{"field": "code"}]
        )
    user.totp_secret_sealed = SecretBox.for_current_app().seal(secret)
    codes = _new_recovery_codes(user)
    record("user.two_factor_enable", user, f"{user.email} turned on two-factor sign-in")
    return codes


def _new_recovery_codes(user: User) -> list[str]:
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes = [secrets.token_hex(5) for _ in range(RECOVERY_CODE_COUNT)]
    db.session.add_all(RecoveryCode(user_id=user.id, code_hash=_hash_code(code)) for code in codes)
    db.session.flush()
    return [f"{code[:5]}-{code[5:]}" for code in codes]


def disable(user: User, code: str) -> None:
    """Turn two-factor sign-in off; needs a current code or a recovery code."""
    check_code(user, code)
    user.totp_secret_sealed = None
    user.totp_last_step = None
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    db.session.flush()
    record("user.two_factor_disable", user, f"{user.email} turned off two-factor sign-in")


def unused_recovery_codes(user: User) -> int:
    return len(
        db.session.scalars(
            select(RecoveryCode.id).where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))
        ).all()
    )
