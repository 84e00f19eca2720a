"""Layouts: decoding uploads, compiling MJML, validating and storing templates, refusing deletes in use,
previews, and the images layouts show."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from mailapp.audit.services import record
from mailapp.errors import ConflictError, InvalidStateError, NotFoundError, TemplateError, ValidationError
from mailapp.extensions import db
from mailapp.layouts import isolation, mjml
from mailapp.models import Campaign, CampaignStatus, Layout, Subscriber
from mailapp.sending import templating

NAME_MAX_LENGTH = 200
ALLOWED_EXTENSIONS = (".html", ".htm", ".mjml")
# A layout in use by a campaign in one of these states is still needed to send it.
CAMPAIGN_STATES_NEEDING_LAYOUT = (
    CampaignStatus.DRAFT,
    CampaignStatus.SCHEDULED,
    CampaignStatus.SENDING,
    CampaignStatus.PAUSED,
)
UNSUBSCRIBE_WARNING = (
    "This layout has no {{ unsubscribe_url }}. Every marketing email needs a visible unsubscribe "
    "link (Gmail and Yahoo require one from bulk senders); add <a href=\"{{ unsubscribe_url }}\">"
    "Unsubscribe</a> to the footer."
)


@dataclass(frozen=True)
class LayoutCheck:
    """What the layout page shows about a template: the variables it uses and any warnings."""

    variables: list[str]
    warnings: list[str]


def max_layout_bytes() -> int:
    return int(current_app.config["LAYOUT_MAX_BYTES"])


def decode_layout_file(data: bytes, filename: str | None = None) -> str:
    """An uploaded layout file as text: an .html/.htm file of at most LAYOUT_MAX_BYTES, in UTF-8 (a BOM
    is dropped). Raises ValidationError saying what is wrong, and where for bad bytes."""
    if filename and not filename.lower().endswith(ALLOWED_EXTENSIONS):
        raise ValidationError(
            f"'{filename}' is not an HTML file (nor MJML): upload a .html, .htm or .mjml file.",
            [{"field": "file", "line": None, "message": "Only .html, .htm and .mjml files are accepted."}],
        )
    _check_size(len(data))
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise ValidationError(
            f"The file is not UTF-8 text: byte 0x{data[error.start]:02x} on line {line} is not valid "
            "UTF-8. Save the file as UTF-8 and upload it again.",
            [{"field": "file", "line": line, "message": "Not valid UTF-8."}],
        ) from error
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise ValidationError(
            f"The file contains a NUL byte on line {line}: it looks like a binary file, not HTML.",
            [{"field": "file", "line": line, "message": "NUL byte: not an HTML text file."}],
        )
    return text


def check_layout_html(html: str, *, isolated: bool = True) -> LayoutCheck:
    """Validate a template for storing. Raises ValidationError (too big, empty) or TemplateError (syntax,
    unknown variables, sandbox, render limits) with line numbers; returns the variables used and
    warnings. The trial render runs in a child process under the render limits (isolation.py), or,
    with isolated=False, here under the same limits."""
    _check_layout_input(html)
    if isolated:
        variables = isolation.run_isolated(templating.validate_template, html)
    else:
        variables = templating.validate_template(html)
    return _check_of(variables)


def _check_of(variables: list[str]) -> LayoutCheck:
    warnings = [] if "unsubscribe_url" in variables else [UNSUBSCRIBE_WARNING]
    return LayoutCheck(variables=variables, warnings=warnings)


@dataclass(frozen=True)
class PreparedLayout:
    """A layout as written (HTML, or MJML detected by its <mjml> root) made ready to store: the HTML that
    sends use, the MJML source it was compiled from (None for HTML), and its check."""

    html: str
    mjml: str | None
    check: LayoutCheck


def prepare_layout(source: str) -> PreparedLayout:
    """Validate a layout as written; MJML is compiled (in the render child process, under the render
    limits) and its HTML checked like any layout, problems told on the MJML's lines."""
    if not mjml.is_mjml(source):
        return PreparedLayout(html=source, mjml=None, check=check_layout_html(source))
    _check_layout_input(source)
    html, variables = isolation.run_isolated(mjml.compile_and_validate, source)
    compiled_size = len(html.encode("utf-8"))
    if compiled_size > max_layout_bytes():
        raise ValidationError(
            f"The MJML compiles to {compiled_size:,} bytes of HTML, more than the layout limit of "
            f"{max_layout_bytes():,} bytes (LAYOUT_MAX_BYTES). Make the layout shorter.",
            [{"field": "html", "line": None, "message": "Compiled HTML over the layout limit."}],
        )
    return PreparedLayout(html=html, mjml=source, check=_check_of(variables))


def require_mjml(source: str, *, field: str) -> None:
    """Refuse a source sent as MJML that is not an MJML document, rather than storing it as HTML."""
    if not mjml.is_mjml(source):
        raise ValidationError(
            f"{field} is not an MJML document: it must start with its <mjml> root element "
            "(send HTML as html).",
            [{"field": field, "line": 1, "message": "No <mjml> root element."}],
        )


def has_unsubscribe_link(html: str) -> bool:
    """A layout may be saved without {{ unsubscribe_url }} (with UNSUBSCRIBE_WARNING), but a campaign
    cannot be sent or scheduled with it (campaigns.lifecycle)."""
    return templating.uses_variable(html, "unsubscribe_url")


def check_subject(subject: str) -> None:
    """Validate a campaign's subject template, in a child process like layouts (TemplateError)."""
    isolation.run_isolated(templating.validate_subject, subject)


def _check_layout_input(html: str) -> None:
    _check_size(len(html.encode("utf-8")))
    if not html.strip():
        raise ValidationError(
            "The layout is empty: paste some HTML or upload a file.",
            [{"field": "html", "line": None, "message": "The layout is empty."}],
        )


def inspect_layout(layout: Layout) -> LayoutCheck:
    """The variables and warnings of a stored layout; a stored layout that no longer validates shows
    its problems as warnings rather than failing the page."""
    try:
        # In this process: a listing inspects every layout on its page, and each was checked in a child
        # process when it was saved; the render limits still hold.
        return check_layout_html(layout.html, isolated=False)
    except TemplateError as error:
        return LayoutCheck(variables=[], warnings=[_describe(problem) for problem in error.details or []])
    except ValidationError as error:
        return LayoutCheck(variables=[], warnings=[error.message])


def create_layout(name: str, html: str) -> Layout:
    """A new layout from HTML or MJML (see prepare_layout)."""
    clean_name = _clean_name(name)
    prepared = prepare_layout(html)
    _ensure_name_free(clean_name)
    layout = Layout(name=clean_name, html=prepared.html, mjml=prepared.mjml)
    with _unique_name(clean_name):
        db.session.add(layout)
    return layout


def update_layout(layout: Layout, *, name: str | None = None, html: str | None = None) -> Layout:
    # The template first: its check runs before this request changes anything (see isolation.py).
    prepared = prepare_layout(html) if html is not None else None
    if name is not None:
        clean_name = _clean_name(name)
        if clean_name != layout.name:
            _ensure_name_free(clean_name, excluding_id=layout.id)
        with _unique_name(clean_name):
            layout.name = clean_name
    if prepared is not None:
        layout.html = prepared.html
        layout.mjml = prepared.mjml
    db.session.flush()
    return layout


def campaigns_needing_layout(layout: Layout) -> list[Campaign]:
    return list(
        db.session.scalars(
            select(Campaign)
            .where(Campaign.layout_id == layout.id, Campaign.status.in_(CAMPAIGN_STATES_NEEDING_LAYOUT))
            .order_by(Campaign.id)
        )
    )


def campaign_counts(layout_ids: list[int]) -> dict[int, int]:
    """How many campaigns (any status) use each of these layouts, for the list page."""
    rows = db.session.execute(
        select(Campaign.layout_id, func.count())
        .where(Campaign.layout_id.in_(layout_ids))
        .group_by(Campaign.layout_id)
    )
    return {layout_id: count for layout_id, count in rows}


def delete_layout(layout: Layout) -> None:
    """Delete a layout no unsent campaign needs. Sent campaigns keep their history (layout_id is set to
    NULL by the foreign key)."""
    in_use = campaigns_needing_layout(layout)
    if in_use:
        names = ", ".join(f"'{campaign.name}' ({campaign.status})" for campaign in in_use[:5])
        more = f" and {len(in_use) - 5} more" if len(in_use) > 5 else ""
        raise InvalidStateError(
            f"Layout '{layout.name}' is used by {len(in_use)} campaign(s) not yet sent: {names}{more}. "
            "Choose another layout for them, or cancel them, before deleting it.",
            [{"campaign_id": c.id, "name": c.name, "status": c.status} for c in in_use],
        )
    record("layout.delete", layout, f"layout {layout.name!r} deleted")
    db.session.delete(layout)
    db.session.flush()


def render_preview(layout: Layout, subscriber_id: int | None = None) -> str:
    """The layout as it will be sent: CSS inlined, rendered for a real subscriber or the sample one."""
    return render_html_preview(layout.html, subscriber_id)


def render_draft_preview(html: str, subscriber_id: int | None = None) -> str:
    """Unsaved HTML or MJML from the editor, checked as on save (nothing is stored) and rendered like a
    layout."""
    if mjml.is_mjml(html):
        return render_html_preview(prepare_layout(html).html, subscriber_id)
    _check_layout_input(html)
    return render_html_preview(html, subscriber_id)


def render_html_preview(html: str, subscriber_id: int | None = None) -> str:
    """Validated and rendered (in a child process under the render limits, see isolation.py) for the
    subscriber, or the sample one."""
    subscriber = templating.SAMPLE_SUBSCRIBER
    if subscriber_id is not None:
        found = db.session.get(Subscriber, subscriber_id)
        if found is None:
            raise NotFoundError(f"There is no subscriber with id {subscriber_id}.")
        subscriber = subscriber_context(found)
    return isolation.run_isolated(templating.render_layout_preview, html, subscriber)


def subscriber_context(subscriber: Subscriber) -> dict[str, Any]:
    return {
        "id": subscriber.id,
        "email": subscriber.email,
        "name": subscriber.name,
        "attributes": dict(subscriber.attributes or {}),
    }


def find_subscriber_id(email: str) -> int:
    """The id of the subscriber with this email (any case), for picking a preview recipient."""
    subscriber_id = db.session.scalar(select(Subscriber.id).where(Subscriber.email == email.strip().lower()))
    if subscriber_id is None:
        raise NotFoundError(f"No subscriber has the email address '{email.strip()}'.")
    return subscriber_id


def serialize_layout(layout: Layout, *, with_html: bool = True) -> dict[str, Any]:
    check = inspect_layout(layout)
    data: dict[str, Any] = {
        "id": layout.id,
        "name": layout.name,
        # What the layout is written in: mjml (then its source below, the HTML compiled from it) or html.
        "kind": "mjml" if layout.mjml is not None else "html",
        "variables": check.variables,
        "warnings": check.warnings,
        "created_at": layout.created_at.isoformat(),
        "updated_at": layout.updated_at.isoformat(),
    }
    if with_html:
        data["html"] = layout.html
        data["mjml"] = layout.mjml
    return data


def _check_size(size: int) -> None:
    limit = max_layout_bytes()
    if size > limit:
        raise ValidationError(
            f"The layout is larger than the limit of {limit / 1024 / 1024:.1f} MB ({limit:,} bytes). "
            "Move images to a web host and link to them instead of embedding them.",
            [{"field": "html", "line": None, "message": f"Larger than {limit:,} bytes."}],
        )


def _clean_name(name: str | None) -> str:
    clean = (name or "").strip()
    if not clean:
        raise ValidationError(
            "Give the layout a name.", [{"field": "name", "message": "A name is required."}]
        )
    if len(clean) > NAME_MAX_LENGTH:
        raise ValidationError(
            f"The name is {len(clean)} characters; at most {NAME_MAX_LENGTH} are allowed.",
            [{"field": "name", "message": f"At most {NAME_MAX_LENGTH} characters."}],
        )
    return clean


def _ensure_name_free(name: str, excluding_id: int | None = None) -> None:
    statement = select(Layout.id).where(func.lower(Layout.name) == name.lower())
    if excluding_id is not None:
        statement = statement.where(Layout.id != excluding_id)
    if db.session.scalar(statement) is not None:
        raise ConflictError(
            f"A layout named '{name}' already exists: choose another name.",
            [{"field": "name", "message": "This name is taken."}],
        )


@contextmanager
def _unique_name(name: str) -> Iterator[None]:
    """The changes made inside, flushed in a savepoint: the unique index's refusal is the taken name it
    is, and the transaction goes on. _ensure_name_free misses a name taken by another request meanwhile,
    and, on SQLite, whose lower() folds ASCII only, any name with a non-ASCII capital."""
    try:
        with db.session.begin_nested():
            yield
            db.session.flush()
    except IntegrityError as error:
        raise ConflictError(
            f"A layout named '{name}' already exists: choose another name.",
            [{"field": "name", "message": "This name is taken."}],
        ) from error


def _describe(problem: dict[str, Any]) -> str:
    line = problem.get("line")
    return f"Line {line}: {problem['message']}" if line else str(problem["message"])
