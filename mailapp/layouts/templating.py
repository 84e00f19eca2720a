"""The layout template language: Jinja in a sandbox with autoescape, its variables, and validation.

Layouts and subjects are compiled here once per campaign (or per preview) and rendered per recipient
with the context from `recipient_context`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import css_inline
from jinja2 import ChainableUndefined, TemplateSyntaxError, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup, escape

from mailapp.errors import TemplateError

# name -> the attributes a layout may read from it (None: a plain value). `attributes` holds the
# subscriber's free-form custom fields, so any key below it is allowed.
SUPPORTED_VARIABLES: dict[str, frozenset[str] | None] = {
    "subscriber": frozenset({"id", "email", "name", "attributes"}),
    "sender": frozenset({"email", "name"}),
    "campaign": frozenset({"id", "name", "subject"}),
    "message": None,
    "unsubscribe_url": None,
    "view_in_browser_url": None,
}

VARIABLE_HELP: list[tuple[str, str]] = [
    ("{{ subscriber.email }}", "The recipient's email address"),
    ("{{ subscriber.name }}", "The recipient's name"),
    ("{{ subscriber.attributes.city }}", "Any custom attribute, here `city` (from CSV columns or JSON)"),
    ("{{ sender.email }}", "The campaign's from address"),
    ("{{ sender.name }}", "The campaign's from name"),
    ("{{ message }}", "The campaign's message text"),
    ("{{ campaign.subject }}", "The campaign's subject line"),
    ("{{ campaign.name }}", "The campaign's name"),
    ("{{ unsubscribe_url }}", "The recipient's one-click unsubscribe link"),
    ("{{ view_in_browser_url }}", "A link to this email as a web page"),
]

SAMPLE_SUBSCRIBER: dict[str, Any] = {
    "id": 0,
    "email": "jane.doe@example.com",
    "name": "Jane Doe",
    "attributes": {"city": "Lisbon", "plan": "pro"},
}


class _StrictSandbox(SandboxedEnvironment):
    """The sandbox, refusing any underscore attribute rather than only the ones Jinja knows are unsafe."""

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if attr.startswith("_"):
            return False
        return super().is_safe_attribute(obj, attr, value)


_environment = _StrictSandbox(autoescape=True, undefined=ChainableUndefined)
_text_environment = _StrictSandbox(autoescape=False, undefined=ChainableUndefined)


@dataclass(frozen=True)
class _Problem:
    line: int | None
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"line": self.line, "message": self.message}


def html_environment() -> SandboxedEnvironment:
    return _environment


def text_environment() -> SandboxedEnvironment:
    """For subject lines, which are plain text and must not be HTML-escaped."""
    return _text_environment


def validate_template(source: str, *, environment: SandboxedEnvironment | None = None) -> list[str]:
    """Check a layout or subject. Returns the variables it uses, sorted; raises TemplateError with
    details [{line, message}] for syntax errors, unknown variables and unsafe constructs."""
    environment = environment or _environment
    try:
        tree = environment.parse(source)
    except TemplateSyntaxError as error:
        raise TemplateError(
            f"Template syntax error on line {error.lineno}: {error.message}",
            [{"line": error.lineno, "message": error.message or "syntax error"}],
        ) from error

    problems: list[_Problem] = []
    used: set[str] = set()
    local_names = _locally_assigned_names(tree)

    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        attribute = _attribute_name(node)
        if attribute is not None and attribute.startswith("_"):
            problems.append(_Problem(node.lineno, f"Access to '{attribute}' is not allowed."))

    for node in tree.find_all(nodes.Filter):
        if node.name == "attr" and any(
            isinstance(arg, nodes.Const) and str(arg.value).startswith("_") for arg in node.args
        ):
            problems.append(_Problem(node.lineno, "Access to underscore attributes is not allowed."))

    for node in tree.find_all(nodes.Name):
        if node.ctx != "load" or node.name in local_names:
            continue
        if node.name not in SUPPORTED_VARIABLES:
            problems.append(_Problem(node.lineno, f"Unknown variable '{node.name}'."))
        else:
            used.add(node.name)

    for node in tree.find_all(nodes.Getattr):
        if isinstance(node.node, nodes.Name) and node.node.name not in local_names:
            allowed = SUPPORTED_VARIABLES.get(node.node.name)
            if allowed is not None and node.attr not in allowed:
                problems.append(
                    _Problem(node.lineno, f"Unknown variable '{node.node.name}.{node.attr}'.")
                )
            elif allowed is not None:
                used.add(f"{node.node.name}.{node.attr}")

    if not problems:
        problems.extend(_trial_render(environment, source))
    if problems:
        problems.sort(key=lambda problem: (problem.line or 0, problem.message))
        first = problems[0]
        where = f" on line {first.line}" if first.line else ""
        raise TemplateError(
            f"{len(problems)} problem(s) in the template; first{where}: {first.message}",
            [problem.as_dict() for problem in problems],
        )
    return sorted(used)


def compile_template(source: str, *, environment: SandboxedEnvironment | None = None):  # noqa: ANN201
    """Compile once, render many times. Validates first, so a stored template that no longer passes
    (say, after a rule change) is refused here rather than mid-send."""
    environment = environment or _environment
    validate_template(source, environment=environment)
    return environment.from_string(source)


def inline_css(html: str) -> str:
    """Move <style> rules into style attributes, as mail clients (Gmail among them) need. Done once per
    layout, before rendering: the Jinja expressions pass through untouched."""
    return css_inline.inline(html, keep_style_tags=False, load_remote_stylesheets=False)


def message_html(text: str) -> Markup:
    """The campaign's message text as HTML: escaped, paragraphs on blank lines, <br> on single ones."""
    paragraphs = [chunk.strip() for chunk in (text or "").replace("\r\n", "\n").split("\n\n")]
    rendered = (
        Markup("<p>") + Markup("<br>\n").join(escape(line) for line in chunk.split("\n")) + Markup("</p>")
        for chunk in paragraphs
        if chunk
    )
    return Markup("\n").join(rendered)


def recipient_context(
    *,
    subscriber: Mapping[str, Any],
    sender: Mapping[str, Any],
    campaign: Mapping[str, Any],
    message: Markup | str,
    unsubscribe_url: str,
    view_in_browser_url: str = "",
) -> dict[str, Any]:
    return {
        "subscriber": subscriber,
        "sender": sender,
        "campaign": campaign,
        "message": message,
        "unsubscribe_url": unsubscribe_url,
        "view_in_browser_url": view_in_browser_url,
    }


def sample_context(
    *,
    message: str = "This is where the campaign's message goes.",
    subscriber: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    return recipient_context(
        subscriber=subscriber or SAMPLE_SUBSCRIBER,
        sender={"email": "news@example.com", "name": "Example News"},
        campaign={"id": 0, "name": "Preview", "subject": "A preview"},
        message=message_html(message),
        unsubscribe_url="#unsubscribe",
        view_in_browser_url="#view-in-browser",
    )


def _trial_render(environment: SandboxedEnvironment, source: str) -> Iterable[_Problem]:
    """Render against the sample context: catches what only shows at run time (sandbox refusals,
    type errors in filters)."""
    try:
        environment.from_string(source).render(sample_context())
    except SecurityError as error:
        return [_Problem(None, f"Not allowed by the template sandbox: {error}")]
    except Exception as error:  # noqa: BLE001 - any render failure is a template error to report
        return [_Problem(getattr(error, "lineno", None), f"The template fails to render: {error}")]
    return []


def _attribute_name(node: nodes.Node) -> str | None:
    if isinstance(node, nodes.Getattr):
        return node.attr
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        return node.arg.value if isinstance(node.arg.value, str) else None
    return None


def _locally_assigned_names(tree: nodes.Template) -> set[str]:
    """Names a template defines itself ({% set %}, {% for %} targets, macro arguments)."""
    names: set[str] = {"loop", "range", "dict", "lipsum", "cycler", "joiner", "namespace"}
    for node in tree.find_all(nodes.Name):
        if node.ctx in ("store", "param"):
            names.add(node.name)
    return names
