"""Configuration read from the environment, with embedded defaults that need no services."""

from __future__ import annotations

import ipaddress
import os
import secrets
import tempfile
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from kombu import Exchange, Queue

BASE_DIR = Path(__file__).resolve().parent
# Absolute, so every process finds the same folder whatever its working directory. create_app creates
# it: on a fresh clone nothing else does, and beat cannot open its schedule file without it.
INSTANCE_DIR = Path(os.environ.get("MAILAPP_INSTANCE_DIR", BASE_DIR / "instance")).resolve()


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def _env_optional_bool(name: str) -> bool | None:
    """None when the variable is unset: the setting is then derived from others (apply_derived_settings)."""
    return _env_bool(name, False) if os.environ.get(name) is not None else None


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value not in (None, "") else default


def database_url(raw: str) -> str:
    """Pin PostgreSQL URLs to psycopg2, the driver we ship (SQLAlchemy 2.1 defaults to psycopg 3)."""
    for prefix in ("postgres://", "postgresql://"):
        if raw.startswith(prefix):
            return "postgresql+psycopg2://" + raw[len(prefix):]
    return raw


# "Keep me signed in" never lasts longer than this, whatever REMEMBER_COOKIE_DAYS says.
MAX_REMEMBER_COOKIE_DAYS = 30
SECRET_KEY_FILE_NAME = "secret_key"  # noqa: S105 - a file name, not a key


def is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def apply_derived_settings(config: dict) -> None:
    """Fill in the settings left as None, from PUBLIC_URL: cookie Secure flags (https) and the dev inbox
    (loopback only). create_app calls this after loading the config."""
    public_url = config.get("PUBLIC_URL") or ""
    for name in ("SESSION_COOKIE_SECURE", "REMEMBER_COOKIE_SECURE"):
        if config.get(name) is None:
            config[name] = public_url.lower().startswith("https://")
    if config.get("DEVINBOX_ENABLED") is None:
        config["DEVINBOX_ENABLED"] = is_loopback_url(public_url)


def load_or_create_secret_key(instance_dir: Path) -> str:
    """The installation's own key in `instance_dir/secret_key` (mode 600), made on first use.

    Web, worker and beat may all start at once and must end up with the same key: the key is written
    to a private temporary file and linked into place, which fails if another process got there first
    (its complete file then wins), so no process ever reads a half-written key."""
    instance_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = instance_dir / SECRET_KEY_FILE_NAME
    if not path.exists():
        descriptor, temporary = tempfile.mkstemp(dir=instance_dir, prefix=".secret_key-")  # mode 600
        try:
            with os.fdopen(descriptor, "w") as file:
                file.write(secrets.token_hex(32))
                file.flush()
                os.fsync(file.fileno())
            os.link(temporary, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(temporary)
    key = path.read_text().strip()
    if len(key) < 32:
        raise RuntimeError(f"{path} holds no usable secret key: delete it, or set SECRET_KEY")
    return key


class Config:
    """Production and `make run` settings. Every value can be overridden by an env var of the same name."""

    SECRET_KEY = os.environ.get("SECRET_KEY")
    # Seals secrets stored in the database (DKIM keys, relay passwords): see mailapp/secret_box.py.
    # Empty: a key derived from SECRET_KEY. Several, comma-separated: the first seals, all open.
    ENCRYPTION_KEY = os.environ.get("ENCRYPTION_KEY", "")

    # The sending domains' DNS check (mailapp/domains/dns_check.py). DNS_RESOLVER: `host:port` of the
    # resolver to ask (an IP address: a name would need a resolver); empty: the system's.
    DNS_RESOLVER = os.environ.get("DNS_RESOLVER", "")
    DNS_TIMEOUT_SECONDS = _env_float("DNS_TIMEOUT_SECONDS", 5)
    # The SPF record suggested for a sending domain (`include:_spf.relay.example ip4:192.0.2.1`);
    # empty: the relay host (MAIL_SERVER) as a hint. The DMARC record's rua= address; empty:
    # dmarc-reports@<the domain>.
    SPF_MECHANISMS = os.environ.get("SPF_MECHANISMS", "")
    DMARC_REPORT_EMAIL = os.environ.get("DMARC_REPORT_EMAIL", "")

    SQLALCHEMY_DATABASE_URI = database_url(
        os.environ.get("DATABASE_URL", f"sqlite:///{INSTANCE_DIR / 'mailapp.sqlite'}")
    )
    SQLALCHEMY_ENGINE_OPTIONS: dict = {"pool_pre_ping": True}

    CELERY_BROKER_URL = os.environ.get(
        "CELERY_BROKER_URL", f"sqla+sqlite:///{INSTANCE_DIR / 'celery.sqlite'}"
    )
    # How often a worker looks for new messages on the embedded default's database broker (Redis
    # pushes them). Every hop of a campaign (start, batches, continuations) waits up to this long; an
    # empty look is a few queries on a small SQLite file.
    SQLA_BROKER_POLL_SECONDS = _env_float("SQLA_BROKER_POLL_SECONDS", 0.5)
    # Redis for the shared send-rate bucket and login throttling. Empty on the embedded default,
    # where the send-rate bucket is a file under the instance folder, shared by this machine's workers.
    REDIS_URL = os.environ.get(
        "REDIS_URL",
        os.environ.get("CELERY_BROKER_URL", "")
        if os.environ.get("CELERY_BROKER_URL", "").startswith("redis")
        else "",
    )

    PUBLIC_URL = os.environ.get("PUBLIC_URL", "http://127.0.0.1:5000").rstrip("/")
    # Production refuses an http PUBLIC_URL (config_from_env): mail providers only offer one-click
    # unsubscribe (RFC 8058) for an https List-Unsubscribe URL. This lets a deployment behind a
    # private network, or a staging copy, start anyway.
    ALLOW_HTTP_PUBLIC_URL = _env_bool("ALLOW_HTTP_PUBLIC_URL", False)

    MAIL_SERVER = os.environ.get("MAIL_SERVER", "127.0.0.1")
    MAIL_PORT = _env_int("MAIL_PORT", 1025)
    MAIL_USERNAME = os.environ.get("MAIL_USERNAME")
    MAIL_PASSWORD = os.environ.get("MAIL_PASSWORD")
    MAIL_USE_TLS = _env_bool("MAIL_USE_TLS", False)
    MAIL_USE_SSL = _env_bool("MAIL_USE_SSL", False)
    MAIL_DEFAULT_SENDER = os.environ.get("MAIL_DEFAULT_SENDER", "mailapp@localhost")
    # Messages per second across every worker, for the one SMTP relay. 0 means unlimited.
    MAIL_RATE_LIMIT = _env_float("MAIL_RATE_LIMIT", 0)

    # Bounces and complaints (mailapp/inbound/). Set, every campaign message's envelope sender is
    # bounces+<signed delivery token>@BOUNCE_DOMAIN (VERP) and List-Unsubscribe also offers
    # unsubscribe+<token>@BOUNCE_DOMAIN; the domain's MX must reach the `inbound` process. Unset: the
    # envelope sender is the From address, as before.
    BOUNCE_DOMAIN = os.environ.get("BOUNCE_DOMAIN", "").strip().lower()
    # The inbound SMTP receiver. Loopback by default: in front of it goes the MTA the MX names, or a
    # port forward, so nothing on the internet reaches a port nobody chose to open.
    INBOUND_SMTP_HOST = os.environ.get("INBOUND_SMTP_HOST", "127.0.0.1")
    INBOUND_SMTP_PORT = _env_int("INBOUND_SMTP_PORT", 2525)
    # Feedback-loop addresses (ARF complaint reports from mailbox providers), comma-separated; the
    # receiver accepts these besides the VERP addresses.
    INBOUND_FEEDBACK_ADDRESSES = [
        address.strip().lower()
        for address in os.environ.get("INBOUND_FEEDBACK_ADDRESSES", "").split(",")
        if address.strip()
    ]
    # A bounce or report larger than this is refused (SMTP SIZE) or skipped (IMAP): real ones are a few
    # kilobytes plus the returned message.
    INBOUND_MAX_BYTES = _env_int("INBOUND_MAX_BYTES", 10 * 1024 * 1024)
    # Open SMTP sessions the receiver holds at once; one more is answered 421 and closed, so a client
    # that opens thousands of idle connections costs sockets only up to this many.
    INBOUND_MAX_CONNECTIONS = _env_int("INBOUND_MAX_CONNECTIONS", 100)
    # A mailbox that collects bounces (when the MX is someone else's), polled by a beat task.
    BOUNCE_IMAP_HOST = os.environ.get("BOUNCE_IMAP_HOST", "")
    BOUNCE_IMAP_PORT = _env_int("BOUNCE_IMAP_PORT", 993)
    BOUNCE_IMAP_SECURITY = os.environ.get("BOUNCE_IMAP_SECURITY", "ssl").strip().lower()
    BOUNCE_IMAP_USER = os.environ.get("BOUNCE_IMAP_USER", "")
    BOUNCE_IMAP_PASSWORD = os.environ.get("BOUNCE_IMAP_PASSWORD", "")
    BOUNCE_IMAP_MAILBOX = os.environ.get("BOUNCE_IMAP_MAILBOX", "INBOX")
    # What becomes of a processed message: seen, delete, or move:<mailbox>.
    BOUNCE_IMAP_AFTER = os.environ.get("BOUNCE_IMAP_AFTER", "seen").strip()
    BOUNCE_IMAP_POLL_SECONDS = _env_float("BOUNCE_IMAP_POLL_SECONDS", 60)

    MAILAPP_ADMIN_EMAIL = os.environ.get("MAILAPP_ADMIN_EMAIL")
    MAILAPP_ADMIN_PASSWORD = os.environ.get("MAILAPP_ADMIN_PASSWORD")

    DEVINBOX_DIR = os.environ.get("DEVINBOX_DIR", str(INSTANCE_DIR / "devinbox"))
    # The dev inbox shows every message the app sent, to any signed-in user. Unset, it is on only when
    # PUBLIC_URL is a loopback address (`make run`); any reachable installation must ask for it.
    DEVINBOX_ENABLED = _env_optional_bool("DEVINBOX_ENABLED")
    DEVINBOX_MAX_MESSAGES = _env_int("DEVINBOX_MAX_MESSAGES", 5000)
    UPLOAD_DIR = os.environ.get("UPLOAD_DIR", str(INSTANCE_DIR / "uploads"))
    # The app's instance folder (Flask's instance_path): beat's schedule, the embedded default's files.
    # Below the paths built from the module's INSTANCE_DIR, which this name shadows in the class.
    INSTANCE_DIR = str(INSTANCE_DIR)

    # Uploads: layouts are small; CSV files can be large but are streamed to disk.
    LAYOUT_MAX_BYTES = _env_int("LAYOUT_MAX_BYTES", 2 * 1024 * 1024)
    # Layout images are kept in the database and served by the web process: a bound on both.
    LAYOUT_IMAGE_MAX_BYTES = _env_int("LAYOUT_IMAGE_MAX_BYTES", 2 * 1024 * 1024)
    # A JSON body of the API beyond this is refused with 413 before it is read. Layouts, which arrive as
    # JSON too, get room of their own: six times LAYOUT_MAX_BYTES plus 1 MiB (a client may write every
    # non-ASCII character as a \u escape).
    API_MAX_JSON_BYTES = _env_int("API_MAX_JSON_BYTES", 1024 * 1024)
    MAX_CONTENT_LENGTH = _env_int("MAX_CONTENT_LENGTH", 512 * 1024 * 1024)
    IMPORT_MAX_BYTES = _env_int("IMPORT_MAX_BYTES", MAX_CONTENT_LENGTH)
    # One CSV row (a quoted field's line breaks included) may be at most this long; a longer one is an
    # invalid row. It bounds what the import worker holds per row, whatever the file.
    IMPORT_MAX_LINE_BYTES = _env_int("IMPORT_MAX_LINE_BYTES", 64 * 1024)
    # PostgreSQL: writers per import, each on its own connection, each taking the emails of its hash
    # share of every chunk (1 writes as before). SQLite has one writer whatever this says.
    IMPORT_WRITERS = _env_int("IMPORT_WRITERS", 2)
    # A segment's count runs while a marketer edits its rules (and from the API): on PostgreSQL it is
    # cancelled after this many milliseconds with an error that says so, whatever the tree asks for.
    SEGMENT_COUNT_TIMEOUT_MS = _env_int("SEGMENT_COUNT_TIMEOUT_MS", 15_000)
    # PostgreSQL: the memory a count's rules that look into deliveries or lists share for their hash
    # tables (a campaign's 800,000 non-openers hashed once beat 1M index probes: "opened A or did not
    # open B" counted in 2.1 s instead of 3.2 s on the bench data), split
    # between them, at least 4 MB each (PostgreSQL's default work_mem) and at most 64 MB.
    SEGMENT_COUNT_MEMORY_MB = _env_int("SEGMENT_COUNT_MEMORY_MB", 128)
    # A suppression-list CSV is read whole and checked line by line before anything is written (all or
    # nothing), in the request: bounded so that it stays a few seconds and a few tens of MB (~300,000
    # addresses at the default).
    SUPPRESSION_IMPORT_MAX_BYTES = _env_int("SUPPRESSION_IMPORT_MAX_BYTES", 16 * 1024 * 1024)
    # A subscriber's attributes, through the dashboard, the API and CSV imports alike.
    SUBSCRIBER_MAX_ATTRIBUTES = _env_int("SUBSCRIBER_MAX_ATTRIBUTES", 50)
    SUBSCRIBER_MAX_ATTRIBUTE_KEY_LENGTH = _env_int("SUBSCRIBER_MAX_ATTRIBUTE_KEY_LENGTH", 100)
    SUBSCRIBER_MAX_ATTRIBUTE_BYTES = _env_int("SUBSCRIBER_MAX_ATTRIBUTE_BYTES", 2048)

    SEND_BATCH_SIZE = _env_int("SEND_BATCH_SIZE", 500)
    SEND_LEASE_SECONDS = _env_int("SEND_LEASE_SECONDS", 300)
    # send_batch tasks queued per campaign: how many connections to the relay one campaign uses.
    SEND_PARALLELISM = _env_int("SEND_PARALLELISM", 4)
    # A send task hands its worker slot back after this long and queues its own continuation, so
    # scheduled starts and the sweeper are never stuck behind a long campaign.
    SEND_RUN_SECONDS = _env_float("SEND_RUN_SECONDS", 30)
    SEND_MAX_ATTEMPTS = _env_int("SEND_MAX_ATTEMPTS", 5)  # 4xx replies this many times: failed
    SEND_RETRY_BASE_SECONDS = _env_float("SEND_RETRY_BASE_SECONDS", 60)  # first 4xx retry; doubles
    SEND_MAX_CONSECUTIVE_FAILURES = _env_int("SEND_MAX_CONSECUTIVE_FAILURES", 20)  # then pause
    # Sent marks are written in groups of at most this many, or this often: the most a crashed worker
    # process can send again.
    SEND_MARK_GROUP = _env_int("SEND_MARK_GROUP", 20)
    SEND_MARK_SECONDS = _env_float("SEND_MARK_SECONDS", 0.25)
    # A relay that stops answering mid-session: give up on the connection after this long (the message
    # in flight is retried later), well inside the lease, so a stalled task never outlives its rows.
    SEND_SMTP_TIMEOUT_SECONDS = _env_float("SEND_SMTP_TIMEOUT_SECONDS", 60)
    # A relay that offers CHUNKING (RFC 3030) and PIPELINING gets BDAT, and up to this many messages are
    # written ahead of their answers: on a relay 20 ms away a connection carries that many messages per
    # round trip instead of one (at most 100; 1 keeps DATA). Also the most messages a broken connection
    # leaves in doubt (each is retried, and may arrive twice). Off for a relay whose CHUNKING misbehaves.
    SEND_SMTP_CHUNKING = _env_bool("SEND_SMTP_CHUNKING", True)
    SEND_SMTP_PIPELINE_WINDOW = _env_int("SEND_SMTP_PIPELINE_WINDOW", 20)
    SEND_CONNECT_RETRIES = _env_int("SEND_CONNECT_RETRIES", 3)  # an unreachable relay, then pause
    SEND_CONNECT_RETRY_SECONDS = _env_float("SEND_CONNECT_RETRY_SECONDS", 5)  # doubling
    # An address that soft-bounced (mailbox full, server down) this many times within the window is
    # marked bounced and suppressed, like a hard bounce: it keeps costing reputation and never reads.
    SOFT_BOUNCE_LIMIT = _env_int("SOFT_BOUNCE_LIMIT", 3)
    SOFT_BOUNCE_WINDOW_DAYS = _env_int("SOFT_BOUNCE_WINDOW_DAYS", 30)
    # A sending campaign pauses itself when, once it has sent AUTO_PAUSE_MIN_SENT, its complaints or hard
    # bounces pass these fractions of sent: the usual mailbox-provider limits (Gmail asks for complaints
    # under 0.3%), before a bad list costs the sending domain its reputation.
    AUTO_PAUSE_MIN_SENT = _env_int("AUTO_PAUSE_MIN_SENT", 500)
    AUTO_PAUSE_COMPLAINT_RATE = _env_float("AUTO_PAUSE_COMPLAINT_RATE", 0.003)
    AUTO_PAUSE_HARD_BOUNCE_RATE = _env_float("AUTO_PAUSE_HARD_BOUNCE_RATE", 0.05)
    # A relay that failed over to its backup is tried again (one probe) after this long.
    RELAY_RECOVERY_SECONDS = _env_float("RELAY_RECOVERY_SECONDS", 300)
    # A relay with a backup that answers this many messages in a row with 4xx fails over too: it is up
    # but takes nothing. Below SEND_MAX_CONSECUTIVE_FAILURES, so the backup takes over before a pause.
    RELAY_FAILOVER_DEFERRALS = _env_int("RELAY_FAILOVER_DEFERRALS", 10)
    # The longest the "Test connection" of a relay waits for each step (connect, EHLO, STARTTLS, login).
    RELAY_TEST_TIMEOUT_SECONDS = _env_float("RELAY_TEST_TIMEOUT_SECONDS", 10)
    # Hosts a stored relay may name (comma-separated; empty: any). Whoever edits relays makes the app
    # connect where they say ("Test connection" reports what answers): this bounds it.
    RELAY_ALLOWED_HOSTS = os.environ.get("RELAY_ALLOWED_HOSTS", "")
    SCHEDULE_HORIZON_SECONDS = _env_int("SCHEDULE_HORIZON_SECONDS", 1800)
    # The beat dispatcher's tick: the longest an overdue schedule waits (its start message lost and
    # not caught by the lookahead).
    SCHEDULE_DISPATCH_SECONDS = _env_float("SCHEDULE_DISPATCH_SECONDS", 1.0)
    # Schedules due this soon get a fresh start message at every tick. More than a tick plus a broker
    # poll, so that the message is in a worker before its time.
    SCHEDULE_LOOKAHEAD_SECONDS = _env_float("SCHEDULE_LOOKAHEAD_SECONDS", 4.0)

    # Every template render (web and send) is held to these: the longest output or value, in characters
    # (at least LAYOUT_MAX_BYTES: a layout may print itself whole), operators, filters, calls and loop
    # iterations, and wall-clock seconds. A send's render over them fails that one delivery.
    RENDER_MAX_OUTPUT_BYTES = _env_int("RENDER_MAX_OUTPUT_BYTES", 4 * 1024 * 1024)
    RENDER_MAX_STEPS = _env_int("RENDER_MAX_STEPS", 2_000_000)
    RENDER_TIMEOUT_SECONDS = _env_float("RENDER_TIMEOUT_SECONDS", 2.0)
    # Web renders (save, preview, subject checks) run in a child process with this much memory.
    RENDER_MEMORY_BYTES = _env_int("RENDER_MEMORY_BYTES", 256 * 1024 * 1024)
    # A send task is asked to stop at the soft limit (it hands back the rows it holds) and killed at the
    # hard one (the sweeper hands its rows back when their lease ends). Both well above SEND_RUN_SECONDS,
    # after which a task hands over to its continuation anyway.
    SEND_TASK_SOFT_TIME_LIMIT = _env_float("SEND_TASK_SOFT_TIME_LIMIT", 240)
    SEND_TASK_TIME_LIMIT = _env_float("SEND_TASK_TIME_LIMIT", 270)

    # Provider webhooks (mailapp/webhooks/): each provider answers 404 until its settings are set.
    # Largest webhook body read (SendGrid posts events in batches); larger is a 413 before it is read.
    WEBHOOK_MAX_BYTES = _env_int("WEBHOOK_MAX_BYTES", 1024 * 1024)
    # SendGrid and Mailgun requests signed longer ago (or further ahead) than this are refused, which
    # bounds how long Mailgun's one-time tokens must be remembered.
    WEBHOOK_REPLAY_WINDOW_SECONDS = _env_int("WEBHOOK_REPLAY_WINDOW_SECONDS", 600)
    # Requests with more events than this are staged and recorded by a task after a 202, so that a
    # SendGrid batch of thousands is answered at once instead of after a minute of recording.
    WEBHOOK_INLINE_EVENTS = _env_int("WEBHOOK_INLINE_EVENTS", 100)
    # SES through SNS: the topics whose notifications are taken (comma-separated; empty: SES off), and
    # the hosts SNS signing certificates and subscription URLs may come from (a regular expression).
    SES_SNS_TOPIC_ARNS = os.environ.get("SES_SNS_TOPIC_ARNS", "")
    SES_SNS_CERT_HOST_PATTERN = os.environ.get(
        "SES_SNS_CERT_HOST_PATTERN", r"^sns\.[a-z0-9-]+\.amazonaws\.com$"
    )
    # Tests only: lets them serve certificates over plain HTTP from loopback. Refused in production.
    SES_SNS_CERT_ALLOW_HTTP = _env_bool("SES_SNS_CERT_ALLOW_HTTP", False)
    SENDGRID_WEBHOOK_PUBLIC_KEY = os.environ.get("SENDGRID_WEBHOOK_PUBLIC_KEY", "")
    # Postmark does not sign webhooks; it sends these as basic auth credentials in the webhook URL.
    POSTMARK_WEBHOOK_USER = os.environ.get("POSTMARK_WEBHOOK_USER", "")
    POSTMARK_WEBHOOK_PASSWORD = os.environ.get("POSTMARK_WEBHOOK_PASSWORD", "")
    MAILGUN_WEBHOOK_SIGNING_KEY = os.environ.get("MAILGUN_WEBHOOK_SIGNING_KEY", "")

    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    # None: Secure exactly when PUBLIC_URL is https (apply_derived_settings).
    SESSION_COOKIE_SECURE: bool | None = None
    REMEMBER_COOKIE_SECURE: bool | None = None
    REMEMBER_COOKIE_HTTPONLY = True
    REMEMBER_COOKIE_SAMESITE = "Lax"
    REMEMBER_COOKIE_DURATION = timedelta(
        days=min(_env_int("REMEMBER_COOKIE_DAYS", 14), MAX_REMEMBER_COOKIE_DAYS)
    )
    # How long a sign-in without "keep me signed in" is honoured by the server, however long the
    # browser keeps its cookie: bounds the use of a copied session cookie.
    SESSION_LIFETIME_HOURS = _env_int("SESSION_LIFETIME_HOURS", 12)
    WTF_CSRF_TIME_LIMIT = None
    BOOTSTRAP_SERVE_LOCAL = True
    # Sign-in attempts per client address and per account (the email typed, whether or not it exists)
    # in each window, counted across every process: in Redis when REDIS_URL is set, else in the database.
    LOGIN_MAX_ATTEMPTS_PER_ADDRESS = _env_int("LOGIN_MAX_ATTEMPTS_PER_ADDRESS", 10)
    LOGIN_MAX_ATTEMPTS_PER_ACCOUNT = _env_int("LOGIN_MAX_ATTEMPTS_PER_ACCOUNT", 10)
    LOGIN_THROTTLE_WINDOW_SECONDS = _env_int("LOGIN_THROTTLE_WINDOW_SECONDS", 60)
    # Signups (hosted forms, snippets, the public API): per email address and per form in each window,
    # counted like sign-ins. Per address keeps a form from being used to flood one inbox with
    # confirmation emails; per form bounds what a bot can add.
    SIGNUP_MAX_PER_ADDRESS = _env_int("SIGNUP_MAX_PER_ADDRESS", 5)
    SIGNUP_MAX_PER_FORM = _env_int("SIGNUP_MAX_PER_FORM", 1000)
    SIGNUP_THROTTLE_WINDOW_SECONDS = _env_int("SIGNUP_THROTTLE_WINDOW_SECONDS", 3600)
    # How long an emailed double opt-in confirmation link works.
    CONFIRM_LINK_TTL_HOURS = _env_int("CONFIRM_LINK_TTL_HOURS", 72)
    # Largest signup request body (form post or JSON): a signup is a few fields.
    SIGNUP_MAX_BYTES = _env_int("SIGNUP_MAX_BYTES", 16384)
    # ALTCHA proof of work (forms that turn it on): PBKDF2/SHA-256 iterations per attempt (a browser
    # makes about 256 attempts, well under a second on a phone at the default), and how long a
    # challenge may be solved and used.
    ALTCHA_COST = _env_int("ALTCHA_COST", 5000)
    ALTCHA_EXPIRY_SECONDS = _env_int("ALTCHA_EXPIRY_SECONDS", 600)
    # Reverse proxies in front of the app that set X-Forwarded-For/-Proto/-Host. 0 trusts no such
    # header: the client address is the socket's, so a client cannot pick its own throttle key.
    TRUSTED_PROXIES = _env_int("TRUSTED_PROXIES", 0)
    # Invite links (signed, single use) stop working after this long.
    INVITE_TTL_HOURS = _env_float("INVITE_TTL_HOURS", 72)
    # Password-reset links stop working after this long, or as soon as the password changes.
    PASSWORD_RESET_TTL_MINUTES = _env_float("PASSWORD_RESET_TTL_MINUTES", 60)
    # The second sign-in step (the two-factor code) must follow the password within this long.
    TWO_FACTOR_STEP_SECONDS = _env_int("TWO_FACTOR_STEP_SECONDS", 300)
    # Werkzeug's scrypt parameters (n=2^15, r=8, p=1): memory-hard, about 0.1 s per check.
    PASSWORD_HASH_METHOD = "scrypt:32768:8:1"  # noqa: S105 - a method name, not a password

    TESTING = False

    @property
    def CELERY(self) -> dict:  # Flask reads config keys in upper case
        return {
            "broker_url": self.CELERY_BROKER_URL,
            "task_ignore_result": True,
            "task_acks_late": True,
            "task_reject_on_worker_lost": True,
            "worker_prefetch_multiplier": 1,
            "broker_connection_retry_on_startup": True,
            # Beat's own state (when each periodic task last ran), in the instance folder that
            # create_app makes, found whatever directory beat is started from.
            "beat_schedule_filename": str(Path(self.INSTANCE_DIR) / "celerybeat-schedule"),
            # Starts of scheduled campaigns have a queue of their own, so a worker that takes only
            # that queue (the Procfile's `scheduler`) starts them on time while every slot of the main
            # worker is sending. A worker started without -Q takes both queues.
            # Each queue its own exchange and routing key: left out, both would bind the default
            # exchange with the key "celery", and every message would reach both queues.
            "task_queues": (
                Queue("celery", Exchange("celery"), routing_key="celery"),
                Queue("schedule", Exchange("schedule"), routing_key="schedule"),
            ),
            # Only send tasks: imports and snapshots of large lists may rightly take longer.
            "task_annotations": {
                "mailapp.sending.tasks.send_batch": {
                    "soft_time_limit": self.SEND_TASK_SOFT_TIME_LIMIT,
                    "time_limit": self.SEND_TASK_TIME_LIMIT,
                }
            },
            "task_routes": {
                "mailapp.campaigns.tasks.start_campaign": {"queue": "schedule"},
                "mailapp.campaigns.tasks.dispatch_due_campaigns": {"queue": "schedule"},
            },
            "broker_transport_options": (
                {"polling_interval": self.SQLA_BROKER_POLL_SECONDS}
                if self.CELERY_BROKER_URL.startswith(("sqla+", "sqlalchemy+"))
                else {}
            ),
            "beat_schedule": {
                "dispatch-due-campaigns": {
                    "task": "mailapp.campaigns.tasks.dispatch_due_campaigns",
                    "schedule": self.SCHEDULE_DISPATCH_SECONDS,
                },
                "sweep-expired-leases": {
                    "task": "mailapp.sending.tasks.sweep_expired_leases",
                    "schedule": 10.0,
                },
                # Large webhook batches whose task was lost or cut short.
                "record-stale-webhook-batches": {
                    "task": "mailapp.webhooks.tasks.record_stale_webhook_batches",
                    "schedule": 60.0,
                },
                # Sending appends delivery count rows on PostgreSQL; this folds them, so pages only read.
                "fold-delivery-counts": {
                    "task": "mailapp.reports.tasks.fold_delivery_counts",
                    "schedule": 30.0,
                },
            }
            | (
                # Opens are buffered in Redis only when there is one; the embedded default writes them
                # straight to the database, with nothing to flush.
                {
                    "flush-open-events": {
                        "task": "mailapp.tracking.tasks.flush_open_events",
                        "schedule": 1.0,
                    }
                }
                if self.REDIS_URL
                else {}
            )
            | (
                {
                    "poll-bounce-mailbox": {
                        "task": "mailapp.inbound.tasks.poll_bounce_mailbox",
                        "schedule": self.BOUNCE_IMAP_POLL_SECONDS,
                    }
                }
                if self.BOUNCE_IMAP_HOST
                else {}
            ),
        }


class DevelopmentConfig(Config):
    """`make run` and any MAILAPP_ENV but production: without SECRET_KEY, config_from_env gives it the
    installation's own random key from the instance folder."""


class TestConfig(Config):
    """Tests: passed to create_app by tests/conftest.py, with paths and ports filled in there."""

    TESTING = True
    SECRET_KEY = "test-secret-key"  # noqa: S105 - tests only
    WTF_CSRF_ENABLED = True
    # Tests use PUBLIC_URL http://mailapp.test, not a loopback address.
    DEVINBOX_ENABLED = True
    # Still scrypt, with a smaller work factor: hundreds of tests create and sign in a user.
    PASSWORD_HASH_METHOD = "scrypt:1024:8:1"  # noqa: S105 - a method name, not a password
    SEND_LEASE_SECONDS = 30
    # Flask-Mail suppresses sending when TESTING; tests send to a real SMTP server (tests/smtp.py).
    MAIL_SUPPRESS_SEND = False
    # No DNS query may leave the machine: the discard port on loopback answers nothing, so a check
    # fails in half a second. Tests of the check point DNS_RESOLVER at tests/dns_server.py.
    DNS_RESOLVER = "127.0.0.1:9"
    DNS_TIMEOUT_SECONDS = 0.5
    # Tests (and the API fuzz) never make the app connect beyond this machine.
    RELAY_ALLOWED_HOSTS = "127.0.0.1,::1,localhost"


def refuse_http_public_url() -> None:
    """Production's PUBLIC_URL must be https unless ALLOW_HTTP_PUBLIC_URL=1. Read from the environment
    now, as config_from_env's other checks are, not from the class attributes set at import."""
    public_url = os.environ.get("PUBLIC_URL", Config.PUBLIC_URL)
    if urlsplit(public_url.strip()).scheme.lower() == "https" or _env_bool("ALLOW_HTTP_PUBLIC_URL", False):
        return
    raise RuntimeError(
        f"PUBLIC_URL must be an https:// address when MAILAPP_ENV=production (it is {public_url!r}): "
        "mail providers offer one-click unsubscribe only for https links. Set ALLOW_HTTP_PUBLIC_URL=1 "
        "to start with an http address anyway."
    )


def config_from_env(instance_dir: Path = INSTANCE_DIR) -> Config:
    """The config wsgi.py uses: production refuses to start without SECRET_KEY; anything else without
    it uses the installation's own random key, never one published in this source."""
    secret_key = os.environ.get("SECRET_KEY")
    if os.environ.get("MAILAPP_ENV", "development") == "production":
        if not secret_key:
            raise RuntimeError("SECRET_KEY must be set when MAILAPP_ENV=production")
        refuse_http_public_url()
        if _env_bool("SES_SNS_CERT_ALLOW_HTTP", False):
            # Plain HTTP would let anyone on the path hand us the key that "proves" a forged message.
            raise RuntimeError("SES_SNS_CERT_ALLOW_HTTP is for tests only: unset it in production")
        return Config()
    config = DevelopmentConfig()
    config.SECRET_KEY = secret_key or load_or_create_secret_key(instance_dir)
    return config
