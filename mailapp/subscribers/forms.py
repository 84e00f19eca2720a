"""Forms of the subscribers area: lists, subscribers, status actions and CSV uploads."""

from __future__ import annotations

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import BooleanField, HiddenField, SelectField, SelectMultipleField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import AnyOf, DataRequired, Length, Optional
from wtforms.widgets import CheckboxInput

from mailapp.models.subscriber import SubscriberStatus
from mailapp.subscribers.subscriber_lists import LIST_NAME_MAX
from mailapp.subscribers.validation import NAME_MAX_LENGTH

STATUS_CHOICES = [SelectChoice(status.value, status.value.capitalize()) for status in SubscriberStatus]


class ListForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=LIST_NAME_MAX)])
    description = TextAreaField("Description", validators=[Optional()])


class SubscriberForm(FlaskForm):
    # Checked by services.normalize_email (email-validator), so the message says what is wrong.
    email = StringField("Email", validators=[DataRequired(), Length(max=320)])
    name = StringField("Name", validators=[Optional(), Length(max=NAME_MAX_LENGTH)])
    attributes = TextAreaField("Attributes (a JSON object)", validators=[Optional()])
    status = SelectField("Status", choices=STATUS_CHOICES, default=SubscriberStatus.ACTIVE.value)
    lists = SelectMultipleField("Lists", coerce=int, validate_choice=False, option_widget=CheckboxInput())
    # The status dropdown must not be a quiet way round the Resubscribe button's question.
    confirm_reactivation = BooleanField("They asked to receive mail again")

    def refuses_unconfirmed_reactivation(self, current_status: str) -> bool:
        """True (with the error beside the status) when an unsubscribed or blocklisted subscriber is
        made active without the box ticked."""
        if (
            current_status != SubscriberStatus.ACTIVE
            and self.status.data == SubscriberStatus.ACTIVE
            and not self.confirm_reactivation.data
        ):
            self.status.errors = [
                *self.status.errors,
                f"This subscriber is {current_status}: tick \"{self.confirm_reactivation.label.text}\" "
                "to make them active again. Only do this if they asked for it.",
            ]
            return True
        return False


class StatusForm(FlaskForm):
    status = HiddenField(validators=[AnyOf([status.value for status in SubscriberStatus])])


class ImportForm(FlaskForm):
    file = FileField("CSV file", validators=[FileRequired("Choose a CSV file to import.")])
