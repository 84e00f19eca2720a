"""`flask --app wsgi inbound serve`: the inbound SMTP receiver for bounces, complaints and mailto
unsubscribes (the Procfile's `inbound` process)."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup

inbound_cli = AppGroup("inbound", help="Bounces and complaints that arrive by mail.")


@inbound_cli.command("serve")
@click.option("--host", default=None, help="Address to listen on (default INBOUND_SMTP_HOST).")
@click.option("--port", default=None, type=int, help="Port to listen on (default INBOUND_SMTP_PORT).")
def serve_command(host: str | None, port: int | None) -> None:
    """Receive bounces, complaint reports and mailto unsubscribes for BOUNCE_DOMAIN and the
    INBOUND_FEEDBACK_ADDRESSES; refuse every other recipient."""
    from mailapp.inbound.receiver import serve

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    host = host or app.config["INBOUND_SMTP_HOST"]
    port = port or int(app.config["INBOUND_SMTP_PORT"])
    addresses = [f"VERP addresses @{app.config['BOUNCE_DOMAIN']}"] if app.config.get("BOUNCE_DOMAIN") else []
    addresses += app.config.get("INBOUND_FEEDBACK_ADDRESSES") or []
    accepted = ", ".join(addresses) or "nobody: set BOUNCE_DOMAIN or INBOUND_FEEDBACK_ADDRESSES"

    def ready() -> None:
        # Unconfigured, it still runs (refusing every recipient): a process manager starting every
        # Procfile line must not see it exit.
        click.echo(f"Inbound SMTP receiver listening on {host}:{port}; accepting {accepted}", err=True)

    try:
        serve(app, host, port, on_ready=ready)
    except OSError as error:
        raise click.ClickException(f"Cannot listen on {host}:{port}: {error.strerror or error}") from error
