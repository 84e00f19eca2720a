"""Forms of the suppression page: add an address, lift a suppression, import a CSV file."""

from __future__ import annotations

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, Optional

from mailapp.deliverability.services import MAX_DETAIL_LENGTH, MAX_LIFT_REASON_LENGTH
from mailapp.models import SuppressionReason

REASON_LABELS = {
    SuppressionReason.MANUAL: "Added by hand",
    SuppressionReason.HARD_BOUNCE: "Hard bounce",
    SuppressionReason.SOFT_BOUNCE: "Too many soft bounces",
    SuppressionReason.COMPLAINT: "Spam complaint",
    SuppressionReason.IMPORT: "Imported",
}
REASON_CHOICES = [SelectChoice(reason.value, REASON_LABELS[reason]) for reason in SuppressionReason]


class SuppressionForm(FlaskForm):
    # Checked by addresses.normalize_email (email-validator), so the message says what is wrong.
    email = StringField("Email", validators=[DataRequired(), Length(max=320)])
    reason = SelectField("Reason", choices=REASON_CHOICES, default=SuppressionReason.MANUAL.value)
    detail = TextAreaField("Note", validators=[Optional(), Length(max=MAX_DETAIL_LENGTH)])


class LiftForm(FlaskForm):
    reason = StringField("Why", validators=[
        DataRequired("Say why the suppression is lifted."), Length(max=MAX_LIFT_REASON_LENGTH),
    ])


class SuppressionImportForm(FlaskForm):
    file = FileField("CSV file", validators=[FileRequired("Choose a CSV file to import.")])
