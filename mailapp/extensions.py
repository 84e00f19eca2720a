"""Flask extensions every process uses (database, migrations, mail), created unbound here and
initialised in create_app. The web-only ones live in web_extensions.py, so that a worker importing the
send engine loads no form or login code."""

from flask_mail import Mail
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy

from mailapp.models.base import Base

db = SQLAlchemy(model_class=Base)
migrate = Migrate()
mail = Mail()
