"""A real Postfix for tests: a private instance started by the test and stopped after it.

Everything the instance owns lives under one directory: its config_directory (main.cf, master.cf, the
transport table), queue_directory, data_directory and its log (maillog_file, so nothing goes to
syslog). It listens only on 127.0.0.1, on a free port, and delivers only where it is told:

- `transports`: a transport_maps table (texthash, so no postmap run), domain -> transport, e.g.
  {"unknown.test": "error:5.1.1 No such user here",                  Postfix accepts, then bounces
   "bounce.example.com": "smtp:[127.0.0.1]:2525"}                     and delivers its DSN here.
  Every domain in it is a relay domain, and Postfix itself writes the DSN (RFC 3464) for a recipient
  that bounces after acceptance, to the envelope sender.
- `relayhost`: "[127.0.0.1]:port", where everything else goes (an aiosmtpd capture server, say):
  Postfix as a relay, e.g. to see what it does to a signed message.

The test client may relay through it from 127.0.0.1 (mynetworks). Requires root (Postfix's daemons
run as the `postfix` user) and Debian's postfix package (`bash .ci/install-mail-servers`).

    with PostfixInstance(transports={...}, relayhost="[127.0.0.1]:2526") as postfix:
        smtplib.SMTP("127.0.0.1", postfix.port).sendmail(...)
        postfix.wait_for_log("status=bounced")
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"

# Postfix's services, every one outside a chroot (the instance's files are not in one). Columns:
# service type private unpriv chroot wakeup maxproc command.
_SERVICES = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ManagedServer:
    """A server a test starts and stops: `with Server(...) as server:` starts it, and stops it after."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self):  # the subclass instance
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class PostfixInstance(ManagedServer):
    """One private Postfix instance under `directory` (see the module docstring)."""

    def __init__(
        self, transports: dict[str, str] | None = None, relayhost: str = "",
        settings: dict[str, str] | None = None, directory: Path | None = None,
    ) -> None:
        # Postfix's daemons run as the user postfix, who must reach every directory on the way, which
        # pytest's tmp_path (mode 700 parents) does not allow: by default a fresh folder in /tmp,
        # deleted by stop().
        self.owns_directory = directory is None
        self.directory = Path(directory or tempfile.mkdtemp(prefix="mailapp-postfix-"))
        self.config_directory = self.directory / "etc"
        self.queue_directory = self.directory / "queue"
        self.data_directory = self.directory / "data"
        self.log_file = self.directory / "maillog"
        self.port = free_port()
        self.transports = dict(transports or {})
        self.relayhost = relayhost
        self.settings = dict(settings or {})
        self.running = False

    # -- lifecycle ------------------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> None:
        self._write_config()
        self._postfix("start")
        self.running = True
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    if sock.recv(100).startswith(b"220"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"Postfix did not answer on port {self.port}:\n{self.log()}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.running:
            self.running = False
            subprocess.run(
                [POSTFIX, "-c", str(self.config_directory), "stop"], capture_output=True, check=False
            )
        if self.owns_directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    def flush(self) -> None:
        """Try every deferred message now (`postqueue -f`)."""
        subprocess.run(
            ["postqueue", "-c", str(self.config_directory), "-f"], capture_output=True, check=False
        )

    # -- what happened ----------------------------------------------------------------------------------

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def wait_for_log(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:
        """The first match of the regex in the instance's log, waiting for it to appear."""
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(pattern, self.log())
            if found is not None:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} not in the Postfix log within {timeout}s:\n{self.log()}")
            time.sleep(0.1)

    # -- configuration -------------------------------------------------------------------------------

    def main_cf(self) -> dict[str, str]:
        name = f"postfix-test-{self.port}"
        values = {
            "compatibility_level": "3.6",
            "config_directory": str(self.config_directory),
            "queue_directory": str(self.queue_directory),
            "data_directory": str(self.data_directory),
            "maillog_file": str(self.log_file),
            "maillog_file_prefixes": str(self.directory),  # the default allows only /var and /dev/stdout
            "syslog_name": name,
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "myhostname": f"{name}.localhost",
            "mydomain": "localhost",
            "myorigin": "$myhostname",
            "mydestination": "",
            "local_recipient_maps": "",
            "alias_maps": "",
            "alias_database": "",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "relay_domains": ", ".join(sorted(self.transports)) or "",
            "transport_maps": f"texthash:{self.config_directory / 'transport'}",
            "relayhost": self.relayhost,
            "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
            # Accept at RCPT whatever the transport says; an `error:` transport then bounces after
            # acceptance, with a DSN, as a remote server's refusal would (by default smtpd refuses
            # such recipients at once, and no DSN is written).
            "smtpd_reject_unlisted_recipient": "no",
            "smtputf8_enable": "no",
            "smtp_tls_security_level": "none",
            "smtpd_tls_security_level": "none",
            "biff": "no",
            # Tests wait for deliveries: retry at once, warn about nothing, give up soon.
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "2s",
            "delay_warning_time": "0h",
            "maximal_queue_lifetime": "1h",
            "bounce_queue_lifetime": "1h",
            "smtp_connect_timeout": "5s",
            "in_flow_delay": "0",
            "default_destination_concurrency_limit": "5",
        }
        values.update(self.settings)
        return values

    def _write_config(self) -> None:
        for directory in (self.config_directory, self.queue_directory, self.data_directory):
            directory.mkdir(parents=True, exist_ok=True)
        # Postfix's daemons (user postfix) must reach their directories.
        os.chmod(self.directory, 0o755)  # noqa: S103 - a test instance's own folder, no secrets
        shutil.chown(self.data_directory, "postfix")
        main = "".join(f"{key} = {value}\n" for key, value in self.main_cf().items())
        (self.config_directory / "main.cf").write_text(main)
        smtpd = f"127.0.0.1:{self.port} inet n - n - - smtpd\n"
        (self.config_directory / "master.cf").write_text(smtpd + _SERVICES)
        (self.config_directory / "transport").write_text(
            "".join(f"{domain} {transport}\n" for domain, transport in self.transports.items())
        )

    def _postfix(self, command: str) -> None:
        done = subprocess.run(
            [POSTFIX, "-c", str(self.config_directory), command], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"postfix {command} failed: {done.stdout}{done.stderr}\n{self.log()}")
