"""Routes of the relays area: the SMTP relays and sender identities pages, their forms, delete, and a
relay's "Test connection"."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import login_required
from flask_wtf import FlaskForm
from wtforms.fields.choices import SelectChoice

from mailapp.errors import MailappError
from mailapp.extensions import db
from mailapp.forms import ActionForm, require_valid, show_error_on_fields
from mailapp.relays import services
from mailapp.relays.forms import IdentityForm, RelayForm
from mailapp.sending.relay import DEFAULT_RELAY_NAME

bp = Blueprint("relays", __name__)


@bp.get("/")
@login_required
def index():
    return _index_page()


def _index_page(test_result: dict[str, Any] | None = None) -> str:
    relays = services.list_relays()
    return render_template(
        "relays/index.html", relays=relays, identities=services.list_identities(),
        names={relay.id: relay.name for relay in relays}, default_name=DEFAULT_RELAY_NAME,
        action_form=ActionForm(), test_result=test_result, signing_domain=services.signing_domain,
    )


def _relay_choices(none_label: str, exclude: int | None = None) -> list[SelectChoice]:
    return [SelectChoice(0, none_label)] + [
        SelectChoice(relay.id, relay.name) for relay in services.list_relays() if relay.id != exclude
    ]


def _save(form: FlaskForm, save: Callable[[], Any], template: str, **context: Any):
    """The form's POST: save through the service and go back to the list, or show the refusal beside
    its fields (422)."""
    problems: list[Any] = []
    if form.validate_on_submit():
        try:
            saved = save()
        except MailappError as error:
            db.session.rollback()
            problems = show_error_on_fields(form, error)
        else:
            db.session.commit()
            flash(f"'{saved.name}' saved.", "success")
            return redirect(url_for("relays.index"))
    status = 422 if form.is_submitted() else 200
    return render_template(template, form=form, problems=problems, **context), status


@bp.route("/new", methods=["GET", "POST"])
@bp.route("/<int:relay_id>/edit", methods=["GET", "POST"])
@login_required
def edit_relay(relay_id: int | None = None):
    relay = services.get_relay(relay_id) if relay_id is not None else None
    if request.method == "GET" and relay is not None:
        form = RelayForm(data={**services.relay_to_dict(relay), "backup_relay_id": relay.backup_relay_id or 0,
                               "rate_per_second": f"{relay.rate_per_second:g}"})
    else:
        form = RelayForm()
    form.backup_relay_id.choices = _relay_choices("— none —", relay_id)

    def save():
        if relay_id is None:
            return services.create_relay(form.relay_data())
        return services.update_relay(relay_id, form.relay_data())

    return _save(form, save, "relays/edit_relay.html", relay=relay)


@bp.post("/<int:relay_id>/delete")
@login_required
def delete_relay(relay_id: int):
    require_valid()
    name = services.get_relay(relay_id).name
    services.delete_relay(relay_id)
    db.session.commit()
    flash(f"Relay '{name}' deleted: campaigns and identities that named it use the default now.", "success")
    return redirect(url_for("relays.index"))


@bp.post("/<int:relay_id>/test")
@login_required
def test_relay(relay_id: int):
    require_valid()
    result = services.test_connection(relay_id)
    db.session.rollback()
    return _index_page({"relay": services.get_relay(relay_id).name, **result})


@bp.route("/identities/new", methods=["GET", "POST"])
@bp.route("/identities/<int:identity_id>/edit", methods=["GET", "POST"])
@login_required
def edit_identity(identity_id: int | None = None):
    identity = services.get_identity(identity_id) if identity_id is not None else None
    if request.method == "GET" and identity is not None:
        form = IdentityForm(data={**services.identity_to_dict(identity), "relay_id": identity.relay_id or 0})
    else:
        form = IdentityForm()
    form.relay_id.choices = _relay_choices("— the default relay —")

    def save():
        if identity_id is None:
            return services.create_identity(form.identity_data())
        return services.update_identity(identity_id, form.identity_data())

    return _save(form, save, "relays/edit_identity.html", identity=identity)


@bp.post("/identities/<int:identity_id>/delete")
@login_required
def delete_identity(identity_id: int):
    require_valid()
    name = services.get_identity(identity_id).name
    services.delete_identity(identity_id)
    db.session.commit()
    flash(f"Sender identity '{name}' deleted.", "success")
    return redirect(url_for("relays.index"))
