"""A real Dovecot IMAP server for tests: a private instance started by the test and stopped after it.

Its own configuration file (nothing of /etc/dovecot is read), everything under one fresh directory:
IMAP only, on 127.0.0.1 and a free port, no TLS (`ssl = no`, plain-text login allowed: loopback
only), a passwd-file with plain passwords, and Maildir mailboxes owned by the system user `mail`.
Requires root (Dovecot's master drops privileges itself) and Debian's dovecot-imapd
(`bash .ci/install-mail-servers`).

    with DovecotInstance({"bounces": "secret"}) as dovecot:
        dovecot.append("bounces", raw_message)          # IMAP APPEND, as a mail server would deliver
        imaplib.IMAP4("127.0.0.1", dovecot.port) ...
"""

from __future__ import annotations

import imaplib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from tests.postfix import ManagedServer, free_port

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
MAIL_USER = "mail"  # owns the mailboxes; Dovecot refuses root


class DovecotInstance(ManagedServer):
    """One private Dovecot under a fresh directory in /tmp (its login processes run as unprivileged
    users, who must reach it), deleted by stop()."""

    def __init__(self, users: dict[str, str]) -> None:
        self.users = dict(users)
        self.directory = Path(tempfile.mkdtemp(prefix="mailapp-dovecot-"))
        self.config_file = self.directory / "dovecot.conf"
        self.log_file = self.directory / "dovecot.log"
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> None:
        self._write_config()
        # -F: in the foreground, so the test owns the process and stops it by its id.
        self.process = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(self.config_file)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                with imaplib.IMAP4("127.0.0.1", self.port, timeout=2):
                    return
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"Dovecot did not start on port {self.port}:\n{self.log()}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        shutil.rmtree(self.directory, ignore_errors=True)

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    # -- mailboxes ------------------------------------------------------------------------------------

    def connect(self, user: str) -> imaplib.IMAP4:
        client = imaplib.IMAP4("127.0.0.1", self.port, timeout=30)
        client.login(user, self.users[user])
        return client

    def append(self, user: str, raw: bytes, mailbox: str = "INBOX") -> None:
        """Put a message in the mailbox, unseen, with IMAP APPEND."""
        client = self.connect(user)
        try:
            status, reply = client.append(mailbox, "", imaplib.Time2Internaldate(time.time()), raw)
            if status != "OK":
                raise RuntimeError(f"APPEND failed: {reply}")
        finally:
            client.logout()

    def messages(self, user: str, mailbox: str = "INBOX", criteria: str = "ALL") -> list[bytes]:
        """The UIDs of the mailbox's messages that match the IMAP SEARCH criteria."""
        client = self.connect(user)
        try:
            client.select(mailbox)
            _, data = client.uid("SEARCH", criteria)
            return data[0].split() if data and data[0] else []
        finally:
            client.logout()

    # -- configuration -------------------------------------------------------------------------------

    def _write_config(self) -> None:
        uid, gid = _uid_gid(MAIL_USER) or (8, 8)
        os.chmod(self.directory, 0o755)  # noqa: S103 - a test server's own folder
        mail_root = self.directory / "mail"
        mail_root.mkdir()
        os.chown(mail_root, uid, gid)
        (self.directory / "passwd").write_text(
            "".join(f"{user}:{{PLAIN}}{password}::::::\n" for user, password in self.users.items())
        )
        d = self.directory
        self.config_file.write_text(f"""\
base_dir = {d}/run
state_dir = {d}/state
log_path = {self.log_file}
info_log_path = {self.log_file}
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 1
mail_location = maildir:{mail_root}/%u
mail_uid = {uid}
mail_gid = {gid}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={mail_root}/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
""")


def _uid_gid(user: str) -> tuple[int, int] | None:
    import pwd

    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return None
    return entry.pw_uid, entry.pw_gid
