"""Business rules for lists, subscribers, CSV imports and exports. Services flush; callers commit."""

from __future__ import annotations

import csv
import io
import json
import logging
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from flask import current_app
from sqlalchemy import Select, delete, func, insert, or_, select, text
from sqlalchemy.exc import IntegrityError

from mailapp.addresses import normalize_email
from mailapp.csv_cells import guarded_row
from mailapp.db_setup import is_postgres
from mailapp.errors import ConflictError, ImportFileError, NotFoundError, ValidationError
from mailapp.extensions import db
from mailapp.ids import is_id
from mailapp.json_nesting import MAX_JSON_DEPTH, nesting_exceeds
from mailapp.models.base import utcnow
from mailapp.models.subscriber import (
    ImportStatus,
    Subscriber,
    SubscriberImport,
    SubscriberList,
    SubscriberStatus,
    list_members,
)
from mailapp.subscribers import importer
from mailapp.subscribers.validation import (
    AttributeLimits,
    clean_attributes,
    clean_name,
    refuse_nul,
)

log = logging.getLogger(__name__)

LIST_NAME_MAX = 200
EXPORT_BATCH = 5000


# --- lists -------------------------------------------------------------------------------------------

def get_list(list_id: int) -> SubscriberList:
    found = db.session.get(SubscriberList, list_id)
    if found is None:
        raise NotFoundError(f"List {list_id} does not exist.")
    return found


def _clean_list_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValidationError("A list needs a name.", {"field": "name"})
    refuse_nul("name", name)
    cleaned = name.strip()
    if len(cleaned) > LIST_NAME_MAX:
        raise ValidationError(f"The name is longer than {LIST_NAME_MAX} characters.", {"field": "name"})
    return cleaned


def _clean_description(description: Any) -> str:
    if description is None:
        return ""
    if not isinstance(description, str):
        raise ValidationError("The description must be text.", {"field": "description"})
    refuse_nul("description", description)
    return description.strip()


def _ensure_list_name_free(name: str, except_id: int | None = None) -> None:
    statement = select(SubscriberList.id).where(func.lower(SubscriberList.name) == name.lower())
    taken = db.session.scalar(statement)
    if taken is not None and taken != except_id:
        raise ConflictError(f"A list named {name!r} already exists.", {"field": "name"})


def create_list(name: Any, description: Any = "") -> SubscriberList:
    cleaned = _clean_list_name(name)
    _ensure_list_name_free(cleaned)
    created = SubscriberList(name=cleaned, description=_clean_description(description))
    with _unique_list_name(cleaned):
        db.session.add(created)
    return created


def update_list(target: SubscriberList, name: Any = None, description: Any = None) -> SubscriberList:
    if name is not None:
        cleaned = _clean_list_name(name)
        _ensure_list_name_free(cleaned, except_id=target.id)
        with _unique_list_name(cleaned):
            target.name = cleaned
    if description is not None:
        target.description = _clean_description(description)
    db.session.flush()
    return target


@contextmanager
def _unique_list_name(name: str) -> Iterator[None]:
    """The changes made inside, flushed in a savepoint, where the unique index has the last word:
    another request may take the name after the check, and SQLite's lower() folds ASCII only, so the
    check misses any name with a non-ASCII capital."""
    try:
        with db.session.begin_nested():
            yield
            db.session.flush()
    except IntegrityError as error:
        raise ConflictError(f"A list named {name!r} already exists.", {"field": "name"}) from error


def delete_list(target: SubscriberList) -> None:
    """The list and its memberships go; the subscribers stay."""
    db.session.execute(delete(list_members).where(list_members.c.list_id == target.id))
    db.session.delete(target)
    db.session.flush()


@dataclass
class ListCounts:
    total: int = 0
    active: int = 0
    unsubscribed: int = 0
    blocklisted: int = 0


def list_counts(list_ids: Iterable[int]) -> dict[int, ListCounts]:
    """Totals from list_members alone (an index-only count), then only the few inactive members are
    joined to subscribers (through the status index): active = total - inactive. Joining every member
    to read its status would cost a second per million members."""
    ids = list(list_ids)
    counts = {list_id: ListCounts() for list_id in ids}
    if not ids:
        return counts
    totals = db.session.execute(
        select(list_members.c.list_id, func.count())
        .where(list_members.c.list_id.in_(ids))
        .group_by(list_members.c.list_id)
    )
    for list_id, total in totals:
        counts[list_id].total = counts[list_id].active = total
    inactive = db.session.execute(
        select(list_members.c.list_id, Subscriber.status, func.count())
        .join(Subscriber, Subscriber.id == list_members.c.subscriber_id)
        .where(
            list_members.c.list_id.in_(ids),
            Subscriber.status.in_([SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BLOCKLISTED]),
        )
        .group_by(list_members.c.list_id, Subscriber.status)
    )
    for list_id, status, count in inactive:
        entry = counts[list_id]
        entry.active -= count
        if status == SubscriberStatus.UNSUBSCRIBED:
            entry.unsubscribed += count
        elif status == SubscriberStatus.BLOCKLISTED:
            entry.blocklisted += count
    return counts


def all_lists() -> list[SubscriberList]:
    return list(db.session.scalars(select(SubscriberList).order_by(SubscriberList.name)))


# --- subscribers ---------------------------------------------------------------------------------------

def get_subscriber(subscriber_id: int) -> Subscriber:
    found = db.session.get(Subscriber, subscriber_id)
    if found is None:
        raise NotFoundError(f"Subscriber {subscriber_id} does not exist.")
    return found


def parse_attributes(raw: Any) -> dict[str, Any]:
    """Attributes are a JSON object: given as a dict (API) or as JSON text (form). Checked against the
    SUBSCRIBER_MAX_ATTRIBUTE* limits, string values made one line (validation.clean_attributes)."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return {}
    if isinstance(raw, str):
        if nesting_exceeds(raw):
            raise ValidationError(
                f"Attributes nest arrays and objects deeper than {MAX_JSON_DEPTH} levels.",
                {"field": "attributes"},
            )
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as error:
            raise ValidationError(
                f"Attributes are not valid JSON: {error.msg} at line {error.lineno}, column {error.colno}.",
                {"field": "attributes", "line": error.lineno},
            ) from error
    if not isinstance(raw, dict):
        raise ValidationError(
            'Attributes must be a JSON object, like {"city": "Paris"}.', {"field": "attributes"}
        )
    return clean_attributes(raw, AttributeLimits.from_config(current_app.config))


def _clean_status(status: Any) -> SubscriberStatus:
    try:
        return SubscriberStatus(status)
    except ValueError as error:
        allowed = ", ".join(s.value for s in SubscriberStatus)
        raise ValidationError(f"Status must be one of {allowed}.", {"field": "status"}) from error


def _clean_email(email: Any) -> str:
    if not isinstance(email, str) or not email.strip():
        raise ValidationError("An email address is required.", {"field": "email"})
    try:
        return normalize_email(email)
    except ValidationError as error:
        raise ValidationError(error.message, {"field": "email"}) from error


def _ensure_email_free(email: str, except_id: int | None = None) -> None:
    taken = db.session.scalar(select(Subscriber.id).where(Subscriber.email == email))
    if taken is not None and taken != except_id:
        raise ConflictError(f"A subscriber with the email {email} already exists.", {"field": "email",
                                                                                      "id": taken})


def _lists_by_id(list_ids: Any) -> list[SubscriberList]:
    if list_ids is None:
        return []
    if not isinstance(list_ids, list | tuple) or not all(is_id(i) for i in list_ids):
        raise ValidationError("list_ids must be a list of list ids.", {"field": "list_ids"})
    wanted = set(list_ids)
    found = list(db.session.scalars(select(SubscriberList).where(SubscriberList.id.in_(wanted))))
    missing = wanted - {item.id for item in found}
    if missing:
        raise ValidationError(
            f"No such list: {', '.join(str(i) for i in sorted(missing))}.", {"field": "list_ids"}
        )
    return found


def _apply_status(subscriber: Subscriber, status: SubscriberStatus) -> None:
    if status == subscriber.status:
        return
    subscriber.status = status
    if status == SubscriberStatus.ACTIVE:
        subscriber.unsubscribed_at = None
        subscriber.unsubscribed_campaign_id = None
    elif status == SubscriberStatus.UNSUBSCRIBED and subscriber.unsubscribed_at is None:
        subscriber.unsubscribed_at = utcnow()


def create_subscriber(
    email: Any,
    name: Any = "",
    attributes: Any = None,
    list_ids: Any = None,
    status: Any = SubscriberStatus.ACTIVE,
) -> Subscriber:
    cleaned_email = _clean_email(email)
    cleaned = {"name": clean_name(name), "attributes": parse_attributes(attributes)}
    wanted_status = _clean_status(status)
    lists = _lists_by_id(list_ids)
    _ensure_email_free(cleaned_email)
    subscriber = Subscriber(email=cleaned_email, status=SubscriberStatus.ACTIVE, lists=lists, **cleaned)
    _apply_status(subscriber, wanted_status)
    db.session.add(subscriber)
    _flush_unique(cleaned_email)
    return subscriber


def update_subscriber(subscriber: Subscriber, **changes: Any) -> Subscriber:
    """Change the given fields only: email, name, attributes (replaced whole), status, list_ids."""
    unknown = set(changes) - {"email", "name", "attributes", "status", "list_ids"}
    if unknown:
        raise ValidationError(f"Unknown field(s): {', '.join(sorted(unknown))}.")
    if "email" in changes:
        cleaned = _clean_email(changes["email"])
        _ensure_email_free(cleaned, except_id=subscriber.id)
        subscriber.email = cleaned
    if "name" in changes:
        subscriber.name = clean_name(changes["name"])
    if "attributes" in changes:
        subscriber.attributes = parse_attributes(changes["attributes"])
    if "status" in changes:
        _apply_status(subscriber, _clean_status(changes["status"]))
    if "list_ids" in changes:
        subscriber.lists = _lists_by_id(changes["list_ids"])
    _flush_unique(subscriber.email)
    return subscriber


def _flush_unique(email: str) -> None:
    try:
        with db.session.begin_nested():
            db.session.flush()
    except IntegrityError as error:  # another request took the email between the check and the flush
        raise ConflictError(f"A subscriber with the email {email} already exists.", {"field": "email"}) \
            from error


def set_subscriber_status(subscriber: Subscriber, status: Any) -> Subscriber:
    """Resubscribe (active: clears unsubscribed_at), unsubscribe, blocklist or unblocklist."""
    _apply_status(subscriber, _clean_status(status))
    db.session.flush()
    return subscriber


def delete_subscriber(subscriber: Subscriber) -> None:
    db.session.delete(subscriber)
    db.session.flush()


def subscriber_filter(q: str | None = None, list_id: int | None = None, status: str | None = None) -> Select:
    """The subscribers matching a search (email or name contains q), a list and a status, unordered."""
    statement = select(Subscriber)
    if list_id is not None:
        statement = statement.join(list_members, list_members.c.subscriber_id == Subscriber.id).where(
            list_members.c.list_id == list_id
        )
    if status:
        statement = statement.where(Subscriber.status == _clean_status(status))
    if q and q.strip():
        term = q.strip()
        if "\x00" in term:  # PostgreSQL cannot even compare text with a NUL in it
            raise ValidationError("The search contains a NUL character.", {"field": "q"})
        whole_email = _as_whole_email(term)
        if whole_email is not None:
            # A complete address is looked up through the unique index, not by scanning every row.
            return statement.where(Subscriber.email == whole_email)
        statement = statement.where(
            or_(
                Subscriber.email.contains(term.lower(), autoescape=True),
                Subscriber.name.icontains(term, autoescape=True),
            )
        )
    return statement


def _as_whole_email(term: str) -> str | None:
    if "@" not in term or " " in term:
        return None
    try:
        return importer.fast_normalize_email(term)
    except ValidationError:
        return None


@dataclass
class KeysetPage:
    items: list[Subscriber]
    newer_than: int | None  # id for the "previous" link, None on the first page
    older_than: int | None  # id for the "next" link, None on the last page


def subscriber_page(
    q: str | None = None,
    list_id: int | None = None,
    status: str | None = None,
    before: int | None = None,
    after: int | None = None,
    limit: int = 50,
) -> KeysetPage:
    """Newest first, by id: `before` pages towards older ids, `after` back towards newer ones. Each page
    is an index range scan, so page 20,000 costs what page 1 costs."""
    statement = subscriber_filter(q, list_id, status)
    if after is not None:
        rows = list(db.session.scalars(
            statement.where(Subscriber.id > after).order_by(Subscriber.id.asc()).limit(limit + 1)
        ))
        more_newer = len(rows) > limit
        items = list(reversed(rows[:limit]))
        return KeysetPage(items, items[0].id if more_newer and items else None,
                          items[-1].id if items else None)
    if before is not None:
        statement = statement.where(Subscriber.id < before)
    rows = list(db.session.scalars(statement.order_by(Subscriber.id.desc()).limit(limit + 1)))
    items = rows[:limit]
    return KeysetPage(
        items,
        items[0].id if before is not None and items else None,
        items[-1].id if len(rows) > limit else None,
    )


def count_subscribers(q: str | None = None, list_id: int | None = None, status: str | None = None) -> int:
    """Counted on the narrowest index: list_members alone for a list, the table alone for no filter."""
    if not q and not status:
        if list_id is not None:
            return db.session.scalar(
                select(func.count()).select_from(list_members).where(list_members.c.list_id == list_id)
            ) or 0
        return db.session.scalar(select(func.count()).select_from(Subscriber)) or 0
    statement = subscriber_filter(q, list_id, status).with_only_columns(func.count(Subscriber.id))
    return db.session.scalar(statement) or 0


def subscriber_to_dict(subscriber: Subscriber, with_lists: bool = True) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": subscriber.id,
        "email": subscriber.email,
        "name": subscriber.name,
        "attributes": subscriber.attributes or {},
        "status": subscriber.status,
        "created_at": subscriber.created_at.isoformat() if subscriber.created_at else None,
        "updated_at": subscriber.updated_at.isoformat() if subscriber.updated_at else None,
        "unsubscribed_at": subscriber.unsubscribed_at.isoformat() if subscriber.unsubscribed_at else None,
        "unsubscribed_campaign_id": subscriber.unsubscribed_campaign_id,
    }
    if with_lists:
        data["list_ids"] = sorted(item.id for item in subscriber.lists)
    return data


def list_ids_by_subscriber(subscriber_ids: list[int]) -> dict[int, list[int]]:
    """Memberships of a page of subscribers in one query."""
    found: dict[int, list[int]] = {subscriber_id: [] for subscriber_id in subscriber_ids}
    if subscriber_ids:
        rows = db.session.execute(
            select(list_members.c.subscriber_id, list_members.c.list_id)
            .where(list_members.c.subscriber_id.in_(subscriber_ids))
            .order_by(list_members.c.list_id)
        )
        for subscriber_id, list_id in rows:
            found[subscriber_id].append(list_id)
    return found


def add_to_list(subscriber_ids: list[int], target: SubscriberList) -> None:
    existing = set(db.session.scalars(
        select(list_members.c.subscriber_id).where(
            list_members.c.list_id == target.id, list_members.c.subscriber_id.in_(subscriber_ids)
        )
    ))
    rows = [{"list_id": target.id, "subscriber_id": i} for i in subscriber_ids if i not in existing]
    if rows:
        db.session.execute(insert(list_members), rows)
    db.session.flush()


# --- CSV import ----------------------------------------------------------------------------------------

def get_import(import_id: int) -> SubscriberImport:
    found = db.session.get(SubscriberImport, import_id)
    if found is None:
        raise NotFoundError(f"Import {import_id} does not exist.")
    return found


def _upload_limit() -> int:
    return int(current_app.config.get("IMPORT_MAX_BYTES") or current_app.config["MAX_CONTENT_LENGTH"])


def start_import(target: SubscriberList, filename: str, stream: IO[bytes]) -> SubscriberImport:
    """Stream the upload to UPLOAD_DIR, refuse a file that cannot be imported at all (and keep nothing of
    it), and record a queued import. The caller commits, then queues tasks.run_import."""
    upload_dir = Path(current_app.config["UPLOAD_DIR"])
    upload_dir.mkdir(parents=True, exist_ok=True)
    path = upload_dir / f"import-{uuid.uuid4().hex}.csv"
    limit = _upload_limit()
    size = 0
    try:
        with path.open("wb") as out:
            while block := stream.read(1 << 20):
                size += len(block)
                if size > limit:
                    raise ImportFileError(f"The file is too big: the limit is {limit // (1024 * 1024)} MB.")
                out.write(block)
        importer.inspect_csv(path, importer.ImportLimits.from_config(current_app.config))
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    record = SubscriberImport(
        list_id=target.id,
        # PostgreSQL cannot store a NUL, and a file name is only shown back.
        filename=(Path(filename.replace("\x00", "") or "upload.csv").name or "upload.csv")[:300],
        file_path=str(path),
        file_size=size,
        status=ImportStatus.QUEUED,
    )
    db.session.add(record)
    db.session.flush()
    return record


# Advisory lock namespace for imports (PostgreSQL): one worker per import at a time.
IMPORT_LOCK_CLASS = 0x1A7


@contextmanager
def _import_claim(import_id: int) -> Iterator[bool]:
    """True when this worker may process the import: on PostgreSQL, a session advisory lock held for
    the whole run, so a duplicate delivery of the task cannot process the same file twice at once (it
    ends at once; a redelivery after a crash gets the lock and resumes). SQLite runs one writer."""
    if not is_postgres():
        yield True
        return
    with db.engine.connect() as connection:
        claimed = connection.scalar(
            text("SELECT pg_try_advisory_lock(:class_id, :import_id)"),
            {"class_id": IMPORT_LOCK_CLASS, "import_id": import_id},
        )
        connection.commit()
        try:
            yield bool(claimed)
        finally:
            if claimed:
                connection.execute(
                    text("SELECT pg_advisory_unlock(:class_id, :import_id)"),
                    {"class_id": IMPORT_LOCK_CLASS, "import_id": import_id},
                )
                connection.commit()


def run_import(import_id: int) -> None:
    """The Celery task's body. Commits as it goes: a chunk of rows and its counters per transaction.
    Run again after a worker died mid-way, it resumes after the last committed chunk."""
    with _import_claim(import_id) as claimed:
        if not claimed:
            log.warning("import %s is already being processed by another worker", import_id)
            return
        _run_claimed_import(import_id)


def _run_claimed_import(import_id: int) -> None:
    record = db.session.get(SubscriberImport, import_id)
    if record is None or record.status in (ImportStatus.DONE, ImportStatus.FAILED):
        return
    path, list_id = Path(record.file_path), record.list_id
    resuming = record.status == ImportStatus.RUNNING
    errors = importer.ErrorLog()
    if resuming:
        errors = importer.ErrorLog(record.error_count, list(record.errors or []))
    skip_records = record.processed if resuming else 0
    try:
        if list_id is None:
            raise ImportFileError("The list was deleted before the import ran.")
        if not resuming:
            record.status = ImportStatus.RUNNING
            record.total = importer.count_data_lines(path)
        # The rows are written on another connection: end this session's transaction first (on SQLite
        # it would hold the write lock).
        db.session.commit()
        limits = importer.ImportLimits.from_config(current_app.config)
        layout = importer.inspect_csv(path, limits)
        importer.import_rows(db.engine, import_id, list_id, path, layout, errors, skip_records, limits=limits)
    except Exception as error:
        db.session.rollback()
        log.exception("import %s failed", import_id)
        message = error.message if isinstance(error, ImportFileError) else (
            f"The import stopped: {type(error).__name__}: {str(error)[:500]}")
        _finish_import(import_id, ImportStatus.FAILED, message)
        return
    _finish_import(import_id, ImportStatus.DONE, "")


def _finish_import(import_id: int, status: ImportStatus, failure: str) -> None:
    record = db.session.get(SubscriberImport, import_id)
    if record is None:
        return
    db.session.refresh(record)
    record.status = status
    record.failure = failure
    record.finished_at = utcnow()
    if status == ImportStatus.DONE:
        record.total = record.processed
    db.session.commit()
    Path(record.file_path).unlink(missing_ok=True)


def import_to_dict(record: SubscriberImport) -> dict[str, Any]:
    return {
        "id": record.id,
        "list_id": record.list_id,
        "filename": record.filename,
        "status": record.status,
        "total": max(record.total, record.processed),
        "processed": record.processed,
        "imported": record.imported,
        "updated": record.updated,
        "skipped": record.skipped,
        "duplicates": record.duplicates,
        "invalid": record.error_count,
        "errors": record.errors or [],
        "failure": record.failure or None,
        "created_at": record.created_at.isoformat() if record.created_at else None,
        "finished_at": record.finished_at.isoformat() if record.finished_at else None,
    }


def recent_imports(list_id: int, limit: int = 5) -> list[SubscriberImport]:
    return list(db.session.scalars(
        select(SubscriberImport).where(SubscriberImport.list_id == list_id)
        .order_by(SubscriberImport.id.desc()).limit(limit)
    ))


# --- CSV export ----------------------------------------------------------------------------------------

def export_attribute_keys(list_id: int) -> list[str]:
    """Every attribute key used on the list, found by the database without loading the rows."""
    if is_postgres():
        keys = text(
            "SELECT DISTINCT jsonb_object_keys(s.attributes) FROM list_members AS m "
            "JOIN subscribers AS s ON s.id = m.subscriber_id WHERE m.list_id = :list_id"
        )
    else:
        keys = text(
            "SELECT DISTINCT attribute.key FROM list_members AS m "
            "JOIN subscribers AS s ON s.id = m.subscriber_id, json_each(s.attributes) AS attribute "
            "WHERE m.list_id = :list_id"
        )
    return sorted(str(key) for key in db.session.scalars(keys, {"list_id": list_id}))


def export_list_csv(list_id: int) -> Iterator[str]:
    """The list as CSV text, generated batch by batch (keyset on subscriber id): memory stays flat."""
    get_list(list_id)
    keys = export_attribute_keys(list_id)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    # Attribute keys are the subscribers' data as much as the values are: the header is guarded too.
    writer.writerow(guarded_row(["email", "name", "status", "created_at", *keys]))
    last_id = 0
    while True:
        batch = list(db.session.execute(
            select(Subscriber.id, Subscriber.email, Subscriber.name, Subscriber.status,
                   Subscriber.created_at, Subscriber.attributes)
            .join(list_members, list_members.c.subscriber_id == Subscriber.id)
            .where(list_members.c.list_id == list_id, list_members.c.subscriber_id > last_id)
            .order_by(list_members.c.subscriber_id)
            .limit(EXPORT_BATCH)
        ))
        for row in batch:
            attributes = row.attributes or {}
            writer.writerow(guarded_row([
                row.email, row.name, row.status, row.created_at.isoformat() if row.created_at else "",
                *(attributes.get(key) for key in keys),
            ]))
        chunk = buffer.getvalue()
        if chunk:
            yield chunk
            buffer.seek(0)
            buffer.truncate()
        if len(batch) < EXPORT_BATCH:
            return
        last_id = batch[-1].id
        db.session.rollback()  # end each batch's read transaction; a long export must not hold one open


def export_filename(target: SubscriberList) -> str:
    slug = "".join(c if c.isalnum() else "-" for c in target.name.lower()).strip("-") or "list"
    return f"{slug[:60]}-{utcnow():%Y%m%d}.csv"
