"""Sign-in, sign-out, change-password and account (time zone) pages. Sign-in attempts are throttled
per client address and per account across every process (auth/throttle.py); each sign-in is a
server-side session (auth/sessions.py), so signing out ends it for every copy of its cookies."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required, login_user, logout_user

from mailapp.auth.forms import ChangePasswordForm, LoginForm, TimezoneForm
from mailapp.auth.next_url import safe_next_path
from mailapp.auth.services import authenticate, change_password, set_timezone
from mailapp.auth.sessions import end_session, is_remembered, start_session
from mailapp.auth.throttle import LoginThrottle
from mailapp.errors import TooManyAttemptsError, ValidationError, WrongPasswordError
from mailapp.extensions import db
from mailapp.timezones import is_zone_name

bp = Blueprint("auth", __name__)


@bp.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated:
        return redirect(url_for("dashboard.home"))
    form = LoginForm()
    if form.validate_on_submit():
        try:
            LoginThrottle.for_app().count_attempt(request.remote_addr or "", form.email.data)
        except TooManyAttemptsError as error:
            form.form_errors.append(error.message)
            return render_template("auth/login.html", form=form), error.status_code
        finally:
            # The count stands whatever follows, a refusal's too: hammering on keeps the window shut.
            db.session.commit()
        user = authenticate(form.email.data, form.password.data)
        if user is None:
            form.password.errors.append("Wrong email or password.")
        else:
            if not user.timezone and is_zone_name(form.browser_timezone.data or ""):
                user.timezone = form.browser_timezone.data
            start_session(user, remember=form.remember.data)
            login_user(user, remember=form.remember.data)
            db.session.commit()
            return redirect(safe_next_path(request.args.get("next")) or url_for("dashboard.home"))
    return render_template("auth/login.html", form=form)


@bp.route("/logout", methods=["POST"])
@login_required
def logout():
    end_session(current_user._get_current_object())
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
            db.session.commit()
            flash("Your password is changed. Every other browser signed in as you is signed out.", "success")
            return redirect(url_for("dashboard.home"))
    return render_template("auth/change_password.html", form=form)
