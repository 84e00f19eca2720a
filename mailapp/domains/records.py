"""The DNS records a sending domain needs: its DKIM key(s), and a suggested SPF and DMARC record. Each
is given as one string, as the 255-byte strings a DNS TXT record is made of, and as a zone-file line."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from mailapp.models import SendingDomain

# RFC 1035 §3.3: one character-string of a TXT record holds at most 255 bytes; a longer value is
# published as several strings, which readers join with nothing in between (RFC 6376 §3.6.2.2).
TXT_STRING_BYTES = 255


@dataclass(frozen=True)
class DnsRecord:
    purpose: str  # "dkim", "dkim-ed25519", "spf" or "dmarc"
    name: str  # the owner name, without the final dot
    value: str

    @property
    def strings(self) -> list[str]:
        return txt_strings(self.value)

    @property
    def zone_line(self) -> str:
        quoted = " ".join(f'"{part}"' for part in self.strings)
        return f"{self.name}. 3600 IN TXT {quoted}" if len(self.strings) == 1 else (
            f"{self.name}. 3600 IN TXT ( " + "\n    ".join(f'"{part}"' for part in self.strings) + " )"
        )

    def to_dict(self) -> dict[str, object]:
        return {"purpose": self.purpose, "type": "TXT", "name": self.name, "value": self.value,
                "strings": self.strings, "zone": self.zone_line}


def txt_strings(value: str) -> list[str]:
    """The value cut into strings of at most 255 bytes (our values are ASCII, so characters)."""
    return [value[start:start + TXT_STRING_BYTES] for start in range(0, len(value), TXT_STRING_BYTES)] or [""]


def dkim_name(selector: str, domain: str) -> str:
    return f"{selector}._domainkey.{domain}"


def dkim_value(algorithm: str, public_key: str) -> str:
    return f"v=DKIM1; k={algorithm}; p={public_key}"


def dkim_records(sending_domain: SendingDomain) -> list[DnsRecord]:
    records = [DnsRecord("dkim", dkim_name(sending_domain.selector, sending_domain.domain),
                         dkim_value("rsa", sending_domain.rsa_public_key))]
    if sending_domain.ed25519_selector and sending_domain.ed25519_public_key:
        name = dkim_name(sending_domain.ed25519_selector, sending_domain.domain)
        value = dkim_value("ed25519", sending_domain.ed25519_public_key)
        records.append(DnsRecord("dkim-ed25519", name, value))
    return records


def spf_mechanisms(configured: str, relay_host: str) -> str:
    """SPF_MECHANISMS when set; otherwise the relay host as a hint (its address, or `a:` its name).
    A loopback relay says nothing about where mail leaves from, so the hint is then the domain's MX."""
    if configured.strip():
        return " ".join(configured.split())
    try:
        address = ipaddress.ip_address(relay_host)
    except ValueError:
        return f"a:{relay_host}" if relay_host and relay_host != "localhost" else "mx"
    if address.is_loopback:
        return "mx"
    return f"ip{address.version}:{address}"


def suggested_records(
    sending_domain: SendingDomain, *, spf: str, dmarc_report_email: str
) -> list[DnsRecord]:
    """Every record to publish: DKIM first, then SPF (soft fail, ~all) and DMARC (monitoring, p=none)."""
    report_to = dmarc_report_email.strip() or f"dmarc-reports@{sending_domain.domain}"
    return [
        *dkim_records(sending_domain),
        DnsRecord("spf", sending_domain.domain, f"v=spf1 {spf} ~all"),
        DnsRecord("dmarc", f"_dmarc.{sending_domain.domain}", f"v=DMARC1; p=none; rua=mailto:{report_to}"),
    ]
