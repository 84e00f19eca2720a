"""The users page's forms: invite, role change, the two-factor requirement, and accepting an invite."""

from flask_wtf import FlaskForm
from wtforms import BooleanField, PasswordField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, EqualTo, Length

from mailapp.models import Role

ROLE_CHOICES = [SelectChoice(role.value, role.value) for role in reversed(Role)]


class InviteForm(FlaskForm):
    email = StringField("Email", validators=[DataRequired(), Length(max=320)])
    role = SelectField("Role", choices=ROLE_CHOICES, default=Role.EDITOR.value)


class RoleForm(FlaskForm):
    role = SelectField("Role", choices=ROLE_CHOICES)
    can_export = BooleanField("May export personal data")


class TwoFactorPolicyForm(FlaskForm):
    required = BooleanField("Require two-factor sign-in for everyone")


class AcceptInviteForm(FlaskForm):
    name = StringField("Your name", validators=[DataRequired(), Length(max=200)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])
    confirm_password = PasswordField(
        "Password again",
        validators=[DataRequired(), EqualTo("password", message="The two passwords differ.")],
    )
