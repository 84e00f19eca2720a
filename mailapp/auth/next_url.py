"""Where to go after signing in: the `next` parameter, kept only when it is a path on this site."""

from __future__ import annotations

from urllib.parse import urlsplit

# Browsers drop these anywhere in a URL (WHATWG URL standard, "remove all ASCII tab or newline"), so
# "/\t/evil.example" is "//evil.example" to them: a link to another site.
_BROWSER_IGNORED = str.maketrans("", "", "\t\r\n")


def safe_next_path(target: str | None) -> str | None:
    """`target` as the browser will read it, if that is a path on this site; None for anything else
    (another host, a scheme such as javascript:, control characters), which sends the user to the
    dashboard instead."""
    if not target:
        return None
    # Browsers also read a backslash as a slash in http(s) URLs: "/\evil.example" is "//evil.example".
    cleaned = target.translate(_BROWSER_IGNORED).replace("\\", "/")
    # Other control characters and surrounding spaces (which browsers strip) have no place in a path
    # we wrote; refusing them also keeps them out of the Location header.
    if cleaned != cleaned.strip() or any(ord(char) < 0x20 or ord(char) == 0x7F for char in cleaned):
        return None
    try:
        parts = urlsplit(cleaned)
    except ValueError:  # a malformed [IPv6] host
        return None
    if parts.scheme or parts.netloc:
        return None
    if not parts.path.startswith("/") or parts.path.startswith("//"):
        return None
    return cleaned
