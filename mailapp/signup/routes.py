"""Routes of the signup area. Public (no login): the hosted form /s/<slug> and the posts of pasted
snippets, the confirmation page /s/confirm/<token>, the preference center /p/<token>. Their GETs never
change anything (link scanners open them); the POSTs carry their authority in the URL's signed token,
or are a signup anyone may make, so CSRF tokens do not apply. Dashboard: the forms, and each list's
opt-in settings."""

from __future__ import annotations

import logging

from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import login_required
from sqlalchemy import select

from mailapp.audit import services as audit
from mailapp.errors import MailappError, NotFoundError, TooManyAttemptsError
from mailapp.extensions import db
from mailapp.models import Layout, SignupForm, Subscriber, SubscriberList, SystemMessage
from mailapp.sending.tasks import commit_and_send
from mailapp.signup import mailer, proof_of_work, services
from mailapp.signup.forms import ListOptInForm, SignupFormForm
from mailapp.tracking.routes import PRIVATE_PAGE
from mailapp.web import CONTENT_SECURITY_POLICY
from mailapp.web_extensions import csrf

bp = Blueprint("signup", __name__)

log = logging.getLogger(__name__)


# The hosted form of a form with ALTCHA: its widget solves in Web Workers it starts from blob: URLs.
ALTCHA_PAGE_CSP = f"{CONTENT_SECURITY_POLICY}; worker-src 'self' blob:"


def _public(template: str, status: int = 200, **context: object) -> Response:
    response = Response(render_template(template, **context), status, headers=PRIVATE_PAGE)
    form = context.get("form")
    if isinstance(form, SignupForm) and form.altcha:
        response.headers["Content-Security-Policy"] = ALTCHA_PAGE_CSP
    return response


@bp.errorhandler(NotFoundError)
def not_found(error: NotFoundError) -> Response:
    """An unknown form, or a confirmation or preference link that is forged, expired or stale."""
    db.session.rollback()
    return _public("signup/message.html", 404, title="Link not valid", message=error.message)


def list_ids_from_form() -> list[int]:
    return [int(value) for value in request.form.getlist("lists") if value.isascii() and value.isdigit()][
        :100
    ]


# The fields of a signup that are not attributes.
NOT_ATTRIBUTES = ("email", "name", "lists", proof_of_work.FIELD)


def signup_input_from_form() -> services.SignupInput:
    values = request.form
    return services.SignupInput(
        email=values.get("email", ""),
        name=values.get("name", ""),
        list_ids=list_ids_from_form(),
        attributes={key: values.get(key) for key in values if key not in NOT_ATTRIBUTES},
        honeypot=values.get(services.HONEYPOT_FIELD, ""),
        altcha=values.get(proof_of_work.FIELD),
        ip=request.remote_addr,
        user_agent=request.headers.get("User-Agent", ""),
    )


def queue_confirmation(outcome: services.SignupOutcome) -> list[SystemMessage | None]:
    """The signup's confirmation email, its row written before the commit (commit_and_send)."""
    if outcome.confirmation_consent_id is None:
        return []
    return [mailer.queue_confirmation(outcome.confirmation_consent_id)]


# --- public -----------------------------------------------------------------------------------------


@bp.get("/s/<slug>")
def hosted_form(slug: str):
    form = services.form_by_slug(slug)
    return _public("signup/hosted.html", form=form, errors={}, values={})


@csrf.exempt
@bp.post("/s/<slug>")
def hosted_submit(slug: str):
    # A signup is a few fields: read no more (werkzeug answers 413 from the length or mid-stream).
    request.max_content_length = current_app.config["SIGNUP_MAX_BYTES"]
    form = services.form_by_slug(slug)
    try:
        outcome = services.submit_signup(form, signup_input_from_form())
    except TooManyAttemptsError as error:
        db.session.rollback()
        return _public(
            "signup/hosted.html", 429, form=form, errors={None: error.message}, values=request.form
        )
    except MailappError as error:
        db.session.rollback()
        field = error.details[0].get("field") if error.details else None
        return _public(
            "signup/hosted.html", 422, form=form, errors={field: error.message}, values=request.form
        )
    commit_and_send(queue_confirmation(outcome))
    if form.redirect_url:
        return redirect(form.redirect_url, 303)
    return redirect(url_for("signup.thanks", slug=form.slug), 303)


@bp.get("/s/<slug>/altcha")
def altcha_challenge(slug: str):
    """A fresh signed challenge for the form's ALTCHA widget. Any site may fetch one (the pasted
    snippet runs on the marketer's site): a challenge costs its solver, not us, and nothing is stored."""
    form = services.form_by_slug(slug)
    if not form.altcha:
        raise NotFoundError("This form does not ask for a proof of work.")
    response = jsonify(proof_of_work.new_challenge())
    response.headers.update({**PRIVATE_PAGE, "Access-Control-Allow-Origin": "*"})
    return response


@bp.get("/s/<slug>/thanks")
def thanks(slug: str):
    form = services.form_by_slug(slug)
    return _public(
        "signup/message.html",
        title=form.title or "Thank you",
        message=form.thank_you_text or services.ACCEPTED,
    )


@bp.get("/s/confirm/<token>")
def confirm_page(token: str):
    consent = services.consent_for_token(token)
    return _public("signup/confirm.html", consent=consent, token=token)


@csrf.exempt
@bp.post("/s/confirm/<token>")
def confirm(token: str):
    consent, joined = services.confirm(token)
    commit_and_send(
        [mailer.queue_welcome(consent.subscriber_id, subscriber_list.id) for subscriber_list in joined]
    )
    return _public(
        "signup/message.html",
        title="Subscription confirmed",
        message=f"Thank you: {consent.email} is subscribed.",
    )


@bp.get("/p/<delivery_token>")
def preferences(delivery_token: str):
    found = services.preferences_for(delivery_token)
    return _public("signup/preferences.html", preferences=found, token=delivery_token, saved=False)


@csrf.exempt
@bp.post("/p/<delivery_token>")
def preferences_save(delivery_token: str):
    try:
        found = services.update_preferences(
            delivery_token,
            name=request.form.get("name", ""),
            list_ids=list_ids_from_form(),
            unsubscribe_all=request.form.get("action") == "unsubscribe",
        )
    except NotFoundError:
        raise
    except MailappError as error:
        db.session.rollback()
        found = services.preferences_for(delivery_token)
        return _public(
            "signup/preferences.html",
            422,
            preferences=found,
            token=delivery_token,
            saved=False,
            error=error.message,
        )
    db.session.commit()
    return _public("signup/preferences.html", preferences=found, token=delivery_token, saved=True)


# --- dashboard --------------------------------------------------------------------------------------


@bp.get("/signup-forms")
@login_required
def forms():
    rows = db.session.scalars(select(SignupForm).order_by(SignupForm.name)).all()
    return render_template("signup/forms.html", forms=rows)


def _editor(form_row: SignupForm | None, status: int = 200, editor: SignupFormForm | None = None):
    editor = editor or SignupFormForm(obj=None)
    editor.lists.choices = [
        (row.id, row.name) for row in db.session.scalars(select(SubscriberList).order_by(SubscriberList.name))
    ]
    return render_template("signup/edit.html", form_row=form_row, editor=editor), status


@bp.get("/signup-forms/new")
@login_required
def new_form():
    return _editor(None)


@bp.get("/signup-forms/<int:form_id>")
@login_required
def edit_form(form_id: int):
    form_row = db.get_or_404(SignupForm, form_id)
    editor = SignupFormForm(
        data={
            "name": form_row.name,
            "slug": form_row.slug,
            "lists": [row.id for row in form_row.lists],
            "lists_choosable": form_row.lists_choosable,
            "ask_name": form_row.ask_name,
            "altcha": form_row.altcha,
            "fields": "\n".join(f"{spec['name']}:{spec['type']}:{spec['label']}" for spec in form_row.fields),
            "title": form_row.title,
            "intro": form_row.intro,
            "consent_text": form_row.consent_text,
            "button_text": form_row.button_text,
            "thank_you_text": form_row.thank_you_text,
            "redirect_url": form_row.redirect_url,
            "allowed_origins": "\n".join(form_row.allowed_origins),
        }
    )
    return _editor(form_row, editor=editor)


@bp.post("/signup-forms/new", defaults={"form_id": None})
@bp.post("/signup-forms/<int:form_id>")
@login_required
def save_form(form_id: int | None):
    form_row = db.get_or_404(SignupForm, form_id) if form_id is not None else None
    editor = SignupFormForm()
    editor.lists.choices = [(row.id, row.name) for row in db.session.scalars(select(SubscriberList))]
    if editor.validate_on_submit():
        values = {name: field.data for name, field in editor._fields.items()}
        values["list_ids"] = editor.lists.data
        try:
            saved = services.save_form(form_row, values)
        except MailappError as error:
            db.session.rollback()
            field = (error.details[0].get("field") if error.details else None) or "name"
            target = getattr(editor, field, editor.name)
            target.errors = [*target.errors, error.message]
        else:
            audit.record("signup_form.save", saved, f"signup form {saved.name} (/s/{saved.slug}) saved")
            db.session.commit()
            flash(f"Signup form {saved.name} saved.", "success")
            return redirect(url_for("signup.edit_form", form_id=saved.id))
    return _editor(form_row, 422, editor)


@bp.post("/signup-forms/<int:form_id>/delete")
@login_required
def delete_form(form_id: int):
    form_row = db.get_or_404(SignupForm, form_id)
    audit.record("signup_form.delete", form_row, f"signup form {form_row.name} deleted")
    db.session.delete(form_row)
    db.session.commit()
    flash(f"Signup form {form_row.name} deleted.", "success")
    return redirect(url_for("signup.forms"))


@bp.route("/lists/<int:list_id>/opt-in", methods=["GET", "POST"])
@login_required
def list_opt_in(list_id: int):
    subscriber_list = db.get_or_404(SubscriberList, list_id)
    editor = ListOptInForm(obj=subscriber_list if request.method == "GET" else None)
    choices = [(0, "Built-in")] + [
        (row.id, row.name) for row in db.session.scalars(select(Layout).order_by(Layout.name))
    ]
    editor.confirmation_layout_id.choices = choices
    editor.welcome_layout_id.choices = [(0, "No welcome email"), *choices[1:]]
    if request.method == "GET":
        editor.confirmation_layout_id.data = subscriber_list.confirmation_layout_id or 0
        editor.welcome_layout_id.data = subscriber_list.welcome_layout_id or 0
    elif editor.validate_on_submit():
        subscriber_list.double_opt_in = editor.double_opt_in.data
        subscriber_list.public = editor.public.data
        subscriber_list.confirmation_layout_id = editor.confirmation_layout_id.data or None
        subscriber_list.welcome_layout_id = editor.welcome_layout_id.data or None
        audit.record(
            "list.opt_in", subscriber_list,
            f"list {subscriber_list.name}: {'double' if subscriber_list.double_opt_in else 'single'} opt-in, "
            f"{'public' if subscriber_list.public else 'not public'}",
        )
        db.session.commit()
        flash(f"Opt-in settings of {subscriber_list.name} saved.", "success")
        return redirect(url_for("signup.list_opt_in", list_id=list_id))
    return render_template("signup/list_opt_in.html", subscriber_list=subscriber_list, editor=editor)


@bp.post("/subscribers/<int:subscriber_id>/resend-confirmation")
@login_required
def resend_confirmation(subscriber_id: int):
    subscriber = db.get_or_404(Subscriber, subscriber_id)
    try:
        consent = services.latest_pending_consent(subscriber.id)
    except NotFoundError as error:
        flash(error.message, "error")
    else:
        commit_and_send([mailer.queue_confirmation(consent.id)])
        flash(f"Confirmation queued to {subscriber.email}: its status is under System emails below.",
              "success")
    return redirect(url_for("subscribers.edit_subscriber", subscriber_id=subscriber.id))
