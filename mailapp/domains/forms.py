"""Forms of the sending domains area: adding a domain."""

from flask_wtf import FlaskForm
from wtforms import BooleanField, StringField
from wtforms.validators import Length, Optional

from mailapp.models.sending_domain import DOMAIN_MAX_LENGTH, SELECTOR_MAX_LENGTH


class DomainForm(FlaskForm):
    # Checked by services.normalize_domain / normalize_selector, so the message says what is wrong.
    domain = StringField("Domain", validators=[Length(max=4 * DOMAIN_MAX_LENGTH)])
    selector = StringField("Selector (optional)", validators=[Optional(), Length(max=SELECTOR_MAX_LENGTH)])
    ed25519 = BooleanField("Also sign with Ed25519 (RFC 8463): a second, short key beside the RSA one")
