"""Routes of the campaigns area: list, create, edit, duplicate, delete, preview, schedule or send,
unschedule, pause, resume, cancel, retry failed, test sends, the live progress JSON and the delivery log."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, flash, jsonify, redirect, render_template, request, url_for
from flask_login import login_required
from sqlalchemy import select
from wtforms.fields.choices import SelectChoice

from mailapp.campaigns import lifecycle, services
from mailapp.campaigns.forms import CampaignForm, ScheduleForm, TestSendForm
from mailapp.campaigns.serializers import campaign_fields
from mailapp.errors import MailappError
from mailapp.extensions import db
from mailapp.forms import ActionForm, require_valid
from mailapp.forms import show_error_on_fields as _show_error
from mailapp.ids import id_arg, page_arg
from mailapp.models import Campaign, DeliveryStatus, Layout, SubscriberList
from mailapp.models.base import utcnow
from mailapp.relays import services as relay_services
from mailapp.web import SANDBOX_HEADERS, viewer_zone_name
from mailapp.wording import plural

bp = Blueprint("campaigns", __name__)

PER_PAGE = 25


@bp.get("/")
@login_required
def index():
    page = request.args.get("page", 1, type=page_arg)
    campaigns, stats, pager = services.list_campaigns(page, PER_PAGE)
    return render_template("campaigns/index.html", campaigns=campaigns, stats=stats, pager=pager)


@bp.get("/recipients-count")
@login_required
def recipients_count():
    list_ids = request.args.getlist("list_ids", type=id_arg)
    return jsonify({"list_ids": list_ids, "recipients": services.count_recipients(list_ids)})


@bp.route("/new", methods=["GET", "POST"])
@login_required
def create():
    form = _campaign_form()
    problems: list[Any] = []
    if form.validate_on_submit():
        try:
            campaign = services.create_campaign(form.campaign_data())
        except MailappError as error:
            db.session.rollback()
            problems = _show_error(form, error)
        else:
            db.session.commit()
            flash(f"Campaign '{campaign.name}' saved as a draft.", "success")
            return redirect(url_for("campaigns.show", campaign_id=campaign.id))
    status = 422 if form.is_submitted() else 200
    return render_template("campaigns/edit.html", form=form, campaign=None, problems=problems), status


@bp.route("/<int:campaign_id>/edit", methods=["GET", "POST"])
@login_required
def edit(campaign_id: int):
    campaign = db.get_or_404(Campaign, campaign_id)
    if "edit" not in lifecycle.allowed_actions(campaign):
        flash(
            f"This campaign is {campaign.status}: only drafts and scheduled campaigns can be edited.",
            "warning",
        )
        return redirect(url_for("campaigns.show", campaign_id=campaign_id))
    form = _campaign_form(campaign)
    problems: list[Any] = []
    if form.validate_on_submit():
        try:
            services.update_campaign(campaign_id, form.campaign_data())
        except MailappError as error:
            db.session.rollback()
            problems = _show_error(form, error)
        else:
            db.session.commit()
            flash("Campaign saved.", "success")
            return redirect(url_for("campaigns.show", campaign_id=campaign_id))
    status = 422 if form.is_submitted() else 200
    return render_template("campaigns/edit.html", form=form, campaign=campaign, problems=problems), status


@bp.get("/<int:campaign_id>")
@login_required
def show(campaign_id: int):
    campaign = db.get_or_404(Campaign, campaign_id)
    return _render_page(campaign)


@bp.get("/<int:campaign_id>/progress.json")
@login_required
def progress(campaign_id: int):
    db.get_or_404(Campaign, campaign_id)
    body = services.progress(campaign_id)
    return jsonify(body)


@bp.get("/<int:campaign_id>/preview.html")
@login_required
def preview_frame(campaign_id: int):
    """The message's HTML body alone, as the subscriber will receive it, for the page's sandboxed frame."""
    db.get_or_404(Campaign, campaign_id)
    try:
        html = services.preview_campaign(campaign_id, request.args.get("subscriber") or None).message.html
    except MailappError as error:
        html = render_template("layouts/preview_error.html", error=error)
    return Response(html, mimetype="text/html", headers=SANDBOX_HEADERS)


@bp.post("/<int:campaign_id>/schedule")
@login_required
def schedule(campaign_id: int):
    campaign = db.get_or_404(Campaign, campaign_id)
    form = ScheduleForm()
    if not form.validate_on_submit():
        return _render_page(campaign, schedule_form=form), 422
    try:
        lifecycle.schedule(campaign_id, form.send_at_utc(), send_timezone=form.chosen_zone())
    except MailappError as error:
        db.session.rollback()
        form.send_at.errors = [*form.send_at.errors, error.message]
        return _render_page(db.get_or_404(Campaign, campaign_id), schedule_form=form), error.status_code
    flash("Campaign scheduled. It starts at the time shown below, in the time zone you chose.", "success")
    return redirect(url_for("campaigns.show", campaign_id=campaign_id))


@bp.post("/<int:campaign_id>/test")
@login_required
def test_send(campaign_id: int):
    campaign = db.get_or_404(Campaign, campaign_id)
    form = TestSendForm()
    if not form.validate_on_submit():
        return _render_page(campaign, test_form=form), 422
    try:
        sent_to = services.send_test(campaign_id, form.emails.data, form.subscriber.data or None)
    except MailappError as error:
        db.session.rollback()
        form.emails.errors = [*form.emails.errors, error.message]
        return _render_page(campaign, test_form=form), error.status_code
    flash(f"Test sent to {', '.join(sent_to)}.", "success")
    return redirect(url_for("campaigns.show", campaign_id=campaign_id))


def _send(campaign_id: int) -> str:
    lifecycle.send_now(campaign_id)
    return "Sending started."


def _cancel(campaign_id: int) -> str:
    lifecycle.cancel(campaign_id)
    return "Campaign cancelled."


def _unschedule(campaign_id: int) -> str:
    lifecycle.unschedule(campaign_id)
    return "Campaign unscheduled: it is a draft again."


def _pause(campaign_id: int) -> str:
    lifecycle.pause(campaign_id)
    return "Campaign paused: messages already being sent finish, the rest wait."


def _resume(campaign_id: int) -> str:
    lifecycle.resume(campaign_id)
    return "Sending resumed."


def _retry_failed(campaign_id: int) -> str:
    count = lifecycle.retry_failed(campaign_id)
    return f"{plural(count, 'failed delivery', 'failed deliveries')} will be tried again."


ACTIONS: dict[str, Callable[[int], str]] = {
    "send": _send,
    "cancel": _cancel,
    "unschedule": _unschedule,
    "pause": _pause,
    "resume": _resume,
    "retry-failed": _retry_failed,
}


@bp.post("/<int:campaign_id>/<any(send, cancel, unschedule, pause, resume, 'retry-failed'):action>")
@login_required
def action(campaign_id: int, action: str):
    db.get_or_404(Campaign, campaign_id)
    require_valid()
    try:
        message = ACTIONS[action](campaign_id)
    except MailappError as error:
        db.session.rollback()
        flash(error.message, "error")
    else:
        flash(message, "success")
    return redirect(url_for("campaigns.show", campaign_id=campaign_id))


@bp.post("/<int:campaign_id>/duplicate")
@login_required
def duplicate(campaign_id: int):
    db.get_or_404(Campaign, campaign_id)
    require_valid()
    copy = services.duplicate_campaign(campaign_id)
    db.session.commit()
    flash(f"Created '{copy.name}' as a draft.", "success")
    return redirect(url_for("campaigns.edit", campaign_id=copy.id))


@bp.post("/<int:campaign_id>/delete")
@login_required
def delete(campaign_id: int):
    campaign = db.get_or_404(Campaign, campaign_id)
    require_valid()
    name = campaign.name
    try:
        services.delete_campaign(campaign_id)
    except MailappError as error:
        db.session.rollback()
        flash(error.message, "error")
        return redirect(url_for("campaigns.show", campaign_id=campaign_id))
    db.session.commit()
    flash(f"Campaign '{name}' deleted.", "success")
    return redirect(url_for("campaigns.index"))


def _campaign_form(campaign: Campaign | None = None) -> CampaignForm:
    if request.method == "GET":
        fields = campaign_fields(campaign) if campaign else services.new_campaign_defaults()
        form = CampaignForm(data=fields)
    else:
        form = CampaignForm()
    form.layout_id.choices = [(0, "— choose a layout —")] + [
        (layout.id, layout.name) for layout in db.session.scalars(select(Layout).order_by(Layout.name))
    ]
    form.list_ids.choices = [
        (lst.id, lst.name) for lst in db.session.scalars(select(SubscriberList).order_by(SubscriberList.name))
    ]
    identities = relay_services.list_identities()
    form.sender_identity_id.choices = [SelectChoice(0, "— none: type the sender below —")] + [
        SelectChoice(identity.id, f"{identity.name} <{identity.from_email}>") for identity in identities
    ]
    # The page fills the From fields from the identity picked (static/js/campaigns.js).
    form.identity_fields = json.dumps(
        {identity.id: relay_services.identity_sender_fields(identity.id) for identity in identities}
    )
    form.relay_id.choices = [SelectChoice(0, "— the identity's relay, else the default —")] + [
        SelectChoice(relay.id, relay.name + ("" if relay.enabled else " (disabled)"))
        for relay in relay_services.list_relays()
    ]
    return form


def _render_page(
    campaign: Campaign, *, schedule_form: ScheduleForm | None = None, test_form: TestSendForm | None = None
) -> str:
    # The preview first: on SQLite its render child ends the read transaction, which expires what the
    # page loaded before it (each delivery row would be read again).
    preview_as = request.args.get("preview_as", "").strip()
    try:
        preview, preview_error = services.preview_campaign(campaign.id, preview_as or None), None
    except MailappError as error:
        preview, preview_error = None, error.message
    status_filter = request.args.get("status") or None
    if status_filter not in {None, *DeliveryStatus}:
        status_filter = None
    after = request.args.get("after", type=id_arg)
    progress = services.progress(campaign.id)
    expected_recipients = (
        services.count_recipients([lst.id for lst in campaign.lists])
        if campaign.status in lifecycle.EDITABLE_STATES
        else None
    )
    deliveries, next_after = services.delivery_page(campaign.id, status=status_filter, after=after)
    unsubscribe_warning = (
        lifecycle.missing_unsubscribe_link_message(campaign.layout.name)
        if campaign.status in lifecycle.EDITABLE_STATES and lifecycle.lacks_unsubscribe_link(campaign)
        else None
    )
    return render_template(
        "campaigns/show.html",
        campaign=campaign,
        progress=progress,
        expected_recipients=expected_recipients,
        unsubscribe_warning=unsubscribe_warning,
        preview=preview,
        preview_error=preview_error,
        preview_as=preview_as,
        device="phone" if request.args.get("device") == "phone" else "desktop",
        actions=lifecycle.allowed_actions(campaign),
        schedule_form=schedule_form or ScheduleForm(zone=campaign.send_timezone or viewer_zone_name()),
        test_form=test_form or TestSendForm(),
        action_form=ActionForm(),
        deliveries=deliveries,
        next_after=next_after,
        after=after,
        status_filter=status_filter,
        delivery_statuses=list(DeliveryStatus),
        now=utcnow(),
    )
