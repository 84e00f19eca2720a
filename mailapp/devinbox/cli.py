"""`flask --app wsgi devinbox serve`: the built-in dev SMTP server, storing mail for the Dev inbox page."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup

devinbox_cli = AppGroup("devinbox", help="The built-in development SMTP server.")


@devinbox_cli.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=1025, show_default=True, type=int, help="Port to listen on.")
@click.option(
    "--max-messages",
    default=None,
    type=click.IntRange(min=1),
    help="Keep at most this many messages; the oldest are deleted (default DEVINBOX_MAX_MESSAGES or 5000).",
)
def serve_command(host: str, port: int, max_messages: int | None) -> None:
    """Accept every message sent to HOST:PORT and store it in DEVINBOX_DIR, for the Dev inbox page.
    Nothing is relayed: no mail leaves this machine."""
    from mailapp.devinbox.server import serve
    from mailapp.devinbox.store import inbox_for_app

    inbox = inbox_for_app(current_app, max_messages)

    def ready() -> None:
        click.echo(f"Dev SMTP server listening on {host}:{port}; storing mail in {inbox.directory}", err=True)
        click.echo(f"(keeping the newest {inbox.max_messages:,} messages; Ctrl-C stops)", err=True)

    try:
        serve(inbox, host, port, on_ready=ready)
    except OSError as error:
        raise click.ClickException(f"Cannot listen on {host}:{port}: {error.strerror or error}") from error
