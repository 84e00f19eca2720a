"""Login and logout pages. Login attempts are throttled per client address."""

from __future__ import annotations

from flask import current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required, login_user, logout_user

from mailapp.auth import bp
from mailapp.auth.forms import LoginForm
from mailapp.auth.services import authenticate
from mailapp.extensions import db, limiter


def _login_limit() -> str:
    return current_app.config["RATELIMIT_LOGIN"]


def _is_safe_next(target: str | None) -> bool:
    return bool(target) and target.startswith("/") and not target.startswith("//")


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
def login():  # noqa: ANN201
    if current_user.is_authenticated:
        return redirect(url_for("dashboard.home"))
    form = LoginForm()
    if form.validate_on_submit():
        user = authenticate(form.email.data, form.password.data)
        if user is None:
            form.password.errors.append("Wrong email or password.")
        else:
            login_user(user, remember=form.remember.data)
            db.session.commit()
            target = request.args.get("next")
            return redirect(target if _is_safe_next(target) else url_for("dashboard.home"))
    return render_template("auth/login.html", form=form)


@bp.route("/logout", methods=["POST"])
@login_required
def logout():  # noqa: ANN201
    logout_user()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.login"))
