"""Which relay a campaign's mail goes through, and the shared state behind that choice.

The choice: the campaign's relay, else its sender identity's, else the relay row marked default, else
the MAIL_* environment (the default relay, id None). A disabled relay counts as not chosen.

Failover: a relay that could not be reached (SEND_CONNECT_RETRIES times) is marked failed over until
RELAY_RECOVERY_SECONDS from then, in its row, which every worker on every machine reads; meanwhile its
backup sends. Once that time passes the next send task tries the relay again (the probe): if it
connects, the mark is cleared; if not, the mark is set again at once, without the retries.

Caps: a campaign held back by a relay's cap keeps its status (sending) and gets `waiting_until` and
the reason on its page; the first task that hits the cap queues the continuation, the others and the
sweeper leave it alone until then."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update

from mailapp.extensions import db
from mailapp.models import Campaign, CampaignStatus, SenderIdentity, SmtpRelay, TlsMode, utcnow
from mailapp.secret_box import SecretBox
from mailapp.sending.caps import CappedRateLimiter
from mailapp.sending.relay import DEFAULT_RELAY_NAME, Relay, RelaySettings

# A chain of backups is followed this far at most (a relay that backs itself up, or a loop).
_MAX_HOPS = 5


@dataclass(frozen=True)
class ChosenRelay:
    relay: Relay
    limiter: CappedRateLimiter
    max_connections: int | None  # None: SEND_PARALLELISM decides alone
    # The relay the campaign chose, when sending went to its backup instead (it is failed over).
    failed_over_from: int | None = None
    # The chosen relay is past its failover mark and is being tried again: one failure sends it back.
    probing: bool = False
    has_backup: bool = False


def chosen_relay_row(campaign: Campaign) -> SmtpRelay | None:
    """The campaign's relay before failover: None for the MAIL_* default."""
    for candidate in (campaign.relay, campaign.sender_identity.relay if campaign.sender_identity else None):
        if candidate is not None and candidate.enabled:
            return candidate
    return default_relay_row()


def batch_task_count(campaign_id: int, parallelism: int) -> int:
    """How many batch tasks a campaign runs at once: SEND_PARALLELISM, at most its relay's max
    connections (the MAIL_* default has none of its own)."""
    campaign = db.session.get(Campaign, campaign_id)
    row = chosen_relay_row(campaign) if campaign is not None else None
    return min(parallelism, max(1, row.max_connections)) if row is not None else parallelism


def default_relay_row() -> SmtpRelay | None:
    return db.session.scalar(
        select(SmtpRelay).where(SmtpRelay.is_default, SmtpRelay.enabled).order_by(SmtpRelay.id).limit(1)
    )


def identity_relay_row(identity_id: int | None) -> SmtpRelay | None:
    identity = db.session.get(SenderIdentity, identity_id) if identity_id else None
    return identity.relay if identity is not None else None


def choose_relay(campaign_id: int | None, config: Mapping[str, Any], mail_extension: Any, instance_path: str
                 ) -> ChosenRelay:
    """The relay to send the campaign's next batch through, built with its limits. config: the app's
    (MAIL_*, SEND_SMTP_TIMEOUT_SECONDS, REDIS_URL, MAIL_RATE_LIMIT, secret keys); mail_extension: the
    app's Flask-Mail (the default relay's settings). No campaign (system mail): the default relay."""
    campaign = db.session.get(Campaign, campaign_id) if campaign_id is not None else None
    row = chosen_relay_row(campaign) if campaign is not None else default_relay_row()
    now = utcnow()
    failed_over_from = None
    probing = False
    for _ in range(_MAX_HOPS):
        if row is None or row.failed_over_until is None:
            break
        backup = row.backup_relay
        if row.failed_over_until <= now or backup is None or not backup.enabled:
            probing = row.failed_over_until <= now
            break
        failed_over_from = failed_over_from or row.id
        row = backup
    chosen = _build(row, config, mail_extension, instance_path)
    return ChosenRelay(
        chosen[0], chosen[1], row.max_connections if row is not None else None,
        failed_over_from=failed_over_from, probing=probing,
        has_backup=row is not None and row.backup_relay_id is not None,
    )


def _build(row: SmtpRelay | None, config: Mapping[str, Any], mail_extension: Any, instance_path: str
           ) -> tuple[Relay, CappedRateLimiter]:
    timeout = float(config["SEND_SMTP_TIMEOUT_SECONDS"])
    redis_url = config.get("REDIS_URL") or ""
    if row is None:
        address = f"{config['MAIL_SERVER']}:{config['MAIL_PORT']}"
        relay = Relay(mail_extension, address, timeout)
        limiter = CappedRateLimiter(float(config.get("MAIL_RATE_LIMIT") or 0), address, redis_url,
                                    instance_path, relay_name=DEFAULT_RELAY_NAME)
        return relay, limiter
    relay = Relay.from_settings(relay_settings(row, config), timeout, name=row.name, relay_id=row.id)
    if row.backup_relay_id is not None:
        relay.failover_after_deferrals = int(config["RELAY_FAILOVER_DEFERRALS"])
    # Keyed by the row (its id and when it was made, since SQLite may hand a deleted row's id out again):
    # two rows for one host keep their own limits, and an edited relay its counts.
    limiter = CappedRateLimiter(
        row.rate_per_second, f"relay-{row.id}-{int(row.created_at.timestamp() * 1000)}", redis_url,
        instance_path,
        hour_cap=row.cap_per_hour, day_cap=row.cap_per_day, relay_name=row.name,
    )
    return relay, limiter


def relay_settings(row: SmtpRelay, config: Mapping[str, Any]) -> RelaySettings:
    password = SecretBox.from_config(config).open(row.password_sealed) if row.password_sealed else None
    return RelaySettings(
        server=row.host, port=row.port, use_tls=row.tls_mode == TlsMode.STARTTLS,
        use_ssl=row.tls_mode == TlsMode.SSL, username=row.username or None, password=password,
        suppress=bool(config.get("MAIL_SUPPRESS_SEND")),
    )


def mark_failed_over(relay_id: int, reason: str, recovery_seconds: float) -> None:
    """Send through the relay's backup for the next recovery_seconds. The caller commits."""
    db.session.execute(
        update(SmtpRelay).where(SmtpRelay.id == relay_id).values(
            failed_over_until=utcnow() + timedelta(seconds=recovery_seconds), failover_reason=reason[:2000]
        ),
        execution_options={"synchronize_session": False},
    )


def mark_recovered(relay_id: int) -> None:
    """The relay answered its probe: back to sending through it. The caller commits."""
    db.session.execute(
        update(SmtpRelay).where(SmtpRelay.id == relay_id, SmtpRelay.failed_over_until.is_not(None))
        .values(failed_over_until=None, failover_reason=""),
        execution_options={"synchronize_session": False},
    )


def hold_for_cap(campaign_id: int, until: datetime, reason: str) -> bool:
    """Say on the campaign's page why it waits, until when. True for the one caller that set this
    wait (it queues the continuation); False when another task already did. The caller commits."""
    result = db.session.execute(
        update(Campaign)
        .where(Campaign.id == campaign_id, Campaign.status == CampaignStatus.SENDING,
               or_(Campaign.waiting_until.is_(None), Campaign.waiting_until < until))
        .values(waiting_until=until, status_reason=reason),
        execution_options={"synchronize_session": False},
    )
    if result.rowcount:
        return True
    # Already waiting for this window: put the reason back if a pause and resume cleared it.
    db.session.execute(
        update(Campaign)
        .where(Campaign.id == campaign_id, Campaign.status == CampaignStatus.SENDING,
               Campaign.waiting_until == until, Campaign.status_reason != reason)
        .values(status_reason=reason),
        execution_options={"synchronize_session": False},
    )
    return False


def end_hold(campaign_id: int) -> None:
    """A cap's window has opened: clear the wait and its reason. The caller commits."""
    db.session.execute(
        update(Campaign)
        .where(Campaign.id == campaign_id, Campaign.waiting_until.is_not(None),
               Campaign.waiting_until <= utcnow())
        .values(waiting_until=None, status_reason=""),
        execution_options={"synchronize_session": False},
    )
