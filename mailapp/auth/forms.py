"""Sign-in (password and two-factor code), password change and reset, and API token forms."""

from flask_wtf import FlaskForm
from wtforms import BooleanField, IntegerField, PasswordField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, EqualTo, Length, NumberRange, Optional

from mailapp.models import Role


class LoginForm(FlaskForm):
    email = StringField("Email", validators=[DataRequired(), Length(max=320)])
    password = PasswordField("Password", validators=[DataRequired()])
    remember = BooleanField("Keep me signed in")




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
