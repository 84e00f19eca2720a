"""Click tracking: literal http(s) hrefs in the layout become `{{ mailapp_links[N] }}`, where N is the
link's position among the campaign's distinct tracked URLs (the Link rows). Hrefs that contain template
expressions are left untracked: their URL differs per recipient, and a click token may only ever
point at a URL stored for the campaign. mailto:, #anchors, the unsubscribe and view-in-browser links
are template expressions or not http(s), so they are never rewritten."""

from __future__ import annotations

import html as html_lib
import re

from mailapp.sending import templating

_ANCHOR_TAG = re.compile(r"<a\b[^>]*>", re.IGNORECASE)
_HREF = re.compile(r'(\shref\s*=\s*)("([^"]*)"|\'([^\']*)\')', re.IGNORECASE)
_TRACKABLE = re.compile(r"https?://", re.IGNORECASE)


def tracked_links(inlined_layout: str) -> list[str]:
    """The distinct literal http(s) URLs of the layout's links, in order: position N is the Nth."""
    urls: list[str] = []
    for tag in _ANCHOR_TAG.finditer(inlined_layout):
        href = _HREF.search(tag.group(0))
        if href is None:
            continue
        url = html_lib.unescape(href.group(3) if href.group(3) is not None else href.group(4))
        if _TRACKABLE.match(url) and "{{" not in url and "{%" not in url and url not in urls:
            urls.append(url)
    return urls


def _rewrite_links(inlined_layout: str, urls: list[str]) -> str:
    positions = {url: position for position, url in enumerate(urls)}

    def rewrite_tag(tag: re.Match[str]) -> str:
        def rewrite_href(href: re.Match[str]) -> str:
            url = html_lib.unescape(href.group(3) if href.group(3) is not None else href.group(4))
            if url not in positions:
                return href.group(0)
            return f'{href.group(1)}"{{{{ mailapp_links[{positions[url]}] }}}}"'

        return _HREF.sub(rewrite_href, tag.group(0), count=1)

    return _ANCHOR_TAG.sub(rewrite_tag, inlined_layout)


def prepare_layout(layout_html: str, *, track_clicks: bool) -> tuple[str, list[str]]:
    """(template source with CSS inlined and tracked hrefs rewritten, tracked URLs by position)."""
    inlined = templating.inline_css(layout_html)
    if not track_clicks:
        return inlined, []
    urls = tracked_links(inlined)
    return _rewrite_links(inlined, urls), urls
