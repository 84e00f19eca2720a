"""The layout template language: Jinja in a sandbox with autoescape, its variables, and validation.

Layouts and subjects are compiled here once per campaign (or per preview) and rendered per recipient
with the context from `recipient_context`."""

from __future__ import annotations

import re
import secrets
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import css_inline
from jinja2 import TemplateSyntaxError, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup, escape

from mailapp.errors import TemplateError
from mailapp.sending import limits
from mailapp.sending.sandbox import ALLOWED_GLOBALS, EmptyUndefined, StrictSandbox

# name -> the attributes a layout may read from it (None: a plain value). `attributes` holds the
# subscriber's free-form custom fields, so any key below it is allowed.
SUPPORTED_VARIABLES: dict[str, frozenset[str] | None] = {
    "subscriber": frozenset({"id", "email", "name", "attributes"}),
    "sender": frozenset({"email", "name"}),
    "campaign": frozenset({"id", "name", "subject"}),
    "message": None,
    "unsubscribe_url": None,
    "view_in_browser_url": None,
    "preferences_url": None,
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
    ("{{ preferences_url }}", "The recipient's preference center: name, public lists, unsubscribe"),
]

SAMPLE_SUBSCRIBER: dict[str, Any] = {
    "id": 0,
    "email": "jane.doe@example.com",
    "name": "Jane Doe",
    "attributes": {"city": "Lisbon", "plan": "pro"},
}


# Template constructs that reach outside the one template; layouts have no loader to include from.
_REFUSED_NODES: dict[type[nodes.Node], str] = {
    nodes.Include: "{% include %} is not supported in layouts.",
    nodes.Extends: "{% extends %} is not supported in layouts.",
    nodes.Import: "{% import %} is not supported in layouts.",
    nodes.FromImport: "{% from ... import %} is not supported in layouts.",
}

_environment = StrictSandbox(autoescape=True, undefined=EmptyUndefined)
_text_environment = StrictSandbox(autoescape=False, undefined=EmptyUndefined)


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
        return _validate(source, environment)
    except RecursionError as error:
        raise TemplateError(
            "The template is nested too deeply to check.",
            [{"line": None, "message": "The template is nested too deeply to check."}],
        ) from error


def _validate(source: str, environment: SandboxedEnvironment) -> list[str]:
    try:
        tree = environment.parse(source)
    except TemplateSyntaxError as error:
        raise TemplateError(
            f"Template syntax error on line {error.lineno}: {error.message}",
            [{"line": error.lineno, "message": f"Syntax error: {error.message or 'invalid template'}"}],
        ) from error

    problems: list[_Problem] = []
    used: set[str] = set()
    local_names = _locally_assigned_names(tree)

    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.NSRef)):
        attribute = _attribute_name(node)
        if attribute is not None and attribute.startswith("_"):
            problems.append(_Problem(node.lineno, f"Access to '{attribute}' is not allowed."))

    for node_type, message in _REFUSED_NODES.items():
        problems.extend(_Problem(node.lineno, message) for node in tree.find_all(node_type))

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


def uses_variable(source: str, name: str) -> bool:
    """Whether the template reads the variable `name` anywhere: a parse, no render. A template that does
    not parse uses nothing (saving it reports why)."""
    try:
        tree = _environment.parse(source)
    except (TemplateSyntaxError, RecursionError):
        return False
    return any(node.name == name and node.ctx == "load" for node in tree.find_all(nodes.Name))


def compile_template(source: str, *, environment: SandboxedEnvironment | None = None):
    """Compile once, render many times. Validates first, so a stored template that no longer passes
    (say, after a rule change) is refused here rather than mid-send."""
    environment = environment or _environment
    validate_template(source, environment=environment)
    return environment.from_string(source)


def validate_subject(source: str) -> list[str]:
    """validate_template for a subject line (plain text); a module-level function, so that it can be run
    in a child process (layouts/isolation.py)."""
    return validate_template(source, environment=_text_environment)


def render_layout_preview(html: str, subscriber: Mapping[str, Any]) -> str:
    """The layout as it will be sent (CSS inlined), validated and rendered for this subscriber's values
    with the sample sender and message. A render failure is a TemplateError with its line (of the
    layout as written: inlining CSS moves lines, so the layout is validated before it is inlined)."""
    validate_template(html)
    template = compile_template(inline_css(html))
    try:
        return template.render(sample_context(subscriber=subscriber))
    except Exception as error:  # this subscriber's data breaks the template: say so
        raise render_error(error) from error


_JINJA_CHUNK = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)
_PLACEHOLDER = r"(?:<!--|&lt;!--)\s*{marker}(\d+)\s*(?:-->|--&gt;)|{marker}(\d+)-"


def inline_css(html: str) -> str:
    """Move <style> rules into style attributes, as mail clients (Gmail among them) need. Done once per
    layout, before rendering. At-rules (`@media`, `@font-face`, `@supports`) have no inline form, so
    they stay in a <style> block in <head>: without them a responsive layout keeps its desktop width on
    a phone. The inliner parses and re-serialises the HTML, which would move a
    `{% for %}` out of a <table> (HTML "foster parenting") or re-escape an expression, so every Jinja
    tag is swapped for a placeholder first (an HTML comment between elements, a bare word inside a
    tag) and put back afterwards, unchanged."""
    chunks: list[str] = []
    # Random per call, so text that happens to look like a placeholder is never taken for one.
    marker = f"mailapp-jinja-{secrets.token_hex(6)}-"

    def protect(match: re.Match[str]) -> str:
        chunks.append(match.group(0))
        index = len(chunks) - 1
        before = html[: match.start()]
        inside_tag = before.rfind("<") > before.rfind(">")
        return f"{marker}{index}-" if inside_tag else f"<!--{marker}{index}-->"

    protected = _JINJA_CHUNK.sub(protect, html)
    inlined = css_inline.inline(
        protected, keep_style_tags=False, keep_at_rules=True, load_remote_stylesheets=False
    )
    placeholder = re.compile(_PLACEHOLDER.format(marker=re.escape(marker)))
    return placeholder.sub(lambda match: chunks[int(match.group(1) or match.group(2))], inlined)


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
    preferences_url: str = "",
) -> dict[str, Any]:
    return {
        "subscriber": subscriber,
        "sender": sender,
        "campaign": campaign,
        "message": message,
        "unsubscribe_url": unsubscribe_url,
        "view_in_browser_url": view_in_browser_url,
        "preferences_url": preferences_url,
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
        preferences_url="#preferences",
    )


def render_error(error: Exception) -> TemplateError:
    """A failure raised while rendering a template, as the TemplateError to report (with the template
    line it came from): for previews and sends, where a real subscriber's data can break a template
    that rendered fine with the sample."""
    problem = _render_problem(error)
    where = f" on line {problem.line}" if problem.line else ""
    return TemplateError(f"The template fails to render{where}: {problem.message}", [problem.as_dict()])


def _render_problem(error: Exception) -> _Problem:
    if isinstance(error, limits.RenderLimitExceeded):
        return _Problem(_template_line(error), f"Over a render limit: {error}")
    if isinstance(error, SecurityError):
        return _Problem(_template_line(error), f"Not allowed by the template sandbox: {error}")
    reason = str(error) or type(error).__name__
    return _Problem(_template_line(error), f"The template fails to render: {reason}")


def _trial_render(environment: SandboxedEnvironment, source: str) -> Iterable[_Problem]:
    """Render against the sample context: catches what only shows at run time (sandbox refusals,
    type errors in filters)."""
    try:
        environment.from_string(source).render(sample_context())
    except Exception as error:  # any render failure is a template error to report
        return [_render_problem(error)]
    return []


def _template_line(error: BaseException) -> int | None:
    """The template line a render error came from: Jinja rewrites tracebacks so the template's own
    frames carry its line numbers, under the file name "<template>"."""
    lines = [
        frame.lineno for frame in traceback.extract_tb(error.__traceback__) if frame.filename == "<template>"
    ]
    return lines[-1] if lines else getattr(error, "lineno", None)


def _attribute_name(node: nodes.Node) -> str | None:
    if isinstance(node, nodes.Getattr | nodes.NSRef):
        return node.attr
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        return node.arg.value if isinstance(node.arg.value, str) else None
    return None


def _locally_assigned_names(tree: nodes.Template) -> set[str]:
    """Names a template defines itself ({% set %}, {% for %} targets, macro arguments)."""
    names: set[str] = {"loop", "caller", "varargs", "kwargs", *ALLOWED_GLOBALS}
    for node in tree.find_all(nodes.Name):
        if node.ctx in ("store", "param"):
            names.add(node.name)
    return names
