"""Routes of the segments area: the segments page, the rule builder's form, delete, the live count the
builder asks for, and "resend to non-openers" from a sent campaign's page."""

from __future__ import annotations

import json

from flask import Blueprint, flash, jsonify, redirect, render_template, request, url_for
from flask_login import login_required
from sqlalchemy import select

from mailapp.errors import MailappError, ValidationError
from mailapp.extensions import db
from mailapp.forms import ActionForm, require_valid, show_error_on_fields
from mailapp.models import Segment
from mailapp.segment_rules import RULE_FIELDS, RuleError
from mailapp.segments import services
from mailapp.segments.forms import SegmentForm, rules_from_json

bp = Blueprint("segments", __name__)


@bp.get("/")
@login_required
def index():
    segments = list(db.session.scalars(select(Segment).order_by(Segment.name)))
    return render_template("segments/index.html", segments=segments, action_form=ActionForm())


@bp.route("/new", methods=["GET", "POST"])
@bp.route("/<int:segment_id>/edit", methods=["GET", "POST"])
@login_required
def edit(segment_id: int | None = None):
    segment = services.get_segment(segment_id) if segment_id is not None else None
    form = SegmentForm()
    if request.method == "GET":
        form.name.data = segment.name if segment else ""
        form.rules.data = json.dumps(segment.rules if segment else {"all": []})
    problems: list = []
    if form.validate_on_submit():
        try:
            data = form.segment_data()
            saved = services.update_segment(segment, data) if segment else services.create_segment(data)
        except RuleError as error:
            db.session.rollback()
            problems = [error.message]  # it names the rule's path: rules.any[2].value: ...
        except MailappError as error:
            db.session.rollback()
            problems = show_error_on_fields(form, error)
        else:
            db.session.commit()
            flash(f"Segment '{saved.name}' saved.", "success")
            return redirect(url_for("segments.index"))
    status = 422 if form.is_submitted() else 200
    return render_template(
        "segments/edit.html", form=form, segment=segment, problems=problems, rule_fields=RULE_FIELDS
    ), status


@bp.post("/<int:segment_id>/delete")
@login_required
def delete(segment_id: int):
    require_valid()
    segment = services.get_segment(segment_id)
    try:
        services.delete_segment(segment)
    except MailappError as error:
        db.session.rollback()
        flash(error.message, "error")
    else:
        db.session.commit()
        flash(f"Segment '{segment.name}' deleted.", "success")
    return redirect(url_for("segments.index"))


@bp.post("/count")
@login_required
def count():
    """The builder's live count: {count, recipients}, or {error} naming where the tree is wrong."""
    require_valid()
    try:
        figures = services.count(services.checked_rules(rules_from_json(request.form.get("rules", ""))))
    except ValidationError as error:
        return jsonify(error.to_dict()), 422
    return jsonify(figures.as_dict())


@bp.post("/resend/<int:campaign_id>")
@login_required
def resend_non_openers(campaign_id: int):
    require_valid()
    hours = request.form.get("delay_hours", "").strip()
    try:
        delay = float(hours) if hours else None
        copy = services.resend_to_non_openers(
            campaign_id, subject=request.form.get("subject") or None, delay_hours=delay
        )
    except ValueError:
        db.session.rollback()
        flash("Hours must be a number.", "error")
        return redirect(url_for("campaigns.show", campaign_id=campaign_id))
    except MailappError as error:
        db.session.rollback()
        flash(error.message, "error")
        return redirect(url_for("campaigns.show", campaign_id=campaign_id))
    db.session.commit()
    flash(f"'{copy.name}' made: it goes to those who did not open.", "success")
    return redirect(url_for("campaigns.show", campaign_id=copy.id))
