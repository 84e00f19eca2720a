"""Sign-in (password and two-factor code), password change and reset, account settings, and API token
forms."""

from flask_wtf import FlaskForm
from wtforms import BooleanField, HiddenField, IntegerField, PasswordField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, EqualTo, Length, NumberRange, Optional

from mailapp.models import Role
from mailapp.timezones import ZONE_NAME_MAX_LENGTH, zone_names


class LoginForm(FlaskForm):
    email = StringField("Email", validators=[DataRequired(), Length(max=320)])
    password = PasswordField("Password", validators=[DataRequired()])
    remember = BooleanField("Keep me signed in")
    # Filled by static/js/app.js with the browser's zone: a user's first sign-in sets their setting.
    browser_timezone = HiddenField(validators=[Length(max=ZONE_NAME_MAX_LENGTH)])




class CodeForm(FlaskForm):
    code = StringField("Code", validators=[DataRequired(), Length(max=64)])


class ForgotPasswordForm(FlaskForm):
    email = StringField("Email", validators=[DataRequired(), Length(max=320)])


class NewPasswordForm(FlaskForm):
    # The length rule is the service's, reported on this field.
    new_password = PasswordField("New password", validators=[DataRequired(), Length(max=1024)])
    confirm_password = PasswordField(
        "New password again",
        validators=[DataRequired(), EqualTo("new_password", message="The two new passwords differ.")],
    )


class ChangePasswordForm(NewPasswordForm):
    current_password = PasswordField("Current password", validators=[DataRequired()])


class TokenForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=200)])
    role = SelectField("Role", choices=[SelectChoice(role.value, role.value) for role in Role])
    expires_in_days = IntegerField(
        "Expires after (days, empty for never)", validators=[Optional(), NumberRange(min=1, max=3650)]
    )
class TimezoneForm(FlaskForm):
    """The zone the dashboard shows times in; the services check the name (validate_choice would list
    all 600 choices in its error)."""

    timezone = SelectField("Time zone", validate_choice=False)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.timezone.choices = [("", "— choose —"), *((name, name) for name in zone_names())]
