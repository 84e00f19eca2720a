"""Routes of the suppression page: search and page the list, add, lift, import and export."""

from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_login import login_required

from mailapp.deliverability import services
from mailapp.deliverability.forms import REASON_LABELS, LiftForm, SuppressionForm, SuppressionImportForm
from mailapp.errors import MailappError
from mailapp.extensions import db
from mailapp.ids import page_arg
from mailapp.models import SuppressionReason
from mailapp.web import csv_download

bp = Blueprint("deliverability", __name__)

PER_PAGE = 50


def _page(form: SuppressionForm | None = None, import_form: SuppressionImportForm | None = None,
          import_errors: list | None = None, status: int = 200):
    q = request.args.get("q", "").strip()
    reason = request.args.get("reason", "")
    if reason not in {member.value for member in SuppressionReason}:
        reason = ""
    lifted = request.args.get("show") == "lifted"
    pager = services.suppression_page(q, reason or None, lifted, request.args.get("page", 1, type=page_arg),
                                      PER_PAGE)
    return render_template(
        "deliverability/index.html",
        pager=pager, filters={"q": q, "reason": reason, "show": "lifted" if lifted else ""},
        reasons=REASON_LABELS, form=form or SuppressionForm(),
        import_form=import_form or SuppressionImportForm(),
        lift_form=LiftForm(), import_errors=import_errors or [], suppressed=services.count_suppressed(),
    ), status


@bp.get("/")
@login_required
def index():
    return _page()


@bp.post("/")
@login_required
def add():
    form = SuppressionForm()
    if form.validate_on_submit():
        try:
            suppression, created = services.add_suppression(
                form.email.data, form.reason.data, form.detail.data, source="dashboard"
            )
        except MailappError as error:
            db.session.rollback()
            form.email.errors = [*form.email.errors, error.message]
        else:
            db.session.commit()
            flash(f"{suppression.email} {'suppressed' if created else 'was already suppressed'}.",
                  "success" if created else "info")
            return redirect(url_for("deliverability.index"))
    return _page(form=form, status=422)


@bp.post("/<int:suppression_id>/lift")
@login_required
def lift(suppression_id: int):
    suppression = services.get_suppression_by_id(suppression_id)
    form = LiftForm()
    if not form.validate_on_submit():
        flash(" ".join(error for errors in form.errors.values() for error in errors), "error")
        return redirect(url_for("deliverability.index"))
    services.remove_suppression(suppression, form.reason.data, "dashboard")
    db.session.commit()
    flash(f"{suppression.email} can receive campaigns again (their subscriber status is unchanged).",
          "success")
    return redirect(url_for("deliverability.index"))


@bp.post("/import")
@login_required
def import_csv():
    form = SuppressionImportForm()
    if not form.validate_on_submit():
        return _page(import_form=form, status=422)
    try:
        result = services.import_suppressions(
            form.file.data.stream, int(current_app.config["SUPPRESSION_IMPORT_MAX_BYTES"]),
            int(current_app.config["IMPORT_MAX_LINE_BYTES"]),
        )
    except MailappError as error:
        db.session.rollback()
        errors = [problem for problem in error.details if problem.get("line")] or []
        return _page(import_form=form, import_errors=[{"message": error.message}, *errors], status=422)
    db.session.commit()
    flash(f"Imported {result.lines:,} addresses: {result.added:,} newly suppressed, "
          f"{result.already:,} already were.", "success")
    return redirect(url_for("deliverability.index"))


@bp.get("/export.csv")
@login_required
def export_csv():
    return csv_download(services.export_suppressions(), "suppressions.csv")
