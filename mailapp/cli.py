"""CLI commands: `flask --app wsgi users ...` and `flask --app wsgi tokens ...`."""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import AppGroup

from mailapp.errors import MailappError

users_cli = AppGroup("users", help="Manage dashboard users.")
tokens_cli = AppGroup("tokens", help="Manage API tokens.")
broker_cli = AppGroup("broker", help="The Celery broker.")


@users_cli.command("create")
@click.argument("email")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
@click.option("--admin/--no-admin", default=True, help="An owner (--admin) or an editor.")
@click.option("--role", type=click.Choice(["owner", "editor", "viewer"]), default=None,
              help="The user's role; overrides --admin.")
def create_user_command(email: str, password: str, admin: bool, role: str | None) -> None:
    from mailapp.auth.services import create_user
    from mailapp.extensions import db
    from mailapp.models import Role

    try:
        user = create_user(email, password, is_admin=admin, role=Role(role) if role else None)
    except MailappError as error:
        raise click.ClickException(error.message) from error
    db.session.commit()
    click.echo(f"Created user {user.email} ({user.role})")


@users_cli.command("set-password")
@click.argument("email")
@click.option("--password", prompt="New password", hide_input=True, confirmation_prompt=True,
              help="The new password (prompted for, twice and hidden, when left out).")
def set_password_command(email: str, password: str) -> None:
    """Set EMAIL's password, and sign that user out of every browser."""
    from mailapp.auth.services import set_password
    from mailapp.extensions import db

    try:
        user = set_password(email, password)
    except MailappError as error:
        raise click.ClickException(error.message) from error
    db.session.commit()
    click.echo(f"Password set for {user.email}; every session of that user is signed out.")


@users_cli.command("ensure-admin")
def ensure_admin_command() -> None:
    """Create the first admin from MAILAPP_ADMIN_EMAIL/PASSWORD, or with a generated password."""
    from mailapp.auth.services import ensure_first_admin
    from mailapp.extensions import db

    created = ensure_first_admin()
    db.session.commit()
    if created is None:
        click.echo("An admin user already exists.")
        return
    email, password, generated = created
    click.echo(f"Created admin {email}")
    if generated:
        click.echo(f"Generated password (shown once): {password}")


@tokens_cli.command("create")
@click.argument("email")
@click.option("--name", default="cli", help="A label to recognise the token by.")
@click.option("--role", type=click.Choice(["owner", "editor", "viewer"]), default=None,
              help="What the token may do (at most the user's role, which is the default).")
def create_token_command(email: str, name: str, role: str | None) -> None:
    """Print a new API token for EMAIL as the last line of output."""
    from mailapp.auth.services import create_api_token
    from mailapp.extensions import db
    from mailapp.models import Role

    try:
        token = create_api_token(email, name=name, role=Role(role) if role else None)
    except MailappError as error:
        raise click.ClickException(error.message) from error
    db.session.commit()
    click.echo("API token (shown once, keep it safe):")
    click.echo(token)


@broker_cli.command("prepare")
def prepare_broker_command() -> None:
    """Declare the task queue before worker and beat start: on the SQLite broker both would otherwise
    race to create the same queue row, and the loser exits on a unique-constraint error."""
    from flask import current_app

    celery_app = current_app.extensions["celery"]
    with celery_app.connection_for_write() as connection:
        connection.default_channel.queue_declare(queue=celery_app.conf.task_default_queue)
    click.echo(f"Queue {celery_app.conf.task_default_queue!r} is ready.")


def init_app(app: Flask) -> None:
    app.cli.add_command(users_cli)
    app.cli.add_command(tokens_cli)
    app.cli.add_command(broker_cli)
    from mailapp.devinbox.cli import devinbox_cli

    app.cli.add_command(devinbox_cli)
    from mailapp.inbound.cli import inbound_cli

    app.cli.add_command(inbound_cli)
