"""Routes of the subscribers area: lists, subscribers, CSV import (with live progress) and export."""

from __future__ import annotations

import json
from typing import Any

from flask import (
    Blueprint,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import login_required
from sqlalchemy import select
from wtforms.fields.choices import SelectChoice

from mailapp.audit.services import record_read
from mailapp.errors import MailappError, ValidationError
from mailapp.extensions import db
from mailapp.forms import ActionForm, require_valid
from mailapp.ids import id_arg, page_arg
from mailapp.json_nesting import nesting_exceeds
from mailapp.models.subscriber import Subscriber, SubscriberList, SubscriberStatus
from mailapp.segment_rules import ATTRIBUTE_OPS
from mailapp.sending import suppression
from mailapp.subscribers import exports, imports, services, subscriber_lists, tasks, typed_attributes
from mailapp.subscribers.forms import ImportForm, ListForm, StatusForm, SubscriberForm
from mailapp.web import csv_download

bp = Blueprint("subscribers", __name__)

PER_PAGE = 50
LISTS_PER_PAGE = 25
STATUS_ACTIONS = {
    SubscriberStatus.ACTIVE: "resubscribed",
    SubscriberStatus.UNSUBSCRIBED: "unsubscribed",
    SubscriberStatus.BLOCKLISTED: "blocklisted",
    SubscriberStatus.BOUNCED: "marked bounced",
}


def _int_arg(name: str) -> int | None:
    return request.args.get(name, type=id_arg)


def _attributes_from_typed_rows(form: SubscriberForm) -> None:
    """The typed attribute rows, when the page posted them, become the form's attributes JSON."""
    if "attr_row_key" in request.form:
        rows = typed_attributes.attributes_from_rows(
            request.form.getlist("attr_row_key"), request.form.getlist("attr_row_type"),
            request.form.getlist("attr_row_value"),
        )
        form.attributes.data = json.dumps(rows, ensure_ascii=False)


def _typed_context(form: SubscriberForm) -> dict[str, Any]:
    """Typed rows for the attributes the form holds (None: they need JSON), and the key suggestions."""
    if "attr_row_key" in request.form:  # a refused post shows the rows as typed
        posted = zip(request.form.getlist("attr_row_key"), request.form.getlist("attr_row_type"),
                     request.form.getlist("attr_row_value"), strict=False)
        rows = [row for row in posted if row[0].strip()]
    else:
        current = form.attributes.data
        if isinstance(current, str):
            # Refused JSON text is shown back as JSON; only parse what the services would accept.
            try:
                current = None if nesting_exceeds(current) else json.loads(current or "{}")
            except ValueError:
                current = None
        rows = typed_attributes.typed_rows(current) if isinstance(current, dict) else None
    return {"attribute_rows": rows, "attribute_types": typed_attributes.TYPES,
            "attribute_keys": typed_attributes.key_suggestions()}


def _form_error(form: Any, error: MailappError) -> None:
    """Show a service error next to the field it names, or above the form."""
    named = [problem["field"] for problem in error.details if problem["field"]]
    field = getattr(form, str(named[0]), None) if named else None
    if field is not None and hasattr(field, "errors"):
        field.errors = [*field.errors, error.message]
    else:
        flash(error.message, "error")


# --- lists -------------------------------------------------------------------------------------------

@bp.get("/lists")
@login_required
def lists():
    return _render_lists(ListForm())


def _render_lists(form: ListForm, status: int = 200):
    page = request.args.get("page", 1, type=page_arg)
    pager = db.paginate(select(SubscriberList).order_by(SubscriberList.name), page=page,
                        per_page=LISTS_PER_PAGE, error_out=False)
    counts = subscriber_lists.list_counts(item.id for item in pager.items)
    return render_template("subscribers/lists.html", pager=pager, counts=counts, form=form,
                           delete_form=ActionForm()), status


@bp.post("/lists")
@login_required
def create_list():
    form = ListForm()
    if form.validate_on_submit():
        try:
            created = subscriber_lists.create_list(form.name.data, form.description.data)
        except MailappError as error:
            db.session.rollback()
            _form_error(form, error)
        else:
            db.session.commit()
            flash(f"List '{created.name}' created. Add subscribers or import a CSV file.", "success")
            return redirect(url_for("subscribers.list_detail", list_id=created.id))
    return _render_lists(form, 422)


@bp.get("/lists/<int:list_id>")
@login_required
def list_detail(list_id: int):
    target = db.get_or_404(SubscriberList, list_id)
    return _render_list(target, ListForm(obj=target))


def _render_list(
    target: SubscriberList, form: ListForm, status: int = 200, import_form: ImportForm | None = None
):
    page = services.subscriber_page(list_id=target.id, before=_int_arg("before"), after=_int_arg("after"),
                                    limit=PER_PAGE)
    return render_template(
        "subscribers/list.html",
        target=target,
        page=page,
        counts=subscriber_lists.list_counts([target.id])[target.id],
        form=form,
        import_form=import_form or ImportForm(),
        delete_form=ActionForm(),
        imports=imports.recent_imports(target.id),
        campaign_names=services.unsubscribe_campaign_names(page.items),
    ), status


@bp.post("/lists/<int:list_id>")
@login_required
def update_list(list_id: int):
    target = db.get_or_404(SubscriberList, list_id)
    form = ListForm()
    if form.validate_on_submit():
        try:
            subscriber_lists.update_list(target, name=form.name.data, description=form.description.data or "")
        except MailappError as error:
            db.session.rollback()
            _form_error(form, error)
        else:
            db.session.commit()
            flash("List saved.", "success")
            return redirect(url_for("subscribers.list_detail", list_id=list_id))
    return _render_list(db.session.get(SubscriberList, list_id), form, 422)


@bp.post("/lists/<int:list_id>/delete")
@login_required
def delete_list(list_id: int):
    target = db.get_or_404(SubscriberList, list_id)
    require_valid()
    name = target.name
    subscriber_lists.delete_list(target)
    db.session.commit()
    flash(f"List '{name}' deleted. Its subscribers were kept.", "success")
    return redirect(url_for("subscribers.lists"))


@bp.get("/lists/<int:list_id>/export")
@login_required
def export_list(list_id: int):
    target = db.get_or_404(SubscriberList, list_id)
    record_read("export.list", target, f"list {target.name!r} exported as CSV")
    return csv_download(exports.export_list_csv(target.id), exports.export_filename(target))


# --- imports -------------------------------------------------------------------------------------------

@bp.post("/lists/<int:list_id>/import")
@login_required
def import_csv(list_id: int):
    target = db.get_or_404(SubscriberList, list_id)
    form = ImportForm()
    if form.validate_on_submit():
        upload = form.file.data
        try:
            record = imports.start_import(target, upload.filename or "", upload.stream)
        except MailappError as error:
            db.session.rollback()
            form.file.errors = [*form.file.errors, error.message]
        else:
            db.session.commit()
            tasks.run_import.delay(record.id)
            return redirect(url_for("subscribers.import_detail", import_id=record.id))
    return _render_list(target, ListForm(obj=target), 422, import_form=form)


@bp.get("/imports/<int:import_id>")
@login_required
def import_detail(import_id: int):
    record = imports.get_import(import_id)
    target = db.session.get(SubscriberList, record.list_id) if record.list_id else None
    return render_template("subscribers/import.html", record=record, target=target,
                           status=imports.import_to_dict(record))


@bp.get("/imports/<int:import_id>/status")
@login_required
def import_status(import_id: int):
    return jsonify(imports.import_to_dict(imports.get_import(import_id)))


# --- subscribers ---------------------------------------------------------------------------------------

@bp.get("/subscribers")
@login_required
def index():
    q = request.args.get("q", "").strip()
    list_id = _int_arg("list_id")
    status = request.args.get("status", "")
    if status and status not in {s.value for s in SubscriberStatus}:
        status = ""
    attribute = {name: request.args.get(name, "").strip() for name in ("attr_key", "attr_op", "attr_value")}
    rules = None
    if attribute["attr_key"]:
        try:
            rules = services.attribute_rule(
                attribute["attr_key"], attribute["attr_op"] or "equals", attribute["attr_value"]
            )
        except ValidationError as error:
            flash(f"Attribute filter: {error.message}", "error")
    page = services.subscriber_page(q=q, list_id=list_id, status=status or None, before=_int_arg("before"),
                                    after=_int_arg("after"), limit=PER_PAGE, rules=rules)
    memberships = services.list_ids_by_subscriber([item.id for item in page.items])
    all_lists = subscriber_lists.all_lists()
    return render_template(
        "subscribers/index.html",
        page=page,
        memberships=memberships,
        lists_by_id={item.id: item for item in all_lists},
        all_lists=all_lists,
        filters={"q": q, "list_id": list_id, "status": status, **attribute},
        attribute_ops=ATTRIBUTE_OPS,
        statuses=[s.value for s in SubscriberStatus],
        campaign_names=services.unsubscribe_campaign_names(page.items),
        has_any=page.items or db.session.scalar(select(Subscriber.id).limit(1)) is not None,
    )


def _list_choices(form: SubscriberForm) -> None:
    form.lists.choices = [SelectChoice(item.id, item.name) for item in subscriber_lists.all_lists()]


@bp.route("/subscribers/new", methods=["GET", "POST"])
@login_required
def create_subscriber():
    form = SubscriberForm()
    _list_choices(form)
    if not form.is_submitted() and _int_arg("list_id"):
        form.lists.data = [_int_arg("list_id")]
    if form.validate_on_submit():
        try:
            _attributes_from_typed_rows(form)
            created = services.create_subscriber(
                form.email.data, form.name.data, form.attributes.data, form.lists.data or [], form.status.data
            )
        except MailappError as error:
            db.session.rollback()
            _form_error(form, error)
        else:
            db.session.commit()
            flash(f"Subscriber {created.email} added.", "success")
            return redirect(url_for("subscribers.edit_subscriber", subscriber_id=created.id))
    return render_template("subscribers/edit.html", form=form, subscriber=None, **_typed_context(form)), (
        422 if form.is_submitted() else 200)


@bp.route("/subscribers/<int:subscriber_id>", methods=["GET", "POST"])
@login_required
def edit_subscriber(subscriber_id: int):
    subscriber = db.get_or_404(Subscriber, subscriber_id)
    form = SubscriberForm(obj=subscriber)
    _list_choices(form)
    if not form.is_submitted():
        form.lists.data = [item.id for item in subscriber.lists]
        form.attributes.data = json.dumps(subscriber.attributes or {}, indent=2, ensure_ascii=False)
    if form.validate_on_submit() and not form.refuses_unconfirmed_reactivation(subscriber.status):
        try:
            _attributes_from_typed_rows(form)
            services.update_subscriber(
                subscriber, email=form.email.data, name=form.name.data, attributes=form.attributes.data,
                status=form.status.data, list_ids=form.lists.data or [],
            )
        except MailappError as error:
            db.session.rollback()
            _form_error(form, error)
        else:
            db.session.commit()
            flash("Subscriber saved.", "success")
            return redirect(url_for("subscribers.edit_subscriber", subscriber_id=subscriber_id))
    subscriber = db.session.get(Subscriber, subscriber_id)
    return render_template(
        "subscribers/edit.html", form=form, subscriber=subscriber,
        status_form=StatusForm(), delete_form=ActionForm(),
        mail_events=suppression.events_for_subscriber(subscriber.id, subscriber.email),
        suppression=suppression.suppression_in_force(subscriber.email),
        system_messages=services.system_messages_for(subscriber.id),
        campaign_names=services.unsubscribe_campaign_names([subscriber]), **_typed_context(form),
    ), 422 if form.is_submitted() else 200


@bp.post("/subscribers/<int:subscriber_id>/status")
@login_required
def change_status(subscriber_id: int):
    """Resubscribe, unsubscribe, blocklist or unblocklist (which makes them active again)."""
    subscriber = db.get_or_404(Subscriber, subscriber_id)
    form = StatusForm()
    require_valid(form)
    services.set_subscriber_status(subscriber, form.status.data)
    db.session.commit()
    flash(f"{subscriber.email} {STATUS_ACTIONS[SubscriberStatus(form.status.data)]}.", "success")
    return redirect(request.form.get("next") if _is_local(request.form.get("next"))
                    else url_for("subscribers.edit_subscriber", subscriber_id=subscriber_id))


def _is_local(target: str | None) -> bool:
    return bool(target) and target.startswith("/") and not target.startswith("//")


@bp.post("/subscribers/<int:subscriber_id>/delete")
@login_required
def delete_subscriber(subscriber_id: int):
    subscriber = db.get_or_404(Subscriber, subscriber_id)
    require_valid()
    email = subscriber.email
    services.delete_subscriber(subscriber)
    db.session.commit()
    flash(f"Subscriber {email} deleted.", "success")
    return redirect(url_for("subscribers.index"))
