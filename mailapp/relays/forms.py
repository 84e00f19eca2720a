"""Forms of the relays area: a relay and a sender identity. The rules live in relays.services; these only
parse (a blank password field keeps the stored one)."""

from __future__ import annotations

from typing import Any

from flask_wtf import FlaskForm
from wtforms import BooleanField, IntegerField, PasswordField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import InputRequired, Length, NumberRange, Optional

from mailapp.models import TlsMode
from mailapp.relays import services


class RelayForm(FlaskForm):
    name = StringField("Name", validators=[InputRequired(), Length(max=services.NAME_MAX)])
    host = StringField("Host", validators=[InputRequired(), Length(max=services.HOST_MAX)])
    port = IntegerField("Port", default=587, validators=[InputRequired(), NumberRange(1, 65535)])
    tls_mode = SelectField("TLS", choices=[
        SelectChoice(TlsMode.NONE.value, "None"), SelectChoice(TlsMode.STARTTLS.value, "STARTTLS"),
        SelectChoice(TlsMode.SSL.value, "SMTP over TLS (SSL)"),
    ], default=TlsMode.STARTTLS.value)
    username = StringField("Username", validators=[Optional(), Length(max=320)])
    password = PasswordField("Password", validators=[Optional(), Length(max=services.PASSWORD_MAX)])
    remove_password = BooleanField("Remove the stored password")
    max_connections = IntegerField("Max connections", default=4,
                                   validators=[InputRequired(), NumberRange(1, services.MAX_CONNECTIONS)])
    rate_per_second = StringField("Messages per second (0: no limit)", default="0")
    cap_per_hour = IntegerField("Cap per hour (0: none)", default=0,
                                validators=[InputRequired(), NumberRange(0, services.MAX_CAP)])
    cap_per_day = IntegerField("Cap per day (0: none)", default=0,
                               validators=[InputRequired(), NumberRange(0, services.MAX_CAP)])
    backup_relay_id = SelectField("Backup relay", coerce=int, validate_choice=False, default=0)
    enabled = BooleanField("Enabled", default=True)
    is_default = BooleanField("Default relay (instead of MAIL_SERVER)")

    def relay_data(self) -> dict[str, Any]:
        names = ("name", "host", "port", "tls_mode", "username", "max_connections", "rate_per_second",
                 "cap_per_hour", "cap_per_day", "backup_relay_id", "enabled", "is_default")
        data = {name: getattr(self, name).data for name in names}
        if self.remove_password.data:
            data["password"] = None
        elif self.password.data:
            data["password"] = self.password.data
        return data


class IdentityForm(FlaskForm):
    name = StringField("Name", validators=[InputRequired(), Length(max=services.NAME_MAX)])
    from_name = StringField("From name", validators=[Optional(), Length(max=200)])
    from_email = StringField("From email", validators=[InputRequired(), Length(max=320)])
    reply_to = StringField("Reply-to (optional)", validators=[Optional(), Length(max=320)])
    relay_id = SelectField("Relay", coerce=int, validate_choice=False, default=0)

    def identity_data(self) -> dict[str, Any]:
        return {name: getattr(self, name).data or ("" if name != "relay_id" else None)
                for name in ("name", "from_name", "from_email", "reply_to", "relay_id")}
