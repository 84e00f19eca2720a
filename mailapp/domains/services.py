"""Sending domains: add one (with fresh keys), delete one, the records to publish, and the DNS check
that says what is missing or wrong. Services flush; the caller commits."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from mailapp.audit import services as audit
from mailapp.domains import dns_check
from mailapp.domains.records import DnsRecord, spf_mechanisms, suggested_records
from mailapp.errors import ConflictError, NotFoundError, ValidationError
from mailapp.extensions import db
from mailapp.models import SendingDomain, utcnow
from mailapp.models.base import iso_or_none
from mailapp.models.sending_domain import DOMAIN_MAX_LENGTH, SELECTOR_MAX_LENGTH
from mailapp.secret_box import SecretBox
from mailapp.sending.dkim import generate_ed25519_key, generate_rsa_key

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


@dataclass(frozen=True)
class DomainSettings:
    resolver: str  # DNS_RESOLVER: host[:port], or empty for the system's resolver
    timeout_seconds: float  # DNS_TIMEOUT_SECONDS: for each lookup, all tries included
    spf_mechanisms: str  # SPF_MECHANISMS, or the relay host as a hint
    dmarc_report_email: str  # DMARC_REPORT_EMAIL

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> DomainSettings:
        return cls(
            resolver=config.get("DNS_RESOLVER") or "",
            timeout_seconds=float(config["DNS_TIMEOUT_SECONDS"]),
            spf_mechanisms=spf_mechanisms(config.get("SPF_MECHANISMS") or "", config.get("MAIL_SERVER", "")),
            dmarc_report_email=config.get("DMARC_REPORT_EMAIL") or "",
        )

    @classmethod
    def for_current_app(cls) -> DomainSettings:
        return cls.from_config(current_app.config)


def normalize_domain(text: Any) -> str:
    """The domain as stored and signed: lower case, IDNA (xn--) form, no final dot. ValidationError on
    the `domain` field, saying what is wrong, for anything that is not a host name of two labels or more."""
    if not isinstance(text, str) or not text.strip():
        raise ValidationError("Give the domain your mail is sent from, like example.com.",
                              [{"field": "domain"}])
    domain = text.strip().rstrip(".").lower()
    if "@" in domain:
        domain = domain.rpartition("@")[2]  # an address pasted whole: its domain is what is meant
    if len(domain) > 4 * DOMAIN_MAX_LENGTH:
        raise ValidationError("That domain is far too long.", [{"field": "domain"}])
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError as error:
        raise ValidationError(f"{text.strip()!r} is not a valid domain name.",
                              [{"field": "domain"}]) from error
    labels = domain.split(".")
    if len(domain) > DOMAIN_MAX_LENGTH or len(labels) < 2 or not all(map(_LABEL.fullmatch, labels)):
        raise ValidationError(
            f"{text.strip()!r} is not a domain name: use letters, digits and hyphens in dot-separated parts, "
            "like news.example.com.", [{"field": "domain"}],
        )
    if labels[-1].isdigit():
        raise ValidationError("Give a domain name, not an IP address.", [{"field": "domain"}])
    return domain


def normalize_selector(text: Any) -> str:
    selector = text.strip().lower() if isinstance(text, str) else None
    if not selector or len(selector) > SELECTOR_MAX_LENGTH - 1 or not _LABEL.fullmatch(selector):
        # One character short of a label: the Ed25519 selector adds an "e".
        raise ValidationError(
            f"The selector must be 1 to {SELECTOR_MAX_LENGTH - 1} letters, digits or hyphens (not at either "
            "end), like mailapp202612.", [{"field": "selector"}],
        )
    return selector


def default_selector() -> str:
    """mailapp<yyyymm>: a new key later gets a new month, so old and new records can coexist."""
    return f"mailapp{utcnow():%Y%m}"


def create_domain(domain: Any, *, selector: Any = None, ed25519: bool = False,
                  box: SecretBox | None = None) -> SendingDomain:
    """A new sending domain with a fresh RSA-2048 key (and an Ed25519 one, selector + "e", when asked),
    private keys sealed. ConflictError when the domain is already there."""
    name = normalize_domain(domain)
    chosen = normalize_selector(selector) if selector not in (None, "") else default_selector()
    longest = f"{chosen}e._domainkey.{name}"
    if len(longest) > DOMAIN_MAX_LENGTH:
        raise ValidationError(
            f"{name} is too long for its DKIM record's name ({longest}) to fit in DNS (253 characters).",
            [{"field": "domain"}],
        )
    if find_domain(name) is not None:
        raise ConflictError(f"{name} is already a sending domain.", [{"field": "domain"}])
    box = box or SecretBox.for_current_app()
    rsa_private, rsa_public = generate_rsa_key()
    sending_domain = SendingDomain(
        domain=name, selector=chosen, rsa_private_key_sealed=box.seal(rsa_private), rsa_public_key=rsa_public,
    )
    if ed25519:
        ed_private, ed_public = generate_ed25519_key()
        sending_domain.ed25519_selector = f"{chosen}e"
        sending_domain.ed25519_private_key_sealed = box.seal(ed_private)
        sending_domain.ed25519_public_key = ed_public
    try:
        with db.session.begin_nested():  # another request may have added it since the look above
            db.session.add(sending_domain)
    except IntegrityError as error:
        raise ConflictError(f"{name} is already a sending domain.", [{"field": "domain"}]) from error
    audit.record("domain.create", sending_domain, f"Added the sending domain {name} (new DKIM keys).")
    return sending_domain


def get_domain(domain_id: int) -> SendingDomain:
    sending_domain = db.session.get(SendingDomain, domain_id)
    if sending_domain is None:
        raise NotFoundError(f"There is no sending domain with id {domain_id}.")
    return sending_domain


def find_domain(domain: str) -> SendingDomain | None:
    return db.session.scalar(select(SendingDomain).where(SendingDomain.domain == normalize_domain(domain)))


def delete_domain(sending_domain: SendingDomain) -> None:
    """Mail from the domain is sent unsigned from the next send run on."""
    audit.record(
        "domain.delete", sending_domain, f"Deleted the sending domain {sending_domain.domain} and its keys."
    )
    db.session.delete(sending_domain)
    db.session.flush()


def records_for(sending_domain: SendingDomain, settings: DomainSettings | None = None) -> list[DnsRecord]:
    settings = settings or DomainSettings.for_current_app()
    return suggested_records(
        sending_domain, spf=settings.spf_mechanisms, dmarc_report_email=settings.dmarc_report_email
    )


def check_domain(
    sending_domain: SendingDomain, settings: DomainSettings | None = None
) -> list[dns_check.Finding]:
    """Look the domain's records up and store what was found (the caller commits)."""
    settings = settings or DomainSettings.for_current_app()
    resolver = dns_check.make_resolver(settings.resolver, settings.timeout_seconds)
    findings = dns_check.check_records(resolver, sending_domain)
    sending_domain.checked_at = utcnow()
    sending_domain.check_passed = not any(finding.status == dns_check.ERROR for finding in findings)
    sending_domain.check_findings = [finding.to_dict() for finding in findings]
    db.session.flush()
    return findings


def serialize_domain(sending_domain: SendingDomain, settings: DomainSettings | None = None) -> dict[str, Any]:
    """The API's view: the public keys and records, never a private key (only that it is stored)."""
    return {
        "id": sending_domain.id,
        "domain": sending_domain.domain,
        "domain_unicode": unicode_domain(sending_domain.domain),
        "selector": sending_domain.selector,
        "ed25519_selector": sending_domain.ed25519_selector,
        "private_keys": ["rsa-sha256", *(["ed25519-sha256"] if sending_domain.has_ed25519 else [])],
        "records": [record.to_dict() for record in records_for(sending_domain, settings)],
        "created_at": iso_or_none(sending_domain.created_at),
        "last_check": None if sending_domain.checked_at is None else {
            "checked_at": iso_or_none(sending_domain.checked_at),
            "passed": bool(sending_domain.check_passed),
            "findings": sending_domain.check_findings or [],
        },
    }


def unicode_domain(domain: str) -> str:
    try:
        return domain.encode("ascii").decode("idna")
    except UnicodeError:
        return domain
