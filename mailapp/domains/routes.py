"""Routes of the sending domains area: list, add, the page of one domain (the records to publish and
its last check), check now, delete (after a confirmation page)."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import login_required
from sqlalchemy import select

from mailapp.domains import services
from mailapp.domains.forms import DomainForm
from mailapp.errors import MailappError
from mailapp.extensions import db
from mailapp.forms import ActionForm, require_valid
from mailapp.ids import page_arg
from mailapp.models import SendingDomain

bp = Blueprint("domains", __name__)

PER_PAGE = 50


@bp.get("/")
@login_required
def index():
    page = request.args.get("page", 1, type=page_arg)
    pager = db.paginate(select(SendingDomain).order_by(SendingDomain.domain), page=page, per_page=PER_PAGE,
                        error_out=False)
    return render_template("domains/index.html", pager=pager)


@bp.route("/new", methods=["GET", "POST"])
@login_required
def create():
    form = DomainForm()
    if form.validate_on_submit():
        try:
            sending_domain = services.create_domain(
                form.domain.data, selector=form.selector.data or None, ed25519=form.ed25519.data
            )
        except MailappError as error:
            db.session.rollback()
            field = error.details[0]["field"] if error.details else None
            target = form.selector if field == "selector" else form.domain
            target.errors = [*target.errors, error.message]
        else:
            db.session.commit()
            flash(f"{sending_domain.domain} added. Publish its DNS records, then check them.", "success")
            return redirect(url_for("domains.show", domain_id=sending_domain.id))
    status = 422 if form.is_submitted() else 200
    return render_template("domains/new.html", form=form), status


@bp.get("/<int:domain_id>")
@login_required
def show(domain_id: int):
    sending_domain = db.get_or_404(SendingDomain, domain_id)
    return render_template(
        "domains/show.html", sending_domain=sending_domain, records=services.records_for(sending_domain),
        unicode_domain=services.unicode_domain(sending_domain.domain), action_form=ActionForm(),
    )


@bp.post("/<int:domain_id>/check")
@login_required
def check(domain_id: int):
    sending_domain = db.get_or_404(SendingDomain, domain_id)
    require_valid()
    services.check_domain(sending_domain)
    db.session.commit()
    if sending_domain.check_passed:
        flash("DNS check passed.", "success")
    else:
        flash("DNS check found problems: see below.", "warning")
    return redirect(url_for("domains.show", domain_id=domain_id))


@bp.route("/<int:domain_id>/delete", methods=["GET", "POST"])
@login_required
def delete(domain_id: int):
    """GET asks for confirmation; POST deletes."""
    sending_domain = db.get_or_404(SendingDomain, domain_id)
    if request.method == "GET":
        return render_template("domains/delete.html", sending_domain=sending_domain, action_form=ActionForm())
    require_valid()
    name = sending_domain.domain
    services.delete_domain(sending_domain)
    db.session.commit()
    flash(f"{name} deleted: its mail is no longer signed. Remove its DKIM records from DNS.", "success")
    return redirect(url_for("domains.index"))
