"""The DNS check of a sending domain: looks up its DKIM, SPF and DMARC TXT records with dnspython and
says, in words, what is missing or wrong. Bounded: a fixed handful of names derived from the domain
(never a name a record points to: SPF include: and redirect= are not followed), each lookup within
DNS_TIMEOUT_SECONDS, answers capped in size."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver

from mailapp.domains.records import dkim_records
from mailapp.models import SendingDomain
from mailapp.sending.dkim import public_key_matches

OK, WARNING, ERROR = "ok", "warning", "error"
# More TXT records than this at one name, or longer values, are not a configuration a person wrote.
_MAX_RECORDS = 20
_MAX_VALUE_CHARACTERS = 8192


@dataclass(frozen=True)
class Finding:
    record: str  # "dkim", "dkim-ed25519", "spf" or "dmarc"
    status: str  # ok, warning or error
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"record": self.record, "status": self.status, "message": self.message}


class LookupFailed(Exception):
    """No answer in time, or no server would answer: nothing can be said about the record."""


def parse_resolver(address: str) -> tuple[str, int]:
    """DNS_RESOLVER as (IP address, port): `127.0.0.1:5353`, `[::1]:5353`, `::1` or `192.0.2.1`."""
    text = address.strip()
    host, port = text, 53
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else 53
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port = int(port_text)
    ipaddress.ip_address(host)  # a name would need a resolver to find the resolver
    if not 0 < port < 65536:
        raise ValueError(f"port {port} out of range")
    return host, port


def make_resolver(address: str, timeout_seconds: float) -> dns.resolver.Resolver:
    """The system's resolver, or the one DNS_RESOLVER names; each lookup gives up after the timeout."""
    if address:
        resolver = dns.resolver.Resolver(configure=False)
        host, port = parse_resolver(address)
        resolver.nameservers = [host]
        resolver.port = port
    else:
        resolver = dns.resolver.Resolver()
    resolver.timeout = resolver.lifetime = timeout_seconds
    return resolver


def txt_values(resolver: dns.resolver.Resolver, name: str) -> list[str]:
    """Each TXT record at the name, its strings joined; [] when there is none. LookupFailed when the
    resolver gives no answer."""
    try:
        answer = resolver.resolve(
            dns.name.from_text(name), dns.rdatatype.TXT, raise_on_no_answer=False, search=False
        )
    except dns.resolver.NXDOMAIN:
        return []
    except dns.exception.Timeout as error:
        raise LookupFailed("no answer in time") from error
    except dns.resolver.NoNameservers as error:
        raise LookupFailed("no DNS server would answer (SERVFAIL or refused)") from error
    except dns.exception.DNSException as error:
        raise LookupFailed(str(error) or type(error).__name__) from error
    if answer.rrset is None:
        return []
    values = []
    for rdata in list(answer.rrset)[:_MAX_RECORDS]:
        value = b"".join(rdata.strings).decode("utf-8", "replace")
        values.append(value[:_MAX_VALUE_CHARACTERS])
    return values


class _Lookups:
    """The check's lookups: once the resolver has failed to answer, the rest fail at once with the
    same reason, so a check costs at most one DNS_TIMEOUT_SECONDS when the resolver is unreachable."""

    def __init__(self, resolver: dns.resolver.Resolver) -> None:
        self.resolver = resolver
        self.failure: LookupFailed | None = None

    def values(self, name: str) -> list[str]:
        if self.failure is not None:
            raise self.failure
        try:
            return txt_values(self.resolver, name)
        except LookupFailed as failure:
            self.failure = failure
            raise


def check_records(resolver: dns.resolver.Resolver, sending_domain: SendingDomain) -> list[Finding]:
    lookups = _Lookups(resolver)
    findings = []
    for record in dkim_records(sending_domain):
        public_key = (sending_domain.rsa_public_key if record.purpose == "dkim"
                      else sending_domain.ed25519_public_key or "")
        findings.append(_checked(record.purpose, record.name, lookups,
                                 lambda values, r=record, p=public_key: _dkim(r.purpose, r.name, values, p)))
    domain = sending_domain.domain
    findings.append(_checked("spf", domain, lookups, lambda values: _spf(domain, values)))
    findings.append(_dmarc(lookups, domain))
    return findings


def _checked(purpose: str, name: str, lookups: _Lookups, judge) -> Finding:
    try:
        values = lookups.values(name)
    except LookupFailed as failure:
        return Finding(purpose, ERROR, f"Could not look up {name}: {failure}.")
    return judge(values)


def tags(value: str) -> dict[str, str]:
    """A DKIM or DMARC tag list (`v=DKIM1; k=rsa; p=...`) as a dict; names lower-cased, white space
    around each tag dropped."""
    parsed: dict[str, str] = {}
    for part in value.split(";"):
        name, equals, tag_value = part.partition("=")
        if equals:
            parsed.setdefault(name.strip().lower(), tag_value.strip())
    return parsed


def _dkim(purpose: str, name: str, values: list[str], public_key: str) -> Finding:
    algorithm = "ed25519" if purpose == "dkim-ed25519" else "rsa"
    keys = [value for value in values if "p=" in value]
    if not keys:
        return Finding(purpose, ERROR, f"No DKIM record at {name}: publish the TXT record shown for it.")
    if len(keys) > 1:
        return Finding(purpose, ERROR,
                       f"{len(keys)} DKIM records at {name}: receivers may pick any: publish only ours.")
    found = tags(keys[0])
    if found.get("v", "DKIM1") != "DKIM1":
        return Finding(purpose, ERROR, f"The record at {name} says v={found['v']}; it must be v=DKIM1.")
    if found.get("k", "rsa").lower() != algorithm:
        return Finding(purpose, ERROR, f"The record at {name} says k={found.get('k', 'rsa')}; this key is "
                                       f"k={algorithm}.")
    if not found.get("p"):
        return Finding(purpose, ERROR, f"The record at {name} has an empty p=: the key is revoked.")
    if not public_key_matches(found["p"], public_key):
        return Finding(purpose, ERROR, f"The key (p=) at {name} is not this domain's key in mailapp (an old "
                                       "key, or a copy cut short?): replace the record with the one shown.")
    return Finding(purpose, OK, f"The DKIM record at {name} publishes this domain's {algorithm} key.")


def _spf(domain: str, values: list[str]) -> Finding:
    records = [value for value in values if value.lower().split(" ", 1)[0] == "v=spf1"]
    if not records:
        return Finding("spf", ERROR, f"No SPF record at {domain}: Gmail and Yahoo want both SPF and DKIM "
                                     "from bulk senders. Publish the suggested one.")
    if len(records) > 1:
        return Finding("spf", ERROR, f"{len(records)} SPF records at {domain}: receivers treat that as a "
                                     "permanent error (RFC 7208 §4.5), and SPF fails. Merge them.")
    terms = records[0].lower().split()[1:]
    if "+all" in terms or "all" in terms:
        return Finding("spf", ERROR, "The SPF record ends with +all, which lets anyone on the internet send "
                                     f"as {domain}. Use ~all.")
    if "-all" in terms:
        return Finding("spf", WARNING, "The SPF record ends with -all: a receiver may reject forwarded mail "
                                       "on SPF alone, before DKIM is checked. ~all with DMARC is usual.")
    if "?all" in terms:
        return Finding("spf", WARNING, "The SPF record ends with ?all (neutral): it protects nothing.")
    if "~all" not in terms and not any(term.startswith("redirect=") for term in terms):
        return Finding("spf", WARNING, "The SPF record has no all mechanism at its end: add ~all.")
    return Finding("spf", OK, f"SPF record at {domain}: {records[0]}")


def _dmarc(lookups: _Lookups, domain: str) -> Finding:
    names = [f"_dmarc.{domain}"]
    labels = domain.split(".")
    if len(labels) > 2:
        # A subdomain with no record of its own is covered by its organisational domain's (RFC 7489
        # §6.6.3); the last two labels are a guess at it, and the only other name looked at.
        names.append(f"_dmarc.{'.'.join(labels[-2:])}")
    for name in names:
        try:
            values = lookups.values(name)
        except LookupFailed as failure:
            return Finding("dmarc", ERROR, f"Could not look up {name}: {failure}.")
        records = [value for value in values if value.replace(" ", "").upper().startswith("V=DMARC1")]
        if records:
            return _judge_dmarc(name, records)
    return Finding("dmarc", ERROR, f"No DMARC record at {names[0]}: Gmail and Yahoo require one from bulk "
                                   "senders. Publish the suggested one (p=none to start).")


def _judge_dmarc(name: str, records: list[str]) -> Finding:
    if len(records) > 1:
        return Finding("dmarc", ERROR, f"{len(records)} DMARC records at {name}: receivers then ignore "
                                       "DMARC (RFC 7489 §6.6.3). Keep one.")
    found = tags(records[0])
    policy = found.get("p", "").lower()
    if policy not in {"none", "quarantine", "reject"}:
        return Finding("dmarc", ERROR,
                       f"The DMARC record at {name} has no valid p= (none, quarantine or reject).")
    advice = "" if "rua" in found else " It has no rua= address, so no one receives the aggregate reports."
    if policy == "none":
        return Finding("dmarc", WARNING, f"The DMARC record at {name} has p=none: it only monitors. Once "
                                         "the reports show your mail passing, move to p=quarantine, then "
                                         "p=reject." + advice)
    return Finding("dmarc", WARNING if advice else OK, f"DMARC record at {name}: p={policy}." + advice)
