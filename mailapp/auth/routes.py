"""Sign-in (password, then the two-factor code when the user has it), sign-out, password change and
reset, two-factor enrolment, the account page (time zone) and the user's API tokens. Sign-in attempts
are throttled per client address and per account across every process (auth/throttle.py); each
sign-in is a server-side session (auth/sessions.py), so signing out ends it for every copy of its
cookies."""

from __future__ import annotations

import contextlib
import time
from datetime import timedelta

from flask import Blueprint, current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user
from sqlalchemy import select
from wtforms.fields.choices import SelectChoice

from mailapp.audit.services import record
from mailapp.auth import two_factor
from mailapp.auth.forms import (
    ChangePasswordForm,
    CodeForm,
    ForgotPasswordForm,
    LoginForm,
    NewPasswordForm,
    TimezoneForm,
    TokenForm,
)
from mailapp.auth.next_url import safe_next_path
from mailapp.auth.services import (
    active_user_by_email,
    authenticate,
    change_password,
    issue_api_token,
    password_reset_token,
    reset_password,
    revoke_token,
    set_timezone,
    user_for_reset_token,
)
from mailapp.auth.sessions import end_session, is_remembered, start_session
from mailapp.auth.throttle import LoginThrottle
from mailapp.errors import (
    InvalidLinkError,
    MailappError,
    TooManyAttemptsError,
    ValidationError,
    WrongPasswordError,
)
from mailapp.extensions import db
from mailapp.models import ApiToken, Role, SystemMessageKind, User, utcnow
from mailapp.secret_box import SecretBox, SecretUnreadableError
from mailapp.sending.system_mail import queue_system_message
from mailapp.sending.tasks import commit_and_send
from mailapp.timezones import is_zone_name
from mailapp.web import public_url_for

bp = Blueprint("auth", __name__)

PENDING_SIGN_IN = "two_factor_pending"
PENDING_SECRET = "two_factor_enrolling"  # noqa: S105 - a session key, not a password


def _throttled(form, address_email: str, purpose: str = "") -> int | None:
    """Count an attempt; the 429 status when refused (the error is put on the form)."""
    try:
        LoginThrottle.for_app().count_attempt(request.remote_addr or "", address_email, purpose=purpose)
    except TooManyAttemptsError as error:
        form.form_errors.append(error.message)
        return error.status_code
    finally:
        # The count stands whatever follows, a refusal's too: hammering on keeps the window shut.
        db.session.commit()
    return None


def _finish_sign_in(user: User, remember: bool, next_path: str | None, how: str):
    start_session(user, remember=remember)
    login_user(user, remember=remember)
    record("auth.sign_in", user, f"{user.email} signed in ({how})", actor=user)
    db.session.commit()
    return redirect(safe_next_path(next_path) or url_for("dashboard.home"))


@bp.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated:
        return redirect(url_for("dashboard.home"))
    form = LoginForm()
    if form.validate_on_submit():
        if (status := _throttled(form, form.email.data)) is not None:
            return render_template("auth/login.html", form=form), status
        user = authenticate(form.email.data, form.password.data)
        if user is None:
            form.password.errors.append("Wrong email or password.")
            attempted = form.email.data[:320]
            record("auth.sign_in_failed", summary=f"wrong password or unknown account {attempted}")
            db.session.commit()
            return render_template("auth/login.html", form=form)
        # The browser's zone becomes the user's setting at the first sign-in (the account page changes it).
        if not user.timezone and is_zone_name(form.browser_timezone.data or ""):
            user.timezone = form.browser_timezone.data
        if user.has_two_factor:
            # No session yet: only the signed cookie knows the password step passed, for a few minutes.
            session[PENDING_SIGN_IN] = {
                "user": user.id, "at": time.time(), "remember": bool(form.remember.data),
                "next": request.args.get("next"),
            }
            db.session.commit()
            return redirect(url_for("auth.login_code"))
        return _finish_sign_in(user, bool(form.remember.data), request.args.get("next"), "password")
    return render_template("auth/login.html", form=form)


def _pending_user() -> tuple[User, dict] | None:
    pending = session.get(PENDING_SIGN_IN)
    if not isinstance(pending, dict):
        return None
    if time.time() - float(pending.get("at", 0)) > current_app.config["TWO_FACTOR_STEP_SECONDS"]:
        session.pop(PENDING_SIGN_IN, None)
        return None
    user = db.session.get(User, pending.get("user"))
    if user is None or not user.is_active or not user.has_two_factor:
        return None
    return user, pending


@bp.route("/login/code", methods=["GET", "POST"])
def login_code():
    found = _pending_user()
    if found is None:
        flash("Sign in with your password first.", "warning")
        return redirect(url_for("auth.login"))
    user, pending = found
    form = CodeForm()
    if form.validate_on_submit():
        if (status := _throttled(form, user.email, purpose="code")) is not None:
            return render_template("auth/login_code.html", form=form), status
        try:
            how = two_factor.check_code(user, form.code.data)
        except MailappError as error:
            form.code.errors.append(error.message)
            record("auth.sign_in_failed", user, f"{user.email}: wrong two-factor code", actor=user)
            db.session.commit()
        else:
            session.pop(PENDING_SIGN_IN, None)
            return _finish_sign_in(user, bool(pending.get("remember")), pending.get("next"), how)
    return render_template("auth/login_code.html", form=form)


@bp.route("/logout", methods=["POST"])
@login_required
def logout():
    user = current_user._get_current_object()
    end_session(user)
    record("auth.sign_out", user, f"{user.email} signed out")
    db.session.commit()
    logout_user()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.login"))


@bp.route("/account/", methods=["GET", "POST"])
@login_required
def account():
    """The account's settings: the time zone every dashboard time is shown in. static/js/app.js posts
    the browser's zone here on the first visit, when none is set."""
    user = current_user._get_current_object()
    form = TimezoneForm(data={"timezone": user.timezone})
    if form.validate_on_submit():
        try:
            set_timezone(user, form.timezone.data or "")
        except ValidationError as error:
            db.session.rollback()
            form.timezone.errors = [*form.timezone.errors, error.message]
        else:
            db.session.commit()
            flash(f"Times are now shown in {user.timezone}.", "success")
            return redirect(url_for("auth.account"))
    status = 422 if form.is_submitted() else 200
    return render_template("auth/account.html", form=form), status


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
def change_password_page():
    form = ChangePasswordForm()
    if form.validate_on_submit():
        user = current_user._get_current_object()
        remember = is_remembered(user)
        try:
            change_password(user, form.current_password.data, form.new_password.data)
        except WrongPasswordError as error:
            form.current_password.errors.append(error.message)
        except ValidationError as error:
            form.new_password.errors.append(error.message)
        else:
            # Every session of the user ended, this one too; this browser carries on in a fresh one.
            start_session(user, remember=remember)
            login_user(user, remember=remember)
            record("user.password_change", user, f"{user.email} changed their password")
            db.session.commit()
            flash("Your password is changed. Every other browser signed in as you is signed out.", "success")
            return redirect(url_for("dashboard.home"))
    return render_template("auth/change_password.html", form=form)


# --- password reset --------------------------------------------------------------------------------


@bp.route("/forgot-password", methods=["GET", "POST"])
def forgot_password():
    form = ForgotPasswordForm()
    if form.validate_on_submit():
        email = form.email.data.strip().lower()
        if (status := _throttled(form, email, purpose="reset")) is not None:
            return render_template("auth/forgot_password.html", form=form), status
        user = active_user_by_email(email)
        if user is not None:
            link = public_url_for("auth.reset_password_page", token=password_reset_token(user))
            record("user.password_reset_request", user, f"reset link sent to {user.email}", actor=user)
            minutes = current_app.config["PASSWORD_RESET_TTL_MINUTES"]
            commit_and_send([queue_system_message(
                SecretBox.for_current_app(), SystemMessageKind.PASSWORD_RESET, user.email,
                "Reset your mailapp password",
                f"Someone (we hope you) asked to reset the password of {user.email}.\n\n"
                f"Choose a new password here (the link works once, for {minutes:g} minutes):\n\n{link}\n\n"
                "If it was not you, ignore this message: your password stays as it is.\n",
            )])
        # The same answer, queued or not: the page tells nobody which addresses have accounts.
        flash("If that address has an account, a reset link is on its way. Check your inbox.", "info")
        return redirect(url_for("auth.login"))
    return render_template("auth/forgot_password.html", form=form)


@bp.route("/reset-password/<token>", methods=["GET", "POST"])
def reset_password_page(token: str):
    try:
        user = user_for_reset_token(token)
    except InvalidLinkError as error:
        return render_template("error.html", title="Link not valid", message=error.message), 400
    form = NewPasswordForm()
    if form.validate_on_submit():
        try:
            reset_password(token, form.new_password.data)
        except ValidationError as error:
            form.new_password.errors.append(error.message)
        else:
            record("user.password_reset", user, f"{user.email} reset their password", actor=user)
            db.session.commit()
            flash("Your password is changed, and every browser signed in as you is signed out. "
                  "Sign in with the new password.", "success")
            return redirect(url_for("auth.login"))
    return render_template("auth/reset_password.html", form=form, user=user)


# --- two-factor sign-in ----------------------------------------------------------------------------


@bp.route("/account/two-factor")
@login_required
def two_factor_page():
    user = current_user._get_current_object()
    return render_template(
        "auth/two_factor.html", user=user, disable_form=CodeForm(),
        unused_codes=two_factor.unused_recovery_codes(user) if user.has_two_factor else 0,
    )


@bp.route("/account/two-factor/enrol", methods=["GET", "POST"])
@login_required
def two_factor_enrol():
    user = current_user._get_current_object()
    if user.has_two_factor:
        return redirect(url_for("auth.two_factor_page"))
    box = SecretBox.for_current_app()
    sealed = session.get(PENDING_SECRET)
    # The secret waits in the (signed, and here sealed) session cookie until a code confirms it.
    secret = None
    if isinstance(sealed, str):
        with contextlib.suppress(SecretUnreadableError):  # sealed under a key since rotated away
            secret = box.open(sealed)
    if secret is None:
        secret = two_factor.new_secret()
        session[PENDING_SECRET] = box.seal(secret)
    form = CodeForm()
    if form.validate_on_submit():
        try:
            codes = two_factor.enrol(user, secret, form.code.data)
        except MailappError as error:
            form.code.errors.append(error.message)
        else:
            db.session.commit()
            session.pop(PENDING_SECRET, None)
            return render_template("auth/recovery_codes.html", codes=codes)
    uri = two_factor.provisioning_uri(user, secret)
    return render_template(
        "auth/two_factor_enrol.html", form=form, secret=secret, qr=two_factor.qr_svg(uri)
    )


@bp.post("/account/two-factor/disable")
@login_required
def two_factor_disable():
    user = current_user._get_current_object()
    form = CodeForm()
    if form.validate_on_submit():
        try:
            two_factor.disable(user, form.code.data)
        except MailappError as error:
            db.session.rollback()
            flash(error.message, "danger")
        else:
            db.session.commit()
            flash("Two-factor sign-in is off.", "info")
    return redirect(url_for("auth.two_factor_page"))


# --- API tokens ------------------------------------------------------------------------------------


def _token_form(user: User) -> TokenForm:
    form = TokenForm()
    allowed = [role for role in Role if user.user_role.at_least(role)]
    form.role.choices = [SelectChoice(role.value, role.value) for role in allowed]
    if not form.role.data:
        form.role.data = user.role
    return form


def _render_tokens(form: TokenForm, new_token: str | None = None):
    user = current_user._get_current_object()
    tokens = db.session.scalars(
        select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.id.desc())
    ).all()
    return render_template(
        "auth/tokens.html", form=form, tokens=tokens, new_token=new_token, now=utcnow(),
    )


@bp.get("/account/tokens")
@login_required
def tokens():
    return _render_tokens(_token_form(current_user._get_current_object()))


@bp.post("/account/tokens")
@login_required
def create_token():
    user = current_user._get_current_object()
    form = _token_form(user)
    if not form.validate_on_submit():
        return _render_tokens(form), 422
    days = form.expires_in_days.data
    try:
        token, row = issue_api_token(
            user, name=form.name.data, role=Role(form.role.data),
            expires_at=utcnow() + timedelta(days=days) if days else None,
        )
    except ValidationError as error:
        form.name.errors.append(error.message)
        return _render_tokens(form), 422
    record("token.create", row, f"token {row.name!r} ({row.role}) for {user.email}")
    db.session.commit()
    return _render_tokens(_token_form(user), new_token=token)


@bp.post("/account/tokens/<int:token_id>/revoke")
@login_required
def revoke_token_page(token_id: int):
    user = current_user._get_current_object()
    row = revoke_token(user, token_id)
    record("token.revoke", row, f"token {row.name!r} of user {row.user_id} revoked")
    db.session.commit()
    flash(f"Token {row.name!r} is revoked.", "info")
    return redirect(url_for("auth.tokens"))
