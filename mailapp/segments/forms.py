"""The segment form: a name, and the rule tree the builder (static/js/segments.js) writes as JSON into a
hidden field; the server validates the tree."""

from __future__ import annotations

import json
from typing import Any

from flask_wtf import FlaskForm
from wtforms import HiddenField, StringField
from wtforms.validators import DataRequired, Length

from mailapp.errors import ValidationError, field_problem
from mailapp.json_nesting import nesting_exceeds

# A tree of MAX_NODES rules with long values fits well within this.
MAX_RULES_JSON_BYTES = 262_144


def rules_from_json(raw: str) -> Any:
    """The tree a builder posted; ValidationError on `rules` when it is not bounded JSON."""
    if len(raw.encode("utf-8", "surrogatepass")) > MAX_RULES_JSON_BYTES:
        raise ValidationError("rules: too large.", [field_problem("rules", "Too large.")])
    if nesting_exceeds(raw):
        raise ValidationError("rules: nested too deep.", [field_problem("rules", "Nested too deep.")])
    try:
        return json.loads(raw or "null")
    except ValueError as error:
        raise ValidationError("rules: not JSON.", [field_problem("rules", "Not JSON.")]) from error


class SegmentForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=200)])
    rules = HiddenField("Rules")

    def segment_data(self) -> dict[str, Any]:
        return {"name": self.name.data, "rules": rules_from_json(self.rules.data or "")}
