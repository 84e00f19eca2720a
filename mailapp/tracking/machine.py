"""Which opens and clicks a machine made, not a reader: mail privacy proxies, security scanners and
prefetchers; and which mail provider's image proxy an open came through. The lists live here, in one
place, with why each entry is on it.

An open or click is a machine's when any of these holds:
- the user agent is on the lists below (for opens: a proxy that prefetches on delivery, or a scanner);
- it came within EARLY_SECONDS of the delivery's sent_at: no person opens (let alone clicks) a message
  that fast, but gateways that scan mail on arrival do. 3 s by default, set with the config key
  TRACKING_EARLY_SECONDS.

A mail provider's image proxy that fetches the image when the reader opens the message (Gmail, Yahoo
and AOL) hides the reader's client, but the fetch is still the reader's open: it counts as a human open,
and the open event records the proxy (open_events.via_proxy), so the report can show how many opens came
that way. A proxy that fetches on delivery whether or not anyone reads (Apple Mail Privacy Protection)
is a machine. A click never comes through an image proxy: a click with a proxy's user agent is a machine's.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime

DEFAULT_EARLY_SECONDS = 3.0

# Apple Mail Privacy Protection fetches every remote image of every message on delivery, through
# Apple's proxies, with exactly this user agent and nothing more.
APPLE_MPP_USER_AGENT = "Mozilla/5.0"


@dataclass(frozen=True)
class MailProxy:
    """A mail provider's image proxy: `key` is what open_events.via_proxy stores."""

    key: str
    label: str
    user_agent_markers: tuple[str, ...]  # lowercase substrings of its user agent
    fetches_on_open: bool  # True: a fetch is a reader opening the message; False: it prefetches


MAIL_PROXIES: tuple[MailProxy, ...] = (
    # Gmail (web and apps) has loaded every remote image through Google's proxy since December 2013,
    # when the reader opens the message (Google's announcement "Images now showing" on the Gmail blog;
    # the proxy caches the image, so a second open by the same reader may not fetch again). Its user
    # agent hides the reader's client: "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via
    # ggpht.com GoogleImageProxy)", from Google's own addresses. Counted as human: counted as a
    # machine, no Gmail reader ever counted as an open.
    MailProxy("gmail", "Gmail (GoogleImageProxy)", ("googleimageproxy", "ggpht.com"), fetches_on_open=True),
    # Yahoo Mail and AOL Mail (one platform) load images through Yahoo's proxy when the message is
    # shown; its user agent names Yahoo's page about the proxy:
    # "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html".
    MailProxy("yahoo", "Yahoo / AOL (YahooMailProxy)", ("yahoomailproxy",), fetches_on_open=True),
    # Outlook.com / Microsoft's image proxy also fetches when the message is opened, which makes it a
    # human open too. But Microsoft documents neither a user agent nor addresses for it (its published
    # Exchange Online ranges are for mail flow), and no marker is guessed here: its opens are judged
    # by their user agent like any client's, and are not shown as proxy opens. Microsoft's link
    # scanners (Safe Links, BingPreview) are machines, below.
    # Apple Mail Privacy Protection (iOS 15 / macOS 12 and later, on by default for most users)
    # fetches every remote image of every message when it is delivered to the device, read or not,
    # through Apple's relays, with exactly the user agent "Mozilla/5.0" (Apple's Mail Privacy
    # Protection page: remote content is loaded privately in the background, even when the message
    # is not opened). A machine open.
    MailProxy("apple_mpp", "Apple Mail Privacy Protection", (), fetches_on_open=False),
)
_APPLE_MPP = MAIL_PROXIES[-1]
VIA_PROXY_KEYS = tuple(proxy.key for proxy in MAIL_PROXIES)


def mail_proxy(user_agent: str | None) -> MailProxy | None:
    """The mail provider's image proxy this user agent is, if any."""
    agent = (user_agent or "").strip()
    if agent == APPLE_MPP_USER_AGENT:
        return _APPLE_MPP
    lowered = agent.lower()
    for proxy in MAIL_PROXIES:
        if any(marker in lowered for marker in proxy.user_agent_markers):
            return proxy
    return None


@dataclass(frozen=True)
class OpenClass:
    """How an open is counted, from its user agent alone (opens.py adds the early rule)."""

    is_machine: bool
    via_proxy: str | None


def classify_open(user_agent: str | None) -> OpenClass:
    proxy = mail_proxy(user_agent)
    if proxy is not None:
        return OpenClass(is_machine=not proxy.fetches_on_open, via_proxy=proxy.key)
    return OpenClass(is_machine=_is_scanner_or_empty(user_agent), via_proxy=None)


# Substrings (matched case-insensitively) of user agents that fetch images or follow links on behalf of
# a mailbox rather than a person reading it.
MACHINE_USER_AGENT_MARKERS: tuple[str, ...] = (
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


def _is_scanner_or_empty(user_agent: str | None) -> bool:
    agent = (user_agent or "").strip()
    if not agent:
        return True
    lowered = agent.lower()
    return any(marker in lowered for marker in MACHINE_USER_AGENT_MARKERS)


def is_machine_user_agent(user_agent: str | None) -> bool:
    """For clicks: True for an empty UA, the known scanners and libraries, and every image proxy (a
    proxy fetches images; it never follows a link for the reader)."""
    return mail_proxy(user_agent) is not None or _is_scanner_or_empty(user_agent)


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
