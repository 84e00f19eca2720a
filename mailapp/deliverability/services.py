"""The suppression list as people manage it: search and page it, add an address, lift a suppression
with a reason, import addresses from CSV (all or nothing) and export them. The rules for what a
suppression is and does live on the send floor (mailapp/sending/suppression.py); this module adds the
input checks of a form or an API call."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from sqlalchemy import Select, func, select

from mailapp.addresses import normalize_email, normalize_email_field
from mailapp.audit import services as audit
from mailapp.csv_cells import csv_line
from mailapp.errors import ImportFileError, NotFoundError, ValidationError
from mailapp.extensions import db
from mailapp.models import Suppression, SuppressionReason
from mailapp.models.base import iso_or_none
from mailapp.sending import suppression as policy

EXPORT_CHUNK = 5000
EXPORT_HEADER = ["email", "reason", "source", "detail", "campaign_id", "created_at"]
MAX_DETAIL_LENGTH = 2000
MAX_LIFT_REASON_LENGTH = 500
MAX_SEARCH_LENGTH = 320
# The first line errors an import reports; the count covers all of them.
MAX_REPORTED_ERRORS = 100


def suppression_filter(q: str | None = None, reason: str | None = None, lifted: bool = False) -> Select:
    """Suppressions in force (or, with lifted, the lifted ones) whose email contains q, of a reason."""
    statement = select(Suppression).where(
        Suppression.lifted_at.is_not(None) if lifted else Suppression.lifted_at.is_(None)
    )
    if q:
        needle = q.strip().lower()[:MAX_SEARCH_LENGTH]
        escaped = needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        statement = statement.where(Suppression.email.like(f"%{escaped}%", escape="\\"))
    if reason:
        statement = statement.where(Suppression.reason == clean_reason(reason))
    return statement


def suppression_page(q: str | None, reason: str | None, lifted: bool, page: int, per_page: int = 50):
    """Newest first; a Flask-SQLAlchemy Pagination."""
    return db.paginate(
        suppression_filter(q, reason, lifted).order_by(Suppression.id.desc()),
        page=page, per_page=per_page, error_out=False,
    )


def clean_reason(reason: Any) -> SuppressionReason:
    try:
        return SuppressionReason(reason)
    except ValueError as error:
        allowed = ", ".join(member.value for member in SuppressionReason)
        raise ValidationError(f"The reason must be one of {allowed}.", [{"field": "reason"}]) from error


def _clean_text(value: Any, field: str, limit: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValidationError(f"{field} must be text.", [{"field": field}])
    if "\x00" in value:
        raise ValidationError(f"{field} cannot contain a NUL character.", [{"field": field}])
    if len(value) > limit:
        raise ValidationError(f"{field} is longer than {limit} characters.", [{"field": field}])
    return value.strip()


def add_suppression(email: Any, reason: Any = SuppressionReason.MANUAL, detail: Any = "",
                    source: str = "dashboard") -> tuple[Suppression, bool]:
    """Suppress one address by hand. (suppression, False) when it already was: it keeps its first
    reason. The subscriber's status is not changed. Flushes; the caller commits."""
    address = normalize_email_field(email)
    cleaned_reason = clean_reason(reason if reason not in (None, "") else SuppressionReason.MANUAL)
    note = _clean_text(detail, "detail", MAX_DETAIL_LENGTH)
    was_suppressed = policy.is_suppressed(address)
    suppression = policy.suppress_address(address, cleaned_reason, source, note)
    if not was_suppressed:
        audit.record("suppression.add", suppression, f"Suppressed {address} ({cleaned_reason}).")
    return suppression, not was_suppressed


def get_suppression(email: str) -> Suppression:
    """The suppression in force for the address; NotFoundError otherwise."""
    found = None
    try:
        address = policy.normalize_address(email)
    except ValidationError:
        address = None
    if address is not None:
        found = db.session.scalar(
            select(Suppression).where(Suppression.email == address, Suppression.lifted_at.is_(None))
        )
    if found is None:
        raise NotFoundError(f"{email[:320]!r} is not suppressed.")
    return found


def get_suppression_by_id(suppression_id: int) -> Suppression:
    found = db.session.get(Suppression, suppression_id)
    if found is None or found.lifted_at is not None:
        raise NotFoundError(f"Suppression {suppression_id} not found.")
    return found


def remove_suppression(suppression: Suppression, reason: Any, lifted_by: str) -> Suppression:
    """Lift it, recording why and who. Resubscribes no one. Flushes; the caller commits."""
    why = _clean_text(reason, "reason", MAX_LIFT_REASON_LENGTH)
    if not why:
        raise ValidationError("Say why the suppression is lifted.", [{"field": "reason"}])
    policy.lift_suppression(suppression.email, why, lifted_by)
    audit.record("suppression.lift", suppression, f"Lifted the suppression of {suppression.email}: {why}")
    db.session.refresh(suppression)
    return suppression


def suppression_to_dict(suppression: Suppression) -> dict[str, Any]:
    return {
        "email": suppression.email,
        "reason": suppression.reason,
        "source": suppression.source,
        "detail": suppression.detail,
        "campaign_id": suppression.campaign_id,
        "created_at": iso_or_none(suppression.created_at),
    }


# --- CSV ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportResult:
    lines: int  # data lines with an address
    added: int  # addresses not suppressed before
    already: int  # already suppressed (or repeated in the file)

    def as_dict(self) -> dict[str, int]:
        return {"lines": self.lines, "added": self.added, "already_suppressed": self.already}


def import_suppressions(upload: IO[bytes], max_bytes: int, max_line_bytes: int, source: str = "import"
                        ) -> ImportResult:
    """Suppress every address of a CSV file: one address per line, or a header row with an `email`
    column (and optional `reason` and `detail` columns, as the export writes them). Every line is
    checked first: any bad line and nothing is written (ImportFileError lists the first lines with
    their errors). At most max_bytes are read. Flushes; the caller commits."""
    raw = upload.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise ImportFileError(
            f"The file is larger than {max_bytes:,} bytes (SUPPRESSION_IMPORT_MAX_BYTES): split it.",
            [{"field": "file"}],
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ImportFileError(
            f"The file is not UTF-8 text (byte {error.start}).", [{"field": "file"}]
        ) from error
    if "\x00" in text:
        raise ImportFileError("The file holds NUL characters: it is not a CSV file.", [{"field": "file"}])
    entries, errors, error_count, lines = _parse(text, max_line_bytes)
    if error_count:
        raise ImportFileError(
            f"{error_count:,} line(s) of the file have errors; nothing was imported.",
            [{"field": "file", **error} for error in errors],
        )
    added = 0
    for start in range(0, len(entries), 1000):
        added += policy.suppress_many(entries[start:start + 1000], source)
    audit.record("suppression.import", None, f"Imported {lines:,} suppressions ({added:,} new).")
    return ImportResult(lines=lines, added=added, already=lines - added)


def _parse(text: str, max_line_bytes: int) -> tuple[list[tuple[str, str, str]], list[dict], int, int]:
    reader = csv.reader(io.StringIO(text, newline=""))
    email_index, reason_index, detail_index = 0, None, None
    entries: dict[str, tuple[str, str, str]] = {}
    errors: list[dict[str, Any]] = []
    error_count = lines = 0
    first_row = True
    try:
        for row in reader:
            line = reader.line_num
            cells = [cell.strip() for cell in row]
            if not any(cells):
                continue
            if first_row:  # a header, if there is one, is the first row with anything in it
                first_row = False
                header = [cell.lower() for cell in cells]
                if "email" in header:
                    email_index = header.index("email")
                    reason_index = header.index("reason") if "reason" in header else None
                    detail_index = header.index("detail") if "detail" in header else None
                    continue
                if len(cells) > 1:
                    raise ImportFileError(
                        "The first row has several columns but none is called email: add a header "
                        "row with an email column, or give one address per line.", [{"field": "file"}],
                    )
            lines += 1
            try:
                if len(",".join(row).encode()) > max_line_bytes:
                    raise ValidationError(f"The line is longer than {max_line_bytes:,} bytes.")
                address = normalize_email(cells[email_index] if email_index < len(cells) else "")
                reason = _cell(cells, reason_index) or SuppressionReason.IMPORT
                reason = clean_reason(reason)
                detail = _cell(cells, detail_index)[:MAX_DETAIL_LENGTH]
            except ValidationError as error:
                error_count += 1
                if len(errors) < MAX_REPORTED_ERRORS:
                    value = cells[email_index] if email_index < len(cells) else ""
                    errors.append({"line": line, "email": value[:320], "message": error.message})
                continue
            entries.setdefault(address, (address, str(reason), detail))
    except csv.Error as error:
        raise ImportFileError(f"The file is not valid CSV at line {reader.line_num}: {error}",
                              [{"field": "file", "line": reader.line_num}]) from error
    return list(entries.values()), errors, error_count, lines


def _cell(cells: list[str], index: int | None) -> str:
    return cells[index] if index is not None and index < len(cells) else ""


def export_suppressions() -> Iterator[str]:
    audit.record_read("export.suppressions", None, "the suppression list exported as CSV")
    return _suppression_rows()


def _suppression_rows() -> Iterator[str]:
    """Every suppression in force as CSV (EXPORT_HEADER), streamed in chunks by id; cells guarded
    against formulas. Imports back as it is."""
    yield csv_line(EXPORT_HEADER)
    after = 0
    while True:
        chunk = list(db.session.scalars(
            select(Suppression)
            .where(Suppression.id > after, Suppression.lifted_at.is_(None))
            .order_by(Suppression.id)
            .limit(EXPORT_CHUNK)
        ))
        if not chunk:
            return
        for row in chunk:
            yield csv_line([row.email, row.reason, row.source, row.detail, row.campaign_id or "",
                            iso_or_none(row.created_at)])
        after = chunk[-1].id
        db.session.expunge_all()


def count_suppressed() -> int:
    return db.session.scalar(
        select(func.count()).select_from(Suppression).where(Suppression.lifted_at.is_(None))
    ) or 0
