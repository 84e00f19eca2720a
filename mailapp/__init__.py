"""mailapp: a self-hosted email newsletter service. create_app builds the Flask app."""

from __future__ import annotations

import importlib
from pathlib import Path

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from config import Config, apply_derived_settings, config_from_env

API_ENDPOINT_MODULES = (
    "audit", "campaigns", "layouts", "lists", "openapi", "relays", "reports", "segments",
    "sending_domains", "signup", "subscribers", "suppressions",
)


def create_app(config: Config | None = None) -> Flask:
    if config is None:
        config = config_from_env()
    # Every process (web, worker, beat, the CLI) builds the app first, so the instance folder exists
    # before anything opens a file in it: beat's schedule, the embedded default's SQLite files.
    instance_dir = Path(config.INSTANCE_DIR).resolve()
    # Its owner's only: on the embedded default it holds the whole database.
    instance_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    app = Flask(__name__, instance_path=str(instance_dir), instance_relative_config=False)
    app.config.from_object(config)
    apply_derived_settings(app.config)
    if not app.config.get("SECRET_KEY"):
        raise RuntimeError("SECRET_KEY is not set")
    from mailapp.ids import IdConverter

    # Before any blueprint adds its rules: every <int:...> in a path is an id in the BIGINT range.
    app.url_map.converters["int"] = IdConverter

    import mailapp.models  # every table on the metadata, for Alembic
    from mailapp import db_setup
    from mailapp.celery_app import celery_init_app
    from mailapp.extensions import db, mail, migrate
    from mailapp.web_extensions import bootstrap, csrf, login_manager

    db.init_app(app)
    db_setup.configure_engine_events(app)
    migrate.init_app(app, db, directory=str(_migrations_dir()), render_as_batch=True)
    csrf.init_app(app)
    mail.init_app(app)
    login_manager.init_app(app)
    bootstrap.init_app(app)
    celery_init_app(app)
    # Importing the task modules registers their @shared_task functions with the worker.
    import mailapp.campaigns.tasks
    import mailapp.inbound.tasks
    import mailapp.reports.tasks
    import mailapp.sending.tasks
    import mailapp.subscribers.tasks
    import mailapp.tracking.tasks
    import mailapp.webhooks.tasks  # noqa: F401

    _register_blueprints(app)

    from mailapp import cli, web

    web.init_app(app)
    cli.init_app(app)
    from mailapp.tracking import fast_pixel

    fast_pixel.install(app)
    if proxies := app.config["TRUSTED_PROXIES"]:
        # Outermost, so the pixel's fast path and the login throttle both see the client's address.
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies
        )
    return app


def _migrations_dir():  # a Path, imported lazily
    from pathlib import Path

    return Path(__file__).resolve().parent.parent / "migrations"


def _register_blueprints(app: Flask) -> None:
    from mailapp.api.routes import API_PREFIX
    from mailapp.api.routes import bp as api_bp
    from mailapp.audit.routes import bp as audit_bp
    from mailapp.auth.routes import bp as auth_bp
    from mailapp.campaigns.routes import bp as campaigns_bp
    from mailapp.dashboard.routes import bp as dashboard_bp
    from mailapp.deliverability.routes import bp as deliverability_bp
    from mailapp.devinbox.routes import bp as devinbox_bp
    from mailapp.domains.routes import bp as domains_bp
    from mailapp.layouts.routes import bp as layouts_bp
    from mailapp.layouts.routes import media_bp
    from mailapp.relays.routes import bp as relays_bp
    from mailapp.reports.routes import bp as reports_bp
    from mailapp.segments.routes import bp as segments_bp
    from mailapp.signup.routes import bp as signup_bp
    from mailapp.subscribers.routes import bp as subscribers_bp
    from mailapp.tracking.routes import bp as tracking_bp
    from mailapp.users.routes import bp as users_bp
    from mailapp.web_extensions import csrf
    from mailapp.webhooks.routes import bp as webhooks_bp

    # The API's endpoint modules add their routes to its blueprint as they are imported, so all of
    # them must be loaded before it is registered.
    for endpoint_module in API_ENDPOINT_MODULES:
        importlib.import_module(f"mailapp.api.{endpoint_module}")
    app.register_blueprint(auth_bp)
    app.register_blueprint(dashboard_bp)
    app.register_blueprint(users_bp, url_prefix="/users")
    app.register_blueprint(audit_bp, url_prefix="/audit")
    app.register_blueprint(layouts_bp, url_prefix="/layouts")
    app.register_blueprint(media_bp)
    app.register_blueprint(subscribers_bp)
    app.register_blueprint(campaigns_bp, url_prefix="/campaigns")
    app.register_blueprint(reports_bp, url_prefix="/reports")
    app.register_blueprint(deliverability_bp, url_prefix="/suppressions")
    app.register_blueprint(domains_bp, url_prefix="/domains")
    app.register_blueprint(relays_bp, url_prefix="/relays")
    app.register_blueprint(segments_bp, url_prefix="/segments")
    app.register_blueprint(devinbox_bp, url_prefix="/dev/inbox")
    app.register_blueprint(tracking_bp)
    app.register_blueprint(signup_bp)
    # The API authenticates with bearer tokens, not cookies, so CSRF does not apply; the tracking
    # endpoints are public, and RFC 8058 one-click POSTs come with no token by design.
    csrf.exempt(api_bp)
    csrf.exempt(tracking_bp)
    # Providers' webhooks carry their own signature or credentials, and no cookie at all.
    csrf.exempt(webhooks_bp)
    app.register_blueprint(webhooks_bp)
    app.register_blueprint(api_bp, url_prefix=API_PREFIX)
