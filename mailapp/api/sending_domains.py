"""API: sending domains. POST takes JSON {domain, selector?, ed25519?} and answers the domain with the
DNS records to publish; private keys are never returned (only which ones are stored)."""

from __future__ import annotations

from flask import jsonify
from sqlalchemy import select

from mailapp.api.common import json_body, paginated
from mailapp.api.routes import bp
from mailapp.domains import services
from mailapp.errors import ValidationError
from mailapp.extensions import db
from mailapp.models import SendingDomain

CREATE_FIELDS = ("domain", "selector", "ed25519")


@bp.get("/sending-domains")
def list_sending_domains():
    settings = services.DomainSettings.for_current_app()
    statement = select(SendingDomain).order_by(SendingDomain.id)
    return jsonify(paginated(statement, lambda row: services.serialize_domain(row, settings)))


@bp.post("/sending-domains")
def create_sending_domain():
    body = json_body()
    unknown = sorted(set(body) - set(CREATE_FIELDS))
    if unknown:
        raise ValidationError(f"Unknown field: {', '.join(unknown)}.",
                              [{"field": name, "message": "Unknown field."} for name in unknown])
    ed25519 = body.get("ed25519", False)
    if not isinstance(ed25519, bool):
        raise ValidationError("ed25519 must be true or false.", [{"field": "ed25519"}])
    if "domain" not in body:
        raise ValidationError("Missing: domain.", [{"field": "domain", "message": "Required."}])
    sending_domain = services.create_domain(body["domain"], selector=body.get("selector"), ed25519=ed25519)
    db.session.commit()
    return jsonify(services.serialize_domain(sending_domain)), 201


@bp.get("/sending-domains/<int:domain_id>")
def get_sending_domain(domain_id: int):
    return jsonify(services.serialize_domain(services.get_domain(domain_id)))


@bp.delete("/sending-domains/<int:domain_id>")
def delete_sending_domain(domain_id: int):
    services.delete_domain(services.get_domain(domain_id))
    db.session.commit()
    return "", 204


@bp.post("/sending-domains/<int:domain_id>/check")
def check_sending_domain(domain_id: int):
    """Looks the records up now; the answer is the domain with this check as its last_check."""
    sending_domain = services.get_domain(domain_id)
    services.check_domain(sending_domain)
    db.session.commit()
    return jsonify(services.serialize_domain(sending_domain))
