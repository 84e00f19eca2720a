"""API: SMTP relays (with "Test connection") and sender identities. A relay's password can be set or
removed, never read: its JSON says password_set."""

from __future__ import annotations

from flask import Response
from sqlalchemy import select

from mailapp.api.common import json_body, paginated
from mailapp.api.routes import bp
from mailapp.extensions import db
from mailapp.models import SenderIdentity, SmtpRelay
from mailapp.relays import services


@bp.get("/relays")
def api_relays():
    return paginated(select(SmtpRelay).order_by(SmtpRelay.id), services.relay_to_dict)


@bp.post("/relays")
def api_create_relay():
    relay = services.create_relay(json_body())
    db.session.commit()
    return services.relay_to_dict(relay), 201


@bp.get("/relays/<int:relay_id>")
def api_get_relay(relay_id: int):
    return services.relay_to_dict(services.get_relay(relay_id))


@bp.patch("/relays/<int:relay_id>")
def api_update_relay(relay_id: int):
    relay = services.update_relay(relay_id, json_body())
    db.session.commit()
    return services.relay_to_dict(relay)


@bp.delete("/relays/<int:relay_id>")
def api_delete_relay(relay_id: int):
    services.delete_relay(relay_id)
    db.session.commit()
    return Response(status=204)


@bp.post("/relays/<int:relay_id>/test")
def api_test_relay(relay_id: int):
    result = services.test_connection(relay_id)
    db.session.rollback()
    return result


@bp.get("/sender-identities")
def api_identities():
    return paginated(select(SenderIdentity).order_by(SenderIdentity.id), services.identity_to_dict)


@bp.post("/sender-identities")
def api_create_identity():
    identity = services.create_identity(json_body())
    db.session.commit()
    return services.identity_to_dict(identity), 201


@bp.get("/sender-identities/<int:identity_id>")
def api_get_identity(identity_id: int):
    return services.identity_to_dict(services.get_identity(identity_id))


@bp.patch("/sender-identities/<int:identity_id>")
def api_update_identity(identity_id: int):
    identity = services.update_identity(identity_id, json_body())
    db.session.commit()
    return services.identity_to_dict(identity)


@bp.delete("/sender-identities/<int:identity_id>")
def api_delete_identity(identity_id: int):
    services.delete_identity(identity_id)
    db.session.commit()
    return Response(status=204)
