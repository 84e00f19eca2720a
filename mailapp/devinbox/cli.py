"""`flask --app wsgi devinbox serve`: the built-in dev SMTP server (filled in by the devinbox area)."""

from flask.cli import AppGroup

devinbox_cli = AppGroup("devinbox", help="The built-in development SMTP server.")
