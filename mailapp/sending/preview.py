"""A campaign's message as one recipient will receive it, for the campaign page and the API: built by
compose.build_message (the send's own code path), then read back from the MIME bytes the way a mail
client would: the decoded subject, From, HTML and text bodies, and the preheader an inbox shows.

preview_message runs in a web render child (mailapp/layouts/isolation.py), which has no Flask app: it
sets up the two settings the tracking tokens read (SECRET_KEY, PUBLIC_URL) in a bare app context."""

from __future__ import annotations

import email
import email.policy
import re
from dataclasses import dataclass
from html.parser import HTMLParser

from flask import Flask

from mailapp.sending.compose import build_message, compile_source
from mailapp.sending.render import CampaignSource, Recipient

# What inbox previews show of a message's first text, more or less (Gmail ~100-140 characters).
PREHEADER_LENGTH = 140
# Previews, like test sends, stand for no delivery: their tracking tokens name delivery 0, which no
# row has, so a click or open in a preview counts for nobody.
PREVIEW_DELIVERY_ID = 0


@dataclass(frozen=True)
class MessagePreview:
    subject: str
    from_header: str
    preheader: str
    html: str
    text: str


class _VisibleText(HTMLParser):
    """The text a reader sees, in order: nothing from <head>, <style>, <script> or <title>."""

    _HIDDEN = frozenset({"head", "style", "script", "title", "template"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden_depth = 0

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag in self._HIDDEN:
            self._hidden_depth += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in self._HIDDEN and self._hidden_depth:
            self._hidden_depth -= 1

    def handle_data(self, data: str) -> None:
        if not self._hidden_depth:
            self.parts.append(data)


def preheader_of(html: str, length: int = PREHEADER_LENGTH) -> str:
    """The first visible text of the body, whitespace collapsed, cut at a word near `length`."""
    parser = _VisibleText()
    parser.feed(html)
    parser.close()
    text = re.sub(r"\s+", " ", " ".join(parser.parts)).strip()
    if len(text) <= length:
        return text
    cut = text[:length].rsplit(" ", 1)[0] or text[:length]
    return cut + "…"


def read_message(raw: bytes) -> MessagePreview:
    """What a mail client shows of a built message."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    html_part = message.get_body(preferencelist=("html",))
    text_part = message.get_body(preferencelist=("plain",))
    html = html_part.get_content() if html_part is not None else ""
    return MessagePreview(
        subject=str(message["Subject"] or ""),
        from_header=str(message["From"] or ""),
        preheader=preheader_of(html),
        html=html,
        text=text_part.get_content() if text_part is not None else "",
    )


def preview_message(
    source: CampaignSource, recipient: Recipient, public_url: str, secret_key: str
) -> MessagePreview:
    app = Flask("mailapp.sending.preview")
    app.config.update(SECRET_KEY=secret_key, PUBLIC_URL=public_url)
    with app.app_context():
        _, raw = build_message(compile_source(source, public_url), recipient)
    return read_message(raw)
