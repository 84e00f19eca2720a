"""How deep JSON text from outside may nest, checked on the text before it is parsed: Python's json
parser recurses once per level, so a body of 100,000 '[' would exhaust the stack (a RecursionError,
not a JSON error), and so would anything walking the parsed value."""

from __future__ import annotations

import re

# Deeper than anything the app takes (subscriber attributes are the deepest), shallow enough that
# neither the parser nor anything walking the value runs out of stack.
MAX_JSON_DEPTH = 32

# A JSON string (escapes included) or one bracket: brackets inside strings do not nest anything.
_STRING_OR_BRACKET = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')


def nesting_exceeds(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when the arrays and objects of the JSON text nest deeper than limit (text that is not
    JSON at all is left to the parser)."""
    depth = 0
    for match in _STRING_OR_BRACKET.finditer(text):
        lexeme = match.group()
        if lexeme in ("[", "{"):
            depth += 1
            if depth > limit:
                return True
        elif lexeme in ("]", "}"):
            depth -= 1
    return False
