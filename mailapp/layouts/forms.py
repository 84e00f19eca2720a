"""Forms of the layouts area: the layout editor (paste or upload) and the preview recipient picker."""

from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import EmailField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional

from mailapp.layouts.services import NAME_MAX_LENGTH


class LayoutForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=NAME_MAX_LENGTH)])
    # HTML, or MJML (recognised by its <mjml> root): the visual editor posts its MJML here too.
    html = TextAreaField("HTML", validators=[Optional()])
    # Checked by services.decode_layout_file (extension, size, UTF-8), so the message says what is wrong.
    file = FileField("…or upload an .html or .mjml file (it replaces the text above)")


class PreviewForm(FlaskForm):
    """A GET form: picks the subscriber whose data the preview shows."""

    class Meta:
        csrf = False

    email = EmailField("Preview as subscriber", validators=[Optional(), Length(max=320)])
