"""Forms of the campaigns area: the campaign editor, scheduling in the browser's timezone, test sends,
and the CSRF-only action buttons. The rules live in campaigns.services; these only parse."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask_wtf import FlaskForm
from wtforms import BooleanField, HiddenField, SelectField, SelectMultipleField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional
from wtforms.widgets import CheckboxInput

from mailapp.errors import ValidationError
from mailapp.timezones import is_zone_name, zone_names


class CampaignForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=200)])
    subject = StringField("Subject", validators=[DataRequired(), Length(max=500)])
    from_name = StringField("From name", validators=[Optional(), Length(max=200)])
    from_email = StringField("From email", validators=[DataRequired(), Length(max=320)])
    reply_to = StringField("Reply-to (optional)", validators=[Optional(), Length(max=320)])
    layout_id = SelectField("Layout", coerce=int, validate_choice=False)
    list_ids = SelectMultipleField(
        "Send to lists", coerce=int, validate_choice=False, option_widget=CheckboxInput()
    )
    message = TextAreaField("Message", validators=[Optional()])
    track_opens = BooleanField("Track opens", default=True)
    track_clicks = BooleanField("Track clicks", default=True)
    # 0 is "none": the From fields as typed, and the identity's relay or the default one.
    sender_identity_id = SelectField("Sender identity", coerce=int, validate_choice=False, default=0)
    relay_id = SelectField("Relay", coerce=int, validate_choice=False, default=0)

    def campaign_data(self) -> dict:
        names = (
            "name",
            "subject",
            "from_name",
            "from_email",
            "reply_to",
            "list_ids",
            "message",
            "track_opens",
            "track_clicks",
            "sender_identity_id",
            "relay_id",
        )
        data = {name: getattr(self, name).data for name in names}
        # 0 is the "choose a layout" placeholder.
        data["layout_id"] = self.layout_id.data or None
        return data


class ScheduleForm(FlaskForm):
    """A datetime-local input is a wall-clock time with no zone: the time zone chosen beside it (the
    campaign's last one, else the account's, else the browser's, which static/js/app.js fills in) says
    what it means, and the schedule is shown in that zone. The browser's UTC offset is the fallback."""

    send_at = StringField("Send at", validators=[DataRequired(message="Pick a date and time.")])
    timezone = SelectField("Time zone", validate_choice=False)
    utc_offset = HiddenField()

    def __init__(self, *args, zone: str = "", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.timezone.choices = [("", "— your browser's —"), *((name, name) for name in zone_names())]
        if not self.is_submitted():
            self.timezone.data = zone

    def chosen_zone(self) -> str:
        return self.timezone.data if is_zone_name(self.timezone.data or "") else ""

    def send_at_utc(self) -> datetime:
        return local_time_to_utc(
            self.send_at.data or "", self.timezone.data or "", self.utc_offset.data or ""
        )


class TestSendForm(FlaskForm):
    emails = StringField("Send a test to", validators=[DataRequired(message="Give at least one address.")])
    subscriber = StringField("Render as subscriber (email, optional)", validators=[Optional()])


def local_time_to_utc(local: str, zone_name: str, offset_minutes: str) -> datetime:
    """'2026-12-01T09:30' in the browser's zone -> aware UTC. The IANA zone wins (it knows DST on the
    chosen date); the offset is the fallback; with neither (JavaScript off) the time is taken as UTC."""
    try:
        naive = datetime.fromisoformat(local.strip())
    except ValueError as error:
        raise ValidationError(
            f"'{local}' is not a date and time (expected YYYY-MM-DDTHH:MM).",
            [{"field": "send_at", "message": "Not a date and time."}],
        ) from error
    if naive.tzinfo is not None:
        return naive.astimezone(UTC)
    if zone_name:
        try:
            return naive.replace(tzinfo=ZoneInfo(zone_name)).astimezone(UTC)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    if offset_minutes.strip().lstrip("-").isdigit():
        # JavaScript's getTimezoneOffset(): minutes to ADD to local time to get UTC.
        return (naive + timedelta(minutes=int(offset_minutes))).replace(tzinfo=UTC)
    return naive.replace(tzinfo=UTC)
