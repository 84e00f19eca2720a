"""Dashboard forms of the signup area: a signup form's settings, and a list's opt-in settings."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, SelectField, SelectMultipleField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional, Regexp

SLUG_RULE = r"^[a-z0-9][a-z0-9-]{0,63}$"


class SignupFormForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=200)])
    slug = StringField(
        "Address",
        validators=[DataRequired(), Regexp(SLUG_RULE, message="Lower-case letters, digits and dashes.")],
        description="The hosted page is /s/<address>.",
    )
    lists = SelectMultipleField("Lists", coerce=int, validators=[DataRequired("Choose at least one list.")])
    lists_choosable = BooleanField("Visitors choose which of these lists they join")
    ask_name = BooleanField("Ask for a name", default=True)
    altcha = BooleanField("Anti-spam proof of work (ALTCHA): the visitor's browser solves a puzzle first")
    fields = TextAreaField(
        "Extra fields",
        validators=[Optional(), Length(max=5000)],
        description="One per line: attribute:type:Label, type one of text, number, date, checkbox.",
    )
    title = StringField("Title", validators=[Optional(), Length(max=200)])
    intro = TextAreaField("Introduction", validators=[Optional(), Length(max=5000)])
    consent_text = TextAreaField("Consent text", validators=[Optional(), Length(max=5000)])
    button_text = StringField("Button", validators=[Optional(), Length(max=100)], default="Subscribe")
    thank_you_text = TextAreaField("Thank-you text", validators=[Optional(), Length(max=5000)])
    redirect_url = StringField(
        "After signing up, go to",
        validators=[Optional(), Length(max=2000)],
        description="An https:// address on your site; empty: the hosted thank-you page.",
    )
    allowed_origins = TextAreaField(
        "Allowed origins",
        validators=[Optional(), Length(max=5000)],
        description="One per line, e.g. https://www.example.com: sites whose JavaScript may post to the API.",
    )


class ListOptInForm(FlaskForm):
    double_opt_in = BooleanField("Double opt-in: signups confirm by email")
    public = BooleanField("Public: shown in the preference center")
    confirmation_layout_id = SelectField("Confirmation email layout", coerce=int)
    welcome_layout_id = SelectField("Welcome email layout", coerce=int)
