"""Rendering a campaign for its recipients: the layout and subject are compiled once per campaign (CSS
inlined, click tracking wired in) and each recipient only fills in their values.

The fast path. Most layouts only *print* per-recipient values (`{{ subscriber.name }}`, the
unsubscribe link, tracked links); their output is then the same for everyone except at those spots.
For such a layout we render it once with a unique sentinel in each spot (a "skeleton"), convert that
skeleton to text with html2text once, and per recipient join the skeleton's pieces with the recipient's
escaped values: no Jinja and no html2text per message. html2text treats a sentinel exactly as it
treats a value that starts with a letter and holds no whitespace runs, backslashes, HTML specials,
brackets or colons (`_TEXT_SAFE`); any other value makes that one message take the slow path (Jinja
plus html2text), and so does a layout that branches or filters on per-recipient values. Tests prove
both paths give the same HTML and text for generated inputs."""

from __future__ import annotations

import html as html_lib
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import html2text
from jinja2 import Undefined, nodes
from markupsafe import Markup, escape

from mailapp.sending import templating, tokens
from mailapp.sending.limits import RenderLimitExceeded
from mailapp.sending.links import prepare_layout
from mailapp.sending.message import PrecodedBody

DEFAULT_LAYOUT = (
    "<html><body>{{ message }}"
    '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p></body></html>'
)

# The last `</body>` (the greedy prefix backtracks from the end). Tag names are ASCII
# case-insensitive; re.ASCII keeps Unicode case folding out of it.
_LAST_BODY_END = re.compile(r".*(</body\s*>)", re.DOTALL | re.IGNORECASE | re.ASCII)
_SENTINEL = re.compile("\ue000(.)\ue000", re.DOTALL)
_SENTINEL_CHARS = re.compile("[\ue000-\uf8ff]")
_FIRST_SENTINEL = 0xE001
# A value html2text handles exactly like a sentinel (see the module docstring).
_TEXT_SAFE = re.compile(r"[^\W\d_](?:[^\s\\&<>\"'\[\]():\ue000-\uf8ff]| (?! ))*")
_PER_RECIPIENT_ROOTS = frozenset(
    {"subscriber", "campaign", "unsubscribe_url", "view_in_browser_url", "preferences_url", "mailapp_links"}
)
_LEAF_PATHS = frozenset(
    {
        ("subscriber", "id"), ("subscriber", "email"), ("subscriber", "name"),
        ("campaign", "id"), ("campaign", "name"), ("campaign", "subject"),
        ("unsubscribe_url",), ("view_in_browser_url",), ("preferences_url",),
    }
)
# Where a path's value is a tracking URL, the sentinel stands for the token only, so html2text sees
# the same absolute URL shape in the skeleton as in the real message.
# The preference center's link carries the unsubscribe token: it grants what that token grants (leave
# everything) plus the public lists and the name, and like it never reaches image proxies.
_TOKEN_PATHS = {
    ("unsubscribe_url",): ("unsubscribe", "/u/"), ("view_in_browser_url",): ("view", "/v/"),
    ("preferences_url",): ("preferences", "/p/"),
}


_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
_CODE = frozenset({"code", "tt", "kbd"})


def _plain_tags(converter: html2text.HTML2Text, tag: str, attrs: Mapping[str, Any], start: bool) -> bool:
    """html2text's tag hook: headings are paragraphs without "#" marks, code is text without
    backquotes, and each table cell ends its line (the cells of a layout table are blocks). True means
    html2text does nothing more with the tag."""
    if tag in _HEADINGS:
        converter.p()
        return True
    if tag in _CODE:
        return True
    if tag == "hr":
        converter.p()
        converter.o("----")
        converter.p()
        return True
    if tag in ("td", "th") and not start:
        converter.soft_br()
        return True
    return False


# What html2text still writes as Markdown, undone: an inline link `[text](url "title")` (brackets and
# parentheses in the URL escaped with backslashes), an automatic link `<url>`, the two spaces of a
# hard line break, and runs of blank lines that empty layout cells leave. Per-recipient values never
# hold brackets, parentheses, backslashes, colons, line breaks or trailing spaces, and start with a
# letter (_TEXT_SAFE), so these patterns treat a value exactly as they treat the sentinel standing in
# for it in the skeleton.
_MARKDOWN_LINK = re.compile(r'\[([^\[\]]*)\]\(((?:[^()\s\\]|\\.)*)(?: "(?:[^"\\]|\\.)*")?\)')
_AUTOMATIC_LINK = re.compile(r"<((?:https?|mailto):[^<>\s]+)>")
_MARKDOWN_ESCAPE = re.compile(r"\\(.)")
_TRAILING_SPACE = re.compile(r"[ \t]+$", re.MULTILINE)
_STRAY_LEADING_SPACE = re.compile(r"^ (?=\S)", re.MULTILINE)  # left by an image or tag before text
_BLANK_LINES = re.compile(r"\n{3,}")
_LIST_INDENT = re.compile(r"^  (?=(?:  |   )*(?:- |\d+\. ))", re.MULTILINE)


def _link_as_text(found: re.Match[str], labelled: set[str]) -> str:
    """`text (url)`; the URL alone when there is no text (an image link) or the text is the URL; and
    nothing for an image link whose URL a labelled link shows too (a picture above its "Read more")."""
    text = found.group(1).strip()
    url = _MARKDOWN_ESCAPE.sub(r"\1", found.group(2))
    shown = url.removeprefix("mailto:")
    if not text:
        return "" if found.group(2) in labelled else shown
    if text in (url, shown):
        return shown
    return f"{found.group(1)} ({shown})"


def html_to_text(html: str) -> str:
    """The text part, for people who read mail as plain text: paragraphs and line breaks kept, lists
    as "- item" and "1. item", links as "text (URL)"; no images, no table pipes, no Markdown emphasis,
    heading or code marks. No hard wrapping: quoted-printable keeps the lines on the wire within 76
    characters, and the reader's mail app wraps them to its window. Not wrapping is also what lets
    the skeleton's text be filled in per recipient."""
    converter = html2text.HTML2Text()
    converter.body_width = 0
    converter.unicode_snob = True
    converter.ignore_images = True
    converter.ignore_tables = True
    converter.ignore_emphasis = True
    converter.skip_internal_links = True  # "#top" means nothing in plain text
    converter.ul_item_mark = "-"
    converter.tag_callback = _plain_tags
    # html2text escapes Markdown in text (a backslash before a line-start "1." or "-", and before
    # other backslashes); plain text wants none of it, and this flag (inside <code>, where html2text
    # sets it) turns the escaping off.
    converter.code = True
    text = converter.handle(html)
    labelled = {url for label, url in _MARKDOWN_LINK.findall(text) if label.strip()}
    text = _MARKDOWN_LINK.sub(lambda found: _link_as_text(found, labelled), text)
    text = _AUTOMATIC_LINK.sub(lambda found: found.group(1).removeprefix("mailto:"), text)
    text = _LIST_INDENT.sub("", _STRAY_LEADING_SPACE.sub("", _TRAILING_SPACE.sub("", text)))
    return _BLANK_LINES.sub("\n\n", text).strip("\n") + "\n"


@dataclass(frozen=True)
class CampaignSource:
    """The campaign's fields the renderer needs, detached from the ORM session."""

    id: int
    name: str
    subject: str
    from_name: str
    from_email: str
    reply_to: str
    layout_html: str
    message: str
    track_opens: bool
    track_clicks: bool
    updated_at: datetime | None = None
    layout_updated_at: datetime | None = None

    @property
    def cache_key(self) -> tuple[Any, ...]:
        return (self.id, self.updated_at, self.layout_updated_at, self.track_opens, self.track_clicks)


@dataclass(frozen=True)
class Recipient:
    delivery_id: int
    email: str
    name: str = ""
    subscriber_id: int | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RenderedMessage:
    """One recipient's subject and bodies. On the fast path the bodies may come only encoded
    (html_qp/text_qp) unless the caller asked for the strings too."""

    subject: str
    unsubscribe_url: str
    html: str | None
    text: str | None
    html_qp: bytes | None = None
    text_qp: bytes | None = None


_OPEN_PATH = ("mailapp_open",)


@dataclass(frozen=True)
class _SubjectSkeleton:
    paths: list[tuple[Any, ...]]
    format: str  # str.format template: the literal text with {0}, {1}... where the values go


@dataclass
class _Skeleton:
    paths: list[tuple[Any, ...]]
    # str.format templates: the literal text with {0}, {1}... where the per-recipient values go
    html_format: str
    text_format: str
    # the same, with the literal text already quoted-printable encoded (None: encode whole bodies)
    html_body: PrecodedBody | None
    text_body: PrecodedBody | None


class CampaignRenderer:
    """Compiled once per campaign; `render(recipient)` per message."""

    def __init__(self, source: CampaignSource, *, public_url: str) -> None:
        self.source = source
        self.public_url = public_url
        layout = source.layout_html or DEFAULT_LAYOUT
        templating.validate_template(layout)
        templating.validate_template(source.subject, environment=templating.text_environment())
        template_source, self.links = prepare_layout(layout, track_clicks=source.track_clicks)
        self.template = templating.html_environment().from_string(template_source)
        self.subject_template = templating.text_environment().from_string(source.subject)
        self.message = templating.message_html(source.message)
        self.sender = {"email": source.from_email, "name": source.from_name}
        self._tokens = tokens.TokenMinter()
        self._prefixes = {
            kind: tokens.public_url(path)
            for kind, path in (
                ("unsubscribe", "/u/"), ("view", "/v/"), ("click", "/c/"), ("open", "/o/"),
                ("preferences", "/p/"),
            )
        }
        self.subject_skeleton = self._build_subject_skeleton()
        try:
            self.skeleton = self._build_skeleton(template_source)
        except RenderLimitExceeded:
            # The skeleton is a shortcut: without it each message takes the slow path, and one that
            # goes over the render limits fails alone.
            self.skeleton = None

    # -- per recipient -------------------------------------------------------------------------------

    def _context(self, recipient: Recipient, subject: str, unsubscribe_url: str, view_url: str,
                 links: list[str], preferences_url: str = "") -> dict[str, Any]:
        context = templating.recipient_context(
            subscriber={
                "id": recipient.subscriber_id, "email": recipient.email, "name": recipient.name,
                "attributes": recipient.attributes,
            },
            sender=self.sender,
            campaign={"id": self.source.id, "name": self.source.name, "subject": subject},
            message=self.message,
            unsubscribe_url=unsubscribe_url,
            view_in_browser_url=view_url,
            preferences_url=preferences_url,
        )
        context["mailapp_links"] = links
        return context

    def render_subject(self, recipient: Recipient, *, fast: bool = True) -> str:
        """The recipient's subject: its skeleton filled in when it has one, else (and for the reference,
        `fast=False`) Jinja."""
        if fast and self.subject_skeleton is not None:
            return self._render_subject_fast(recipient)
        context = self._context(recipient, self.source.subject, "", "", [])
        return self.subject_template.render(context).strip()

    def render(self, recipient: Recipient, *, fast: bool = True, strings: bool = False) -> RenderedMessage:
        """The recipient's message. `fast=False` is the reference: Jinja and html2text for this one
        message. `strings=True` also returns the bodies as text on the fast path (tests)."""
        subject = self.render_subject(recipient, fast=fast)
        # One HMAC per message: every token of the delivery is cut from it.
        issued = self._tokens.issue(recipient.delivery_id, self.source.id, recipient.subscriber_id)
        if fast and self.skeleton is not None:
            rendered = self._render_fast(recipient, subject, issued, strings=strings)
            if rendered is not None:
                return rendered
        unsubscribe_url = self._prefixes["unsubscribe"] + issued.unsubscribe
        context = self._context(
            recipient, subject, unsubscribe_url, self._prefixes["view"] + issued.view,
            [self._prefixes["click"] + issued.click(n) for n in range(len(self.links))],
            self._prefixes["preferences"] + issued.unsubscribe,
        )
        html = self.template.render(context)
        text = self._text_part(html, self._click_urls(issued))
        if self.source.track_opens:
            html = _with_open_pixel(html, self._open_pixel(issued.open))
        return RenderedMessage(subject, unsubscribe_url, html, text)

    def _click_urls(self, issued: tokens.DeliveryTokens) -> list[str]:
        return [self._prefixes["click"] + issued.click(n) for n in range(len(self.links))]

    def _text_part(self, html: str, tracked_urls: list[str]) -> str:
        """The text part shows each tracked link's own URL, not its click-tracking one: a reader of
        plain text sees (and copies) the address, and a long opaque redirect would look like
        phishing there. Clicks from text-only readers go uncounted, as their opens already do. The
        unsubscribe and view-in-browser links stay per recipient: they are what they say."""
        for tracked, url in zip(tracked_urls, self.links, strict=True):
            html = html.replace(str(escape(tracked)), str(escape(url)))
        return html_to_text(html)

    def _open_pixel(self, token: str) -> str:
        return (
            f'<img src="{escape(self._prefixes["open"] + token)}.gif" width="1" height="1" alt="" '
            'style="display:block;width:1px;height:1px;border:0">'
        )

    # -- the skeleton --------------------------------------------------------------------------------

    def _build_skeleton(self, template_source: str) -> _Skeleton | None:
        """None when the layout uses per-recipient values other than by printing them."""
        if _SENTINEL_CHARS.search(template_source) or _SENTINEL_CHARS.search(self.source.message):
            return None
        paths = _printed_paths(templating.html_environment().parse(template_source))
        if paths is None:
            return None
        static = {("campaign", "id"), ("campaign", "name")}
        ordered = [*sorted(paths - static, key=repr), _OPEN_PATH]
        sentinels = {path: "\ue000" + chr(_FIRST_SENTINEL + n) + "\ue000" for n, path in enumerate(ordered)}
        context: dict[str, Any] = {
            "sender": self.sender, "message": self.message,
            "subscriber": {"attributes": {}}, "mailapp_links": {},
            "campaign": {"id": self.source.id, "name": self.source.name},
        }
        for path, sentinel in sentinels.items():
            if path in _TOKEN_PATHS:
                context[path[0]] = self._prefixes[_TOKEN_PATHS[path][0]] + sentinel
            elif path[0] == "mailapp_links":
                context["mailapp_links"][path[1]] = self._prefixes["click"] + sentinel
            elif len(path) == 3:
                context["subscriber"]["attributes"][path[2]] = sentinel
            elif path != _OPEN_PATH:
                context[path[0]][path[1]] = sentinel
        skeleton_html = self.template.render(context)
        skeleton_text = self._text_part(
            skeleton_html,
            [self._prefixes["click"] + sentinels[("mailapp_links", n)] for n in range(len(self.links))],
        )
        if self.source.track_opens:
            skeleton_html = _with_open_pixel(skeleton_html, self._open_pixel(sentinels[_OPEN_PATH]))
        return _Skeleton(
            ordered, _format_template(skeleton_html), _format_template(skeleton_text),
            _precoded(skeleton_html), _precoded(skeleton_text),
        )

    def _build_subject_skeleton(self) -> _SubjectSkeleton | None:
        """The subject as a str.format template when it only prints subscriber values (the usual
        "News for {{ subscriber.name }}"): per message, str.format instead of a Jinja render. None when
        it branches, filters or loops on per-recipient values."""
        subject = self.source.subject
        if _SENTINEL_CHARS.search(subject):
            return None
        paths = _printed_paths(templating.text_environment().parse(subject))
        if paths is None:
            return None
        # Only the subscriber's values differ between recipients: the rest of the subject's context
        # (the campaign's name and id, empty links) is rendered into the skeleton as it is.
        ordered = sorted((path for path in paths if path[0] == "subscriber"), key=repr)
        sentinels = {path: "\ue000" + chr(_FIRST_SENTINEL + n) + "\ue000" for n, path in enumerate(ordered)}
        subscriber: dict[str, Any] = {"attributes": {}}
        for path, sentinel in sentinels.items():
            if len(path) == 3:
                subscriber["attributes"][path[2]] = sentinel
            else:
                subscriber[path[1]] = sentinel
        # The same context as the Jinja path's (render_subject), with sentinels for the subscriber.
        context = self._context(Recipient(delivery_id=0, email=""), subject, "", "", [])
        context["subscriber"] = subscriber
        try:
            rendered = self.subject_template.render(context)
        except RenderLimitExceeded:
            return None
        return _SubjectSkeleton(ordered, _format_template(rendered))

    def _render_subject_fast(self, recipient: Recipient) -> str:
        # Jinja's text environment prints a string as it is and an attribute the subscriber lacks as
        # "". Any other attribute value (a number, a list) goes through Jinja, whose render limits
        # bound what it prints.
        environment = templating.text_environment()
        values = []
        for path in self.subject_skeleton.paths:
            if len(path) == 3:
                value = environment.getattr(recipient.attributes, path[2])
                if isinstance(value, Undefined):
                    value = ""
                elif not isinstance(value, str):
                    return self.render_subject(recipient, fast=False)
            elif path[1] == "id":
                value = str(recipient.subscriber_id)  # None prints as "None", as in Jinja
            else:
                value = getattr(recipient, path[1])
            values.append(value)
        return self.subject_skeleton.format.format(*values).strip()

    def _render_fast(self, recipient: Recipient, subject: str, issued: tokens.DeliveryTokens, *,
                     strings: bool) -> RenderedMessage | None:
        """None when a value would make the HTML's line endings differ from the reference's."""
        environment = templating.html_environment()
        subscriber = {
            "id": recipient.subscriber_id, "email": recipient.email, "name": recipient.name,
            "attributes": recipient.attributes,
        }
        html_values: list[str] = []
        text_values: list[str] = []
        text_ok = True
        for path in self.skeleton.paths:
            root = path[0]
            if root == "unsubscribe_url":
                token = issued.unsubscribe
            elif root == "view_in_browser_url":
                token = issued.view
            elif root == "preferences_url":
                token = issued.unsubscribe
            elif root == "mailapp_links":
                token = issued.click(path[1])
            elif root == "mailapp_open":
                token = issued.open
            else:
                value: Any = subject if path == ("campaign", "subject") else subscriber[path[1]]
                if len(path) == 3:
                    value = environment.getattr(value, path[2])
                html_value = str(escape(value))
                if "\r" in html_value:
                    return None
                plain = html_lib.unescape(html_value) if isinstance(value, Markup) else str(value)
                html_values.append(html_value)
                text_values.append(plain)
                if text_ok and not (_TEXT_SAFE.fullmatch(plain) and not plain.endswith(" ")):
                    text_ok = False
                continue
            html_values.append(token)
            text_values.append(token)
        skeleton = self.skeleton
        html = skeleton.html_format.format(*html_values) if strings or not skeleton.html_body else None
        html_qp = skeleton.html_body.encode(html_values) if skeleton.html_body else None
        if text_ok:
            text = skeleton.text_format.format(*text_values) if strings or not skeleton.text_body else None
            text_qp = skeleton.text_body.encode(text_values) if skeleton.text_body else None
        else:
            if html is None:
                html = skeleton.html_format.format(*html_values)
            without_pixel = _without_open_pixel(html, self._open_pixel(issued.open))
            text = self._text_part(without_pixel, self._click_urls(issued))
            text_qp = None
        return RenderedMessage(
            subject, self._prefixes["unsubscribe"] + issued.unsubscribe, html, text, html_qp, text_qp
        )


def _with_open_pixel(html: str, pixel: str) -> str:
    """The pixel just before the last `</body>`, found on the original text: a lowercased copy can be
    longer ("İ" becomes two characters), and its positions would cut the tag in two."""
    found = _LAST_BODY_END.match(html)
    if found is None:
        return html + pixel
    at = found.start(1)
    return html[:at] + pixel + html[at:]


def _without_open_pixel(html: str, pixel: str) -> str:
    at = html.rfind(pixel)
    return html[:at] + html[at + len(pixel):] if at >= 0 else html


def _precoded(skeleton: str) -> PrecodedBody | None:
    """The skeleton's literal text encoded once, when its line endings and final newline do not
    depend on the values (it ends with literal text)."""
    pieces: list[Any] = []
    for n, piece in enumerate(_SENTINEL.split(skeleton)):
        pieces.append(ord(piece) - _FIRST_SENTINEL if n % 2 else piece)
    if not pieces[-1]:
        return None
    pieces[0::2] = [piece.replace("\r\n", "\n").replace("\r", "\n") for piece in pieces[0::2]]
    if not pieces[-1].endswith("\n"):
        pieces[-1] += "\n"
    return PrecodedBody(pieces)


def _format_template(rendered: str) -> str:
    """The skeleton as a str.format template: literal braces doubled, each sentinel a {n} field."""
    pieces: list[str] = []
    for n, piece in enumerate(_SENTINEL.split(rendered)):
        if n % 2:
            pieces.append(f"{{{ord(piece) - _FIRST_SENTINEL}}}")
        else:
            pieces.append(piece.replace("{", "{{").replace("}", "}}"))
    return "".join(pieces)


def _chain(node: nodes.Node) -> tuple[Any, ...] | None:
    if isinstance(node, nodes.Name) and node.ctx == "load":
        return (node.name,)
    if isinstance(node, nodes.Getattr):
        inner = _chain(node.node)
        return inner + (node.attr,) if inner else None
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        inner = _chain(node.node)
        return inner + (node.arg.value,) if inner else None
    return None


def _is_leaf(path: tuple[Any, ...]) -> bool:
    if path in _LEAF_PATHS:
        return True
    if len(path) == 3 and path[:2] == ("subscriber", "attributes"):
        # dict methods (items, keys, get...) would resolve to the method, not to a value
        return isinstance(path[2], str) and not hasattr(dict, path[2])
    return len(path) == 2 and path[0] == "mailapp_links" and isinstance(path[1], int)


def _printed_paths(tree: nodes.Template) -> set[tuple[Any, ...]] | None:
    """The per-recipient values the template prints as `{{ path }}`, or None when it also uses any of
    them in another way (a condition, a filter, a loop, an assignment)."""
    printed: set[tuple[Any, ...]] = set()
    linear = True

    def visit(node: nodes.Node) -> None:
        nonlocal linear
        if isinstance(node, nodes.Output):
            for child in node.nodes:
                path = _chain(child)
                if path is not None and path[0] in _PER_RECIPIENT_ROOTS and _is_leaf(path):
                    printed.add(path)
                else:
                    visit(child)
            return
        if isinstance(node, nodes.Name) and node.name in _PER_RECIPIENT_ROOTS:
            linear = False
            return
        for child in node.iter_child_nodes():
            visit(child)

    visit(tree)
    return printed if linear else None


_renderers: dict[tuple[Any, ...], CampaignRenderer] = {}
_renderers_lock = threading.Lock()


def renderer_for(source: CampaignSource, public_url: str, build: Callable[[], CampaignRenderer] | None = None
                 ) -> CampaignRenderer:
    """The process's compiled renderer for this version of the campaign (keyed by id and update times)."""
    key = (*source.cache_key, public_url)
    renderer = _renderers.get(key)
    if renderer is None:
        renderer = build() if build else CampaignRenderer(source, public_url=public_url)
        # Send tasks of a threads-pool worker share this cache: one changes it at a time.
        with _renderers_lock:
            for stale in [k for k in _renderers if k[0] == source.id]:
                del _renderers[stale]
            if len(_renderers) > 32:
                _renderers.clear()
            _renderers[key] = renderer
    return renderer
