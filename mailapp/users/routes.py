"""The users page (owners): the team and its roles, invites, deactivation, the two-factor requirement;
and the public page where an invitee accepts their invite."""

from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, url_for
from flask_login import current_user, login_required, login_user, logout_user

from mailapp.audit.services import record
from mailapp.auth.sessions import start_session
from mailapp.errors import ConflictError, InvalidLinkError, MailappError, ValidationError
from mailapp.extensions import db
from mailapp.models import SystemMessageKind
from mailapp.secret_box import SecretBox
from mailapp.sending.system_mail import queue_system_message
from mailapp.sending.tasks import commit_and_send
from mailapp.users import services
from mailapp.users.forms import AcceptInviteForm, InviteForm, RoleForm, TwoFactorPolicyForm
from mailapp.web import public_url_for

bp = Blueprint("users", __name__)


def _render_index(invite_form: InviteForm | None = None, invite_link: str | None = None, status: int = 200):
    users = services.list_users()
    return render_template(
        "users/index.html", users=users, invites=services.pending_invites(),
        # formdata=None: after a POST (an invite) the forms show the stored values, not the request's.
        invite_form=invite_form or InviteForm(formdata=None), invite_link=invite_link,
        role_forms={
            user.id: RoleForm(formdata=None, role=user.role, can_export=user.can_export) for user in users
        },
        policy_form=TwoFactorPolicyForm(formdata=None, required=services.two_factor_required()),
        invite_link_for=lambda pending: public_url_for(
            "users.accept_invite", token=services.invite_token(pending)
        ),
    ), status


@bp.get("/")
@login_required
def index():
    return _render_index()


@bp.post("/invite")
@login_required
def invite():
    form = InviteForm()
    if not form.validate_on_submit():
        return _render_index(form, status=422)
    try:
        created, token = services.create_invite(
            form.email.data, services.parse_role(form.role.data), current_user._get_current_object()
        )
    except (ValidationError, ConflictError) as error:
        form.email.errors.append(error.message)
        return _render_index(form, status=error.status_code)
    link = public_url_for("users.accept_invite", token=token)
    hours = current_app.config["INVITE_TTL_HOURS"]
    commit_and_send([queue_system_message(
        SecretBox.for_current_app(), SystemMessageKind.INVITE, created.email, "You are invited to mailapp",
        f"{current_user.email} invites you to their mailapp as {created.role}.\n\n"
        f"Choose your name and password here (the link works once, for {hours:g} hours):\n\n{link}\n",
    )])
    flash(f"Invite sent to {created.email}. You can also give them the link below.", "success")
    return _render_index(invite_link=link)


@bp.post("/invites/<int:invite_id>/withdraw")
@login_required
def withdraw_invite(invite_id: int):
    services.withdraw_invite(invite_id)
    db.session.commit()
    flash("The invite is withdrawn: its link no longer works.", "info")
    return redirect(url_for("users.index"))


def _change_user(change, done: str):
    """Run one change to a user, commit it and flash `done` (formatted with the user); a refusal
    (the last owner) is flashed instead, and a missing user is a 404."""
    try:
        user = change()
    except MailappError as error:
        if error.status_code == 404:
            raise
        db.session.rollback()
        flash(error.message, "danger")
    else:
        db.session.commit()
        flash(done.format(user=user), "success")
    return redirect(url_for("users.index"))


@bp.post("/<int:user_id>/role")
@login_required
def change_role(user_id: int):
    form = RoleForm()
    if not form.validate_on_submit():
        return redirect(url_for("users.index"))
    return _change_user(
        lambda: services.change_role(
            user_id, services.parse_role(form.role.data), can_export=bool(form.can_export.data)
        ),
        "{user.email} is now {user.role}.",
    )


@bp.post("/<int:user_id>/<any(deactivate, reactivate):action>")
@login_required
def set_active(user_id: int, action: str):
    change = services.deactivate if action == "deactivate" else services.reactivate
    return _change_user(lambda: change(user_id), "{user.email} is " + action + "d.")


@bp.post("/two-factor-policy")
@login_required
def two_factor_policy():
    form = TwoFactorPolicyForm()
    if form.validate_on_submit():
        services.require_two_factor(bool(form.required.data))
        db.session.commit()
        flash("Two-factor sign-in is " + ("required for everyone." if form.required.data else "optional."),
              "success")
    return redirect(url_for("users.index"))


@bp.route("/invite/<token>", methods=["GET", "POST"])
def accept_invite(token: str):
    try:
        pending = services.open_invite(token)
    except InvalidLinkError as error:
        return render_template("error.html", title="Invite not valid", message=error.message), 400
    form = AcceptInviteForm()
    if form.validate_on_submit():
        try:
            user = services.accept_invite(token, form.name.data, form.password.data)
        except InvalidLinkError as error:
            return render_template("error.html", title="Invite not valid", message=error.message), 400
        except (ValidationError, ConflictError) as error:
            db.session.rollback()
            form.password.errors.append(error.message)
        else:
            if current_user.is_authenticated:
                logout_user()
            start_session(user, remember=False)
            login_user(user)
            record("auth.sign_in", user, f"{user.email} signed in (invite accepted)", actor=user)
            db.session.commit()
            flash(f"Welcome, {user.name or user.email}. You are signed in as {user.role}.", "success")
            return redirect(url_for("dashboard.home"))
    return render_template("users/accept_invite.html", form=form, invite=pending)
