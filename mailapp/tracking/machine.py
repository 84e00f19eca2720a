"""Which opens and clicks a machine made, not a reader: mail privacy proxies, security scanners and
prefetchers. The lists live here, in one place, with why each entry is on it.

An open or click is a machine's when any of these holds:
- the user agent is on the lists below;
- it came within EARLY_SECONDS of the delivery's sent_at: no person opens (let alone clicks) a message
  that fast, but gateways that scan mail on arrival do. 3 s by default, set with the config key
  TRACKING_EARLY_SECONDS.
"""

from __future__ import annotations

import ipaddress
from datetime import datetime

DEFAULT_EARLY_SECONDS = 3.0

# Apple Mail Privacy Protection fetches every remote image of every message on delivery, through
# Apple's proxies, with exactly this user agent and nothing more.
APPLE_MPP_USER_AGENT = "Mozilla/5.0"

# Substrings (matched case-insensitively) of user agents that fetch images or follow links on behalf of
# a mailbox rather than a person reading it.
MACHINE_USER_AGENT_MARKERS: tuple[str, ...] = (
    # Gmail's image proxy caches images when a message is opened, or prefetches them; it hides the
    # reader's client: "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com
    # GoogleImageProxy)".
    "googleimageproxy",
    "ggpht.com",
    # Yahoo Mail's and AOL's image proxy.
    "yahoomailproxy",
    # Microsoft Defender for Office 365 Safe Links and Outlook.com's link preview / scanner.
    "safelinks",
    "bingpreview",
    "microsoft office existence discovery",
    "ms-office-protocol-discovery",
    # Security gateways that detonate links and images before delivery.
    "barracuda",
    "mimecast",
    "proofpoint",
    "ppops-",  # Proofpoint's URL Defense fetchers
    "symantec",
    "messagelabs",
    "forcepoint",
    "trendmicro",
    "trend micro",
    "sophos",
    "fortiguard",
    "ironport",
    "cisco",
    "zscaler",
    "paloalto",
    "checkpoint",
    # Link unfurlers and crawlers that are not a reader.
    "bot",
    "spider",
    "crawler",
    "facebookexternalhit",
    "slack",
    "whatsapp",
    "headlesschrome",
    "phantomjs",
    # HTTP libraries: scripts, not mail clients.
    "curl/",
    "wget/",
    "python-requests",
    "python-urllib",
    "aiohttp",
    "go-http-client",
    "java/",
    "okhttp",
    "libwww-perl",
)


def is_machine_user_agent(user_agent: str | None) -> bool:
    """True for Apple MPP's bare UA, an empty UA, and the known proxies, scanners and libraries."""
    agent = (user_agent or "").strip()
    if not agent or agent == APPLE_MPP_USER_AGENT:
        return True
    lowered = agent.lower()
    return any(marker in lowered for marker in MACHINE_USER_AGENT_MARKERS)


def is_early(at: datetime, sent_at: datetime | None, early_seconds: float = DEFAULT_EARLY_SECONDS) -> bool:
    """A fetch within early_seconds of sending: a gateway scanning the message on arrival."""
    if sent_at is None:
        return False
    return (at - sent_at).total_seconds() < early_seconds


def truncate_ip(address: str | None) -> str:
    """IPv4 to its /24, IPv6 to its /48: enough for a country, never a household. "" if unparseable."""
    if not address:
        return ""
    # Most readers arrive over IPv4: a plain string split is many times cheaper than ipaddress.
    octets = address.split(".")
    if len(octets) == 4 and all(part.isascii() and part.isdigit() and int(part) <= 255 for part in octets):
        return f"{int(octets[0])}.{int(octets[1])}.{int(octets[2])}.0"
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return ""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False).network_address)
