"""MJML layouts (the visual editor's output, or an upload): recognising them and compiling them to the
HTML that sends use, with MRML (Rust; no Node.js at run time)."""

from __future__ import annotations

import re

import mrml

from mailapp.errors import TemplateError
from mailapp.sending import templating

# An MJML document starts with its root element, perhaps after an XML declaration or comments.
_MJML_START = re.compile(r"\A\ufeff?\s*(?:<\?xml[^>]*\?>\s*)?(?:<!--.*?-->\s*)*<mjml[\s>]", re.DOTALL)
# MRML names where it stopped as "position <start>:<end>", in characters of the source.
_POSITION = re.compile(r"\bat position (\d+):(\d+)")


def is_mjml(source: str) -> bool:
    return bool(_MJML_START.match(source))


def compile_mjml(source: str) -> str:
    """The HTML of an MJML document. Raises TemplateError naming the line MRML stopped at. Includes
    (<mj-include>) are refused: they would read the server's files or fetch URLs."""
    try:
        output = mrml.to_html(source, parser_options=mrml.ParserOptions(include_loader=mrml.noop_loader()))
    except OSError as error:
        reason = str(error)
        line = None
        found = _POSITION.search(reason)
        if found:
            line = source[: int(found.group(1))].count("\n") + 1
        if "end of stream" in reason:
            reason = "the document ends before every element is closed (a missing or misspelt closing tag)"
        elif "included template" in reason:
            reason = "<mj-include> is not supported: paste the included part into the layout"
        message = f"The MJML is not valid: {reason}."
        raise TemplateError(message, [{"field": "html", "line": line, "message": message}]) from None
    return output.content


def compile_and_validate(source: str) -> tuple[str, list[str]]:
    """Compile, then check the HTML as any layout is checked; (html, variables used). A module-level
    function, so it can run in the render child process (isolation.py): MJML input is hostile and its
    compile must be bounded in time and memory like a render."""
    html = compile_mjml(source)
    try:
        variables = templating.validate_template(html)
    except TemplateError as error:
        raise _on_source_lines(error, source, html) from None
    return html, variables


_TEMPLATE_TAG = re.compile(r"\{[{%].*?[}%]\}")


def _on_source_lines(error: TemplateError, source: str, html: str) -> TemplateError:
    """A template problem of the compiled HTML, told on the line of the MJML the marketer wrote (the
    compiled HTML's lines mean nothing to them): the line of the source holding the same template tag."""
    html_lines = html.splitlines()
    details = []
    for detail in error.details or []:
        line = detail.get("line")
        known = isinstance(line, int) and 0 < line <= len(html_lines)
        compiled_line = html_lines[line - 1] if known else ""
        details.append({**detail, "line": _source_line(source, compiled_line, detail.get("message") or "")})
    first = details[0] if details else {"line": None, "message": error.message}
    where = f" on line {first['line']} of the MJML" if first["line"] else ""
    message = f"{len(details)} problem(s) in the layout; first{where}: {first['message']}"
    return TemplateError(message, details)


def _source_line(source: str, compiled_line: str, message: str) -> int | None:
    """The first source line naming the variable the message names, or else with one of the compiled
    line's template tags (MRML may put several source lines on one)."""
    candidates = re.findall(r"'([A-Za-z_][\w.]*)'", message) + _TEMPLATE_TAG.findall(compiled_line)
    for text in candidates:
        index = source.find(text)
        if index >= 0:
            return source[:index].count("\n") + 1
    return None
