"""Entry point for gunicorn (`wsgi:app`), Celery (`wsgi:celery_app`) and `flask --app wsgi`."""

from mailapp import create_app

app = create_app()
celery_app = app.extensions["celery"]
