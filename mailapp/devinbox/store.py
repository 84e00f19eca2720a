"""The dev inbox's storage: one .eml file per received message in DEVINBOX_DIR, named by arrival time so
names sort oldest to newest, written atomically, and pruned to a maximum count."""

from __future__ import annotations

import email
import email.policy
import os
import re
import secrets
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from pathlib import Path

from flask import Flask

from mailapp.errors import NotFoundError

DEFAULT_MAX_MESSAGES = 5000
# <arrival time in ns, zero-padded so names sort by time>-<random>.eml
_NAME = re.compile(r"^(\d{20})-([0-9a-f]{8})\.eml$")
_ID = re.compile(r"^\d{20}-[0-9a-f]{8}$")
_TEMP_PREFIX = ".incoming-"


@dataclass(frozen=True)
class MessageSummary:
    """What the inbox list shows, read from the headers only."""

    id: str
    received_at: datetime
    sender: str
    to: str
    subject: str
    size: int


@dataclass
class StoredMessage:
    """One message in full, for its page."""

    id: str
    received_at: datetime
    raw: bytes
    message: EmailMessage = field(repr=False)

    @property
    def subject(self) -> str:
        return _header(self.message, "Subject") or "(no subject)"

    @property
    def sender(self) -> str:
        return _header(self.message, "From")

    @property
    def to(self) -> str:
        return _header(self.message, "To") or _header(self.message, "Delivered-To")

    def headers(self) -> list[tuple[str, str]]:
        return [(name, _safe_str(self.message, name, value)) for name, value in self.message.raw_items()]

    def html(self) -> str | None:
        return _part_text(self.message, "html")

    def text(self) -> str | None:
        return _part_text(self.message, "plain")

    def source(self) -> str:
        return self.raw.decode("utf-8", errors="replace")


class DevInbox:
    """The message files of one directory. Safe to share between the SMTP server's threads."""

    def __init__(self, directory: str | os.PathLike[str], max_messages: int = DEFAULT_MAX_MESSAGES) -> None:
        self.directory = Path(directory)
        self.max_messages = max_messages
        self._lock = threading.Lock()
        self._count: int | None = None

    def save(self, raw: bytes) -> str:
        """Store one message; returns its id. Written to a temporary file first and renamed, so a reader
        never sees half a message. Prunes the oldest beyond max_messages."""
        self.directory.mkdir(parents=True, exist_ok=True)
        message_id = f"{time.time_ns():020d}-{secrets.token_hex(4)}"
        descriptor, temp_path = tempfile.mkstemp(prefix=_TEMP_PREFIX, dir=self.directory)
        try:
            with os.fdopen(descriptor, "wb") as temp_file:
                # No fsync: a dev inbox needs readers never to see half a file (the rename), not
                # durability across power loss, and a big dev send should not wait on the disk.
                temp_file.write(raw)
            os.replace(temp_path, self.directory / f"{message_id}.eml")
        except BaseException:
            Path(temp_path).unlink(missing_ok=True)
            raise
        with self._lock:
            self._count = (self._count if self._count is not None else len(self._names())) + 1
            if self._count > self.max_messages:
                self._count = self._prune()
        return message_id

    def count(self) -> int:
        return len(self._names())

    def page(self, page: int, per_page: int) -> tuple[list[MessageSummary], int]:
        """Newest first. Only the messages on the page are read, and only their headers."""
        names = self._names()
        names.reverse()
        start = (page - 1) * per_page
        summaries = [summary for name in names[start : start + per_page] if (summary := self._summary(name))]
        return summaries, len(names)

    def get(self, message_id: str) -> StoredMessage:
        path = self._path(message_id)
        try:
            raw = path.read_bytes()
        except FileNotFoundError as error:
            raise NotFoundError("This message is no longer in the dev inbox.") from error
        message = email.message_from_bytes(raw, policy=email.policy.default)
        return StoredMessage(message_id, _arrival(path.name), raw, message)

    def delete_all(self) -> int:
        with self._lock:
            names = self._names()
            for name in names:
                (self.directory / name).unlink(missing_ok=True)
            self._count = 0
        return len(names)

    def _names(self) -> list[str]:
        if not self.directory.is_dir():
            return []
        return sorted(entry.name for entry in os.scandir(self.directory) if _NAME.match(entry.name))

    def _prune(self) -> int:
        """Delete the oldest down to max_messages less a tenth, so a long send prunes once per few
        hundred messages rather than listing the directory for every one."""
        names = self._names()
        excess = len(names) - (self.max_messages - self.max_messages // 10)
        for name in names[: max(excess, 0)]:
            (self.directory / name).unlink(missing_ok=True)
        return len(names) - max(excess, 0)

    def _path(self, message_id: str) -> Path:
        if not _ID.match(message_id):
            raise NotFoundError("There is no such message in the dev inbox.")
        return self.directory / f"{message_id}.eml"

    def _summary(self, name: str) -> MessageSummary | None:
        path = self.directory / name
        try:
            with path.open("rb") as handle:
                headers = BytesHeaderParser(policy=email.policy.default).parse(handle)
                size = os.fstat(handle.fileno()).st_size
        except FileNotFoundError:  # deleted or pruned since the listing
            return None
        return MessageSummary(
            id=name.removesuffix(".eml"),
            received_at=_arrival(name),
            sender=_header(headers, "From"),
            to=_header(headers, "To") or _header(headers, "Delivered-To"),
            subject=_header(headers, "Subject") or "(no subject)",
            size=size,
        )


def _arrival(name: str) -> datetime:
    return datetime.fromtimestamp(int(name[:20]) / 1e9, tz=UTC)


def _header(message: email.message.Message, name: str) -> str:
    try:
        value = message.get(name)
    except Exception:  # a malformed header is shown empty, never an error page
        return ""
    return str(value) if value is not None else ""


def _safe_str(message: email.message.Message, name: str, value: object) -> str:
    try:
        return str(message.policy.header_fetch_parse(name, value))
    except Exception:  # fall back to the raw header text
        return str(value)


def _part_text(message: EmailMessage, subtype: str) -> str | None:
    try:
        part = message.get_body(preferencelist=(subtype,))
    except Exception:  # a broken MIME tree has no body to show
        return None
    if part is None or part.get_content_subtype() != subtype:
        return None
    try:
        content = part.get_content()
    except (LookupError, UnicodeError, AssertionError, KeyError):
        payload = part.get_payload(decode=True) or b""
        content = payload.decode("utf-8", errors="replace")
    # SMTP carries CRLF line ends; show them as the text's lines.
    return content.replace("\r\n", "\n")


def inbox_for_app(app: Flask, max_messages: int | None = None) -> DevInbox:
    """The inbox the app's config names: DEVINBOX_DIR, and DEVINBOX_MAX_MESSAGES (default 5000)."""
    limit = max_messages or int(app.config.get("DEVINBOX_MAX_MESSAGES") or DEFAULT_MAX_MESSAGES)
    return DevInbox(app.config["DEVINBOX_DIR"], limit)
