"""The bounce mailbox poller: reads unseen messages from an IMAP mailbox (when the MX for the bounce
domain is someone else's server) and processes each like the SMTP receiver does.

A message is marked (seen, deleted or moved: BOUNCE_IMAP_AFTER) only after its events are committed,
so a poll that dies midway reads it again next time, and the events' dedupe keys keep it from
counting twice. Each poll takes at most `batch_size` messages. One poll at a time across every
worker: a Redis lock when REDIS_URL is set (as the open-buffer flush does), else an flock on a file
in the instance folder (the embedded default's workers share one machine). Plain-text IMAP
(security "none") is allowed to a loopback address only."""

from __future__ import annotations

import contextlib
import fcntl
import imaplib
import ipaddress
import logging
import re
import ssl
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import redis

from mailapp.errors import ValidationError
from mailapp.extensions import db
from mailapp.inbound.services import DATABASE_DOWN, InboundSettings, process_message

log = logging.getLogger(__name__)

LOCK_KEY = "mailapp:inbound:imap-poll"
# The lock outlives the longest poll (the task's hard time limit), so a crashed poll frees it soon.
LOCK_SECONDS = 300
BATCH_SIZE = 100
IMAP_TIMEOUT_SECONDS = 60
SECURITY = ("ssl", "starttls", "none")
_MOVE = re.compile(r"^move:(.{1,200})$")
_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")


@dataclass(frozen=True)
class ImapSettings:
    host: str  # BOUNCE_IMAP_HOST; empty: no polling
    port: int  # BOUNCE_IMAP_PORT
    security: str  # BOUNCE_IMAP_SECURITY: ssl | starttls | none
    user: str  # BOUNCE_IMAP_USER
    password: str  # BOUNCE_IMAP_PASSWORD
    mailbox: str  # BOUNCE_IMAP_MAILBOX
    after: str  # BOUNCE_IMAP_AFTER: seen | delete | move:<mailbox>
    batch_size: int = BATCH_SIZE

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ImapSettings:
        settings = cls(
            host=(config.get("BOUNCE_IMAP_HOST") or "").strip(),
            port=int(config["BOUNCE_IMAP_PORT"]),
            security=str(config["BOUNCE_IMAP_SECURITY"]).strip().lower(),
            user=config.get("BOUNCE_IMAP_USER") or "",
            password=config.get("BOUNCE_IMAP_PASSWORD") or "",
            mailbox=config.get("BOUNCE_IMAP_MAILBOX") or "INBOX",
            after=str(config["BOUNCE_IMAP_AFTER"]).strip(),
        )
        settings.check()
        return settings

    def check(self) -> None:
        """ValidationError naming the setting that is wrong."""
        if self.security not in SECURITY:
            raise ValidationError(
                f"BOUNCE_IMAP_SECURITY must be one of {', '.join(SECURITY)}, not {self.security!r}.",
                [{"field": "BOUNCE_IMAP_SECURITY"}],
            )
        if self.security == "none" and self.host and not _is_loopback(self.host):
            raise ValidationError(
                "BOUNCE_IMAP_SECURITY=none sends the password in clear: allowed only to a loopback "
                f"address, not {self.host!r}.", [{"field": "BOUNCE_IMAP_SECURITY"}],
            )
        if self.after not in ("seen", "delete") and not _MOVE.match(self.after):
            raise ValidationError(
                f"BOUNCE_IMAP_AFTER must be seen, delete or move:<mailbox>, not {self.after!r}.",
                [{"field": "BOUNCE_IMAP_AFTER"}],
            )


@dataclass
class PollResult:
    read: int = 0  # messages fetched
    recorded: int = 0  # bounces and complaints recorded
    repeated: int = 0  # already recorded (a message read again)
    unsubscribed: int = 0
    dropped: int = 0  # too large, or failed to process: marked without events
    left: int = 0  # unseen messages beyond this poll's batch, or left by a database failure
    skipped: str = ""  # why the poll did nothing

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def poll_mailbox(imap: ImapSettings, inbound: InboundSettings) -> PollResult:
    """Read and process up to imap.batch_size unseen messages. Commits after each message."""
    result = PollResult()
    client = _connect(imap)
    try:
        client.login(imap.user, imap.password)
        status, _ = client.select(_quoted(imap.mailbox))
        if status != "OK":
            raise imaplib.IMAP4.error(f"cannot select the mailbox {imap.mailbox!r}")
        _, data = client.uid("SEARCH", "UNSEEN")
        uids = data[0].split() if data and data[0] else []
        result.left = max(0, len(uids) - imap.batch_size)
        expunge = False
        for position, uid in enumerate(uids[: imap.batch_size]):
            raw = _fetch(client, uid, inbound.limits.max_bytes)
            if raw is None:
                log.warning("Bounce mailbox message %s dropped: over INBOUND_MAX_BYTES", uid.decode())
                result.dropped += 1
            else:
                result.read += 1
                try:
                    processed = process_message(raw, [], "imap", inbound)
                    db.session.commit()
                except DATABASE_DOWN as error:
                    db.session.rollback()
                    log.warning("Bounce mailbox poll stopped, the database is unavailable: %s", error)
                    result.left += len(uids[: imap.batch_size]) - position
                    break
                except Exception:  # a bug must not have the message read again at every poll
                    db.session.rollback()
                    log.exception("Bounce mailbox message %s dropped: processing it failed", uid.decode())
                    result.dropped += 1
                else:
                    result.recorded += processed.recorded
                    result.repeated += processed.repeated
                    result.unsubscribed += processed.unsubscribed
            expunge = _mark(client, uid, imap.after) or expunge
        if expunge:
            client.expunge()
    finally:
        with contextlib.suppress(OSError, imaplib.IMAP4.error):
            client.logout()
    return result


def _connect(imap: ImapSettings) -> imaplib.IMAP4:
    if imap.security == "ssl":
        return imaplib.IMAP4_SSL(
            imap.host, imap.port, ssl_context=ssl.create_default_context(), timeout=IMAP_TIMEOUT_SECONDS
        )
    client = imaplib.IMAP4(imap.host, imap.port, timeout=IMAP_TIMEOUT_SECONDS)
    if imap.security == "starttls":
        client.starttls(ssl_context=ssl.create_default_context())
    return client


def _fetch(client: imaplib.IMAP4, uid: bytes, max_bytes: int) -> bytes | None:
    """The message's bytes, or None when it is larger than max_bytes (asked for its size first, so a
    huge message is never downloaded). BODY.PEEK leaves it unseen until it is marked."""
    _, data = client.uid("FETCH", uid, "(RFC822.SIZE)")
    found = _SIZE.search(b" ".join(item for item in data if isinstance(item, bytes)))
    if found is None or int(found.group(1)) > max_bytes:
        return None
    _, data = client.uid("FETCH", uid, "(BODY.PEEK[])")
    for item in data:
        if isinstance(item, tuple) and len(item) == 2:
            return item[1][: max_bytes + 1]
    return None


def _mark(client: imaplib.IMAP4, uid: bytes, after: str) -> bool:
    """Mark a processed message; True when an EXPUNGE is due."""
    moved_to = _MOVE.match(after)
    if moved_to is not None:
        status, _ = client.uid("COPY", uid, _quoted(moved_to.group(1)))
        if status != "OK":
            # The mailbox is missing or full: seen at least, so it is not read at every poll.
            client.uid("STORE", uid, "+FLAGS", r"(\Seen)")
            log.warning("Bounce mailbox: cannot move a message to %r; marked seen", moved_to.group(1))
            return False
        client.uid("STORE", uid, "+FLAGS", r"(\Seen \Deleted)")
        return True
    if after == "delete":
        client.uid("STORE", uid, "+FLAGS", r"(\Seen \Deleted)")
        return True
    client.uid("STORE", uid, "+FLAGS", r"(\Seen)")
    return False


def _quoted(mailbox: str) -> str:
    return '"' + mailbox.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@contextlib.contextmanager
def poll_lock(redis_url: str, instance_dir: str) -> Iterator[bool]:
    """True while this process holds the poll lock; False at once when another poll holds it."""
    if redis_url:
        lock = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=2).lock(
            LOCK_KEY, timeout=LOCK_SECONDS
        )
        if not lock.acquire(blocking=False):
            yield False
            return
        try:
            yield True
        finally:
            with contextlib.suppress(redis.exceptions.LockError):
                lock.release()
        return
    path = Path(instance_dir) / "imap-poll.lock"
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
