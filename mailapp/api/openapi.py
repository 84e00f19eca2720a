"""The OpenAPI 3.1 document of the JSON API, served at GET /api/v1/openapi.json. It is built here by hand
beside the views it describes; tests/test_openapi.py keeps its operations equal to the URL map, and
tests/test_api_fuzz.py (schemathesis) holds every response to it."""

from __future__ import annotations

from typing import Any

from flask import jsonify

from mailapp.api.common import MAX_PER_PAGE
from mailapp.api.routes import API_PREFIX, bp
from mailapp.campaigns.services import FIELD_LIMITS, MAX_TEST_RECIPIENTS
from mailapp.ids import MAX_ID, MAX_PAGE, MIN_ID
from mailapp.json_nesting import MAX_JSON_DEPTH
from mailapp.models.campaign import CampaignStatus
from mailapp.models.delivery import DeliveryStatus
from mailapp.models.relay import TlsMode
from mailapp.models.sending_domain import SELECTOR_MAX_LENGTH
from mailapp.models.subscriber import ImportStatus, SubscriberStatus
from mailapp.models.suppression import SuppressionReason
from mailapp.models.system_message import SystemMessageKind, SystemMessageStatus
from mailapp.relays import services as relay_services
from mailapp.segment_rules import MAX_DAYS, MAX_DEPTH, MAX_IN_VALUES, MAX_KEY_LENGTH, MAX_NODES, RULE_FIELDS
from mailapp.segments.services import MAX_RESEND_DELAY_HOURS
from mailapp.segments.services import NAME_MAX as SEGMENT_NAME_MAX
from mailapp.subscribers.subscriber_lists import LIST_NAME_MAX

Schema = dict[str, Any]

JSON = "application/json"
ID: Schema = {"type": "integer", "minimum": MIN_ID, "maximum": MAX_ID}
TIME: Schema = {"type": "string", "format": "date-time"}
NULLABLE_TIME: Schema = {"type": ["string", "null"], "format": "date-time"}
COUNT: Schema = {"type": "integer", "minimum": 0}
STRING: Schema = {"type": "string"}
RATE: Schema = {"type": "number", "minimum": 0}


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(properties: dict[str, Schema], required: list[str] | None = None, *,
            closed: bool = False) -> Schema:
    schema: Schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    if closed:
        schema["additionalProperties"] = False
    return schema


def _every_field(properties: dict[str, Schema]) -> Schema:
    """An object whose every property is always present."""
    return _object(properties, list(properties))


def _enum(values: type) -> Schema:
    return {"type": "string", "enum": [member.value for member in values]}


def _page_of(item: str) -> Schema:
    return _object(
        {"items": {"type": "array", "items": _ref(item)}, "page": {"type": "integer", "minimum": 1},
         "per_page": {"type": "integer", "minimum": 1}, "total": COUNT},
        ["items", "page", "per_page", "total"],
    )


# One entry of an error's details; a kind of error may add keys (a template error's "line").
PROBLEM = _object({"field": {"type": ["string", "null"]}, "message": STRING}, ["field", "message"])
CAMPAIGN_STATS = _object({name: COUNT for name in ("total", "pending", "sent", "failed")},
                         ["total", "pending", "sent", "failed"])

NULLABLE_STRING: Schema = {"type": ["string", "null"]}

SCHEMAS: dict[str, Schema] = {
    "AuditEntry": _every_field(
        {"id": ID, "at": TIME, "user_id": {"type": ["integer", "null"]}, "user_email": NULLABLE_STRING,
         "token_name": NULLABLE_STRING, "action": STRING, "target_type": NULLABLE_STRING,
         "target_id": NULLABLE_STRING, "summary": STRING, "ip": NULLABLE_STRING},
    ),
    "Error": _object({"error": _object(
        {"code": STRING, "message": STRING, "details": {"type": "array", "items": PROBLEM}},
        ["code", "message", "details"],
    )}, ["error"]),
    "List": _every_field(
        {"id": ID, "name": {"type": "string"}, "description": {"type": "string"}, "created_at": NULLABLE_TIME,
         "subscriber_count": COUNT, "active_count": COUNT, "unsubscribed_count": COUNT,
         "blocklisted_count": COUNT, "bounced_count": COUNT},
    ),
    "Import": _every_field(
        {"id": ID, "list_id": {"type": ["integer", "null"]}, "filename": {"type": "string"},
         "status": _enum(ImportStatus), "total": COUNT, "processed": COUNT, "imported": COUNT,
         "updated": COUNT, "skipped": COUNT, "duplicates": COUNT, "invalid": COUNT,
         "errors": {"type": "array", "items": {"type": "object"}}, "failure": {"type": ["string", "null"]},
         "created_at": NULLABLE_TIME, "finished_at": NULLABLE_TIME,
         # Each writer's share (PostgreSQL runs IMPORT_WRITERS of them): its counters add up to the import's.
         "parts": {"type": "array", "items": _every_field(
             {"part": COUNT, "processed": COUNT, "imported": COUNT, "updated": COUNT, "skipped": COUNT,
              "invalid": COUNT})}},
    ),
    "Subscriber": _every_field(
        {"id": ID, "email": {"type": "string"}, "name": {"type": "string"}, "attributes": {"type": "object"},
         "status": _enum(SubscriberStatus), "created_at": NULLABLE_TIME, "updated_at": NULLABLE_TIME,
         "unsubscribed_at": NULLABLE_TIME, "unsubscribed_campaign_id": {"type": ["integer", "null"]},
         "list_ids": {"type": "array", "items": ID}},
    ),
    "SystemMessage": _every_field(
        {"id": ID, "kind": _enum(SystemMessageKind), "list_id": {"type": ["integer", "null"]},
         "email": {"type": "string"}, "subject": {"type": "string"}, "status": _enum(SystemMessageStatus),
         "attempts": COUNT, "smtp_code": {"type": ["integer", "null"]}, "error": {"type": "string"},
         "message_id": {"type": "string"}, "created_at": NULLABLE_TIME, "sent_at": NULLABLE_TIME},
    ),
    "SubscriberDetail": {"allOf": [_ref("Subscriber"), _object(
        {"system_messages": {"type": "array", "items": _ref("SystemMessage"),
                             "description": "The newest confirmation and welcome emails, newest first."}},
        ["system_messages"])]},
    "LayoutSummary": _object(
        {"id": ID, "name": {"type": "string"},
         "kind": {"type": "string", "enum": ["html", "mjml"],
                  "description": "What the layout is written in: html, or mjml (compiled to html on save)."},
         "variables": {"type": "array", "items": {"type": "string"}},
         "warnings": {"type": "array", "items": {"type": "string"}}, "created_at": TIME, "updated_at": TIME},
        ["id", "name", "kind", "variables", "warnings", "created_at", "updated_at"],
    ),
    "Layout": {"allOf": [_ref("LayoutSummary"), _object(
        {"html": {"type": "string", "description": "The HTML campaigns send (compiled from mjml if any)."},
         "mjml": {"type": ["string", "null"], "description": "The MJML source; null for an html layout."}},
        ["html", "mjml"],
    )]},
    "Campaign": _object(
        {"id": ID, "name": {"type": "string"}, "status": _enum(CampaignStatus),
         "status_reason": {"type": ["string", "null"]}, "subject": {"type": "string"},
         "from_name": {"type": "string"}, "from_email": {"type": "string"}, "reply_to": {"type": "string"},
         "layout_id": {"type": ["integer", "null"]},
         "list_ids": {"type": "array", "items": ID}, "segment_ids": {"type": "array", "items": ID},
         "message": {"type": "string"}, "track_opens": {"type": "boolean"},
         "track_clicks": {"type": "boolean"},
         "send_at": NULLABLE_TIME, "send_timezone": {"type": "string"},
         "started_at": NULLABLE_TIME, "finished_at": NULLABLE_TIME,
         "created_at": NULLABLE_TIME, "stats": CAMPAIGN_STATS,
         "sender_identity_id": {"type": ["integer", "null"]}, "relay_id": {"type": ["integer", "null"]}},
        ["id", "name", "status", "subject", "from_name", "from_email", "reply_to", "layout_id", "list_ids",
         "segment_ids", "message", "track_opens", "track_clicks", "send_at", "started_at", "finished_at",
         "created_at", "stats", "sender_identity_id", "relay_id"],
    ),
    "SegmentRules": {
        "description": (
            f"A group {{all: [...]}} or {{any: [...]}} of rules and groups (at most {MAX_DEPTH} levels, "
            f"{MAX_NODES} nodes), or one rule {{field, op, value, key}}. Fields and their ops: "
            + "; ".join(f"{field}: {', '.join(ops)}" for field, ops in RULE_FIELDS.items())
            + f". attribute rules name the attribute in key (at most {MAX_KEY_LENGTH} characters); equals "
            "takes a string, number or boolean (types compare strictly), contains a string, gt/gte/lt/lte a "
            f"number, in a list of at most {MAX_IN_VALUES} values, exists nothing. list: value is a list id. "
            "status: value is a subscriber status. subscribed (the subscription date): before/after take a "
            f"date (YYYY-MM-DD) or a time with offset, within_days 0..{MAX_DAYS}. activity: opened, clicked, "
            "not_opened, not_clicked take a campaign id (not_*: among those it was sent to), "
            "opened_within_days a number of days, never_opened nothing. Opens are human opens or clicks."
        ),
        "oneOf": [
            _object({"all": {"type": "array", "minItems": 1, "items": _ref("SegmentRules")}}, ["all"],
                    closed=True),
            _object({"any": {"type": "array", "minItems": 1, "items": _ref("SegmentRules")}}, ["any"],
                    closed=True),
            _object({
                "field": {"type": "string", "enum": list(RULE_FIELDS)},
                "op": {"type": "string", "enum": sorted({op for ops in RULE_FIELDS.values() for op in ops})},
                "key": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH},
                "value": {"type": ["string", "number", "boolean", "array"]},
            }, ["field", "op"], closed=True),
        ],
    },
    "Segment": _every_field(
        {"id": ID, "name": STRING, "rules": _ref("SegmentRules"), "created_at": NULLABLE_TIME,
         "updated_at": NULLABLE_TIME},
    ),
    "SegmentCount": _every_field({"count": COUNT, "recipients": COUNT}),
    "Delivery": _object(
        {"id": ID, "subscriber_id": {"type": ["integer", "null"]}, "email": {"type": "string"},
         "status": _enum(DeliveryStatus), "attempts": COUNT, "sent_at": NULLABLE_TIME,
         "message_id": {"type": ["string", "null"]}, "smtp_code": {"type": ["integer", "null"]},
         "error": {"type": ["string", "null"]}, "relay_name": STRING},
        ["id", "subscriber_id", "email", "status", "attempts", "sent_at", "message_id", "smtp_code", "error",
         "relay_name"],
    ),
    "DeliveryKeysetPage": _object(
        {"items": {"type": "array", "items": _ref("Delivery")}, "per_page": {"type": "integer", "minimum": 1},
         "after": {"type": ["integer", "null"]}, "next_after": {"type": ["integer", "null"]}},
        ["items", "per_page", "after", "next_after"],
    ),
    "Suppression": _every_field(
        {"email": STRING, "reason": _enum(SuppressionReason), "source": STRING, "detail": STRING,
         "campaign_id": {"type": ["integer", "null"]}, "created_at": TIME},
    ),
    "SuppressionImport": _every_field(
        {"lines": COUNT, "added": COUNT, "already_suppressed": COUNT},
    ),
    "SendingDomain": _every_field(
        {"id": ID, "domain": {"type": "string", "description": "Lower case, IDNA (xn--) form."},
         "domain_unicode": {"type": "string"}, "selector": {"type": "string"},
         "ed25519_selector": {"type": ["string", "null"]},
         "private_keys": {"type": "array", "items": {"enum": ["rsa-sha256", "ed25519-sha256"]},
                          "description": "The keys stored (sealed): private keys are never returned."},
         "records": {"type": "array", "items": _every_field(
             {"purpose": {"enum": ["dkim", "dkim-ed25519", "spf", "dmarc"]}, "type": {"const": "TXT"},
              "name": STRING, "value": STRING,
              "strings": {"type": "array", "items": {"type": "string", "maxLength": 255}},
              "zone": STRING})},
         "created_at": TIME,
         "last_check": {"oneOf": [{"type": "null"}, _every_field(
             {"checked_at": TIME, "passed": {"type": "boolean"},
              "findings": {"type": "array", "items": _every_field(
                  {"record": {"enum": ["dkim", "dkim-ed25519", "spf", "dmarc"]},
                   "status": {"enum": ["ok", "warning", "error"]}, "message": STRING})}})]}},
    ),
    "Report": _every_field(
        {"recipients": COUNT, "sent": COUNT, "failed": COUNT, "unique_opens": COUNT, "opens": COUNT,
         "machine_opens": COUNT, "proxy_opens": COUNT, "open_rate": RATE, "unique_clicks": COUNT,
         "clicks": COUNT, "click_rate": RATE, "unsubscribes": COUNT,
         "hard_bounces": COUNT, "hard_bounce_rate": RATE, "soft_bounces": COUNT, "soft_bounce_rate": RATE,
         "complaints": COUNT, "complaint_rate": RATE,
         "timeline": {"type": "array", "items": _object(
             {"at": TIME, "opens": COUNT, "clicks": COUNT, "hard_bounces": COUNT, "soft_bounces": COUNT,
              "complaints": COUNT},
             ["at", "opens", "clicks", "hard_bounces", "soft_bounces", "complaints"])},
         "top_links": {"type": "array", "items": _object(
             {"url": {"type": "string"}, "clicks": COUNT, "unique_clicks": COUNT},
             ["url", "clicks", "unique_clicks"])}},
    ),
}

SCHEMAS.update({
    "Relay": _every_field(
        {"id": ID, "name": STRING, "host": STRING,
         "port": {"type": "integer", "minimum": 1, "maximum": 65535}, "tls_mode": _enum(TlsMode),
         "username": STRING,
         "password_set": {"type": "boolean", "description": "The password itself is never shown."},
         "max_connections": {"type": "integer", "minimum": 1}, "rate_per_second": RATE,
         "cap_per_hour": COUNT, "cap_per_day": COUNT, "backup_relay_id": {"type": ["integer", "null"]},
         "enabled": {"type": "boolean"}, "is_default": {"type": "boolean"},
         "failed_over_until": NULLABLE_TIME, "failover_reason": STRING,
         "created_at": NULLABLE_TIME, "updated_at": NULLABLE_TIME},
    ),
    "RelayTest": _every_field(
        {"ok": {"type": "boolean"}, "greeting": STRING,
         "extensions": {"type": "array", "items": STRING}, "error": {"type": ["string", "null"]}},
    ),
    "SenderIdentity": _every_field(
        {"id": ID, "name": STRING, "from_name": STRING, "from_email": STRING, "reply_to": STRING,
         "relay_id": {"type": ["integer", "null"]},
         "domain": {"type": "string", "description": "The From address's domain."},
         "sending_domain_id": {"type": ["integer", "null"],
                               "description": "The sending domain whose DKIM key signs this identity's "
                                              "mail (the domain or a parent), or null: sent unsigned."},
         "created_at": NULLABLE_TIME, "updated_at": NULLABLE_TIME},
    ),
})

# --- request bodies ---------------------------------------------------------------------------------

LIST_FIELDS = {"name": {"type": "string", "minLength": 1, "maxLength": LIST_NAME_MAX},
               "description": {"type": "string"}}
SUBSCRIBER_FIELDS = {
    "email": {"type": "string", "format": "email", "maxLength": 320},
    "name": {"type": "string"},
    "attributes": {"type": "object", "description": f"A JSON object, nested at most {MAX_JSON_DEPTH} deep."},
    "status": _enum(SubscriberStatus),
    "list_ids": {"type": "array", "items": ID},
}
SUPPRESSION_FIELDS = {
    "email": {"type": "string", "format": "email", "maxLength": 320},
    "reason": _enum(SuppressionReason),
    "detail": {"type": "string", "maxLength": 2000},
}
LAYOUT_FIELDS = {
    "name": {"type": "string", "minLength": 1},
    "html": {"type": "string", "description": "The layout as HTML (or MJML, recognised by its <mjml> root)."},
    "mjml": {"type": "string", "description": (
        "The layout as MJML, compiled and validated on the server; problems name the MJML's line. "
        "Send html or mjml, not both."
    )},
}
NULLABLE_ID: Schema = {"anyOf": [ID, {"type": "null"}]}
RELAY_FIELDS = {
    "name": {"type": "string", "minLength": 1, "maxLength": relay_services.NAME_MAX},
    "host": {"type": "string", "minLength": 1, "maxLength": relay_services.HOST_MAX},
    "port": {"type": "integer", "minimum": 1, "maximum": 65535}, "tls_mode": _enum(TlsMode),
    "username": {"type": "string", "maxLength": 320},
    "password": {"type": ["string", "null"], "maxLength": relay_services.PASSWORD_MAX,
                 "description": "Write-only: sealed when stored. null or \"\" removes it."},
    "max_connections": {"type": "integer", "minimum": 1, "maximum": relay_services.MAX_CONNECTIONS},
    "rate_per_second": {"type": "number", "minimum": 0, "maximum": relay_services.MAX_RATE},
    "cap_per_hour": {"type": "integer", "minimum": 0, "maximum": relay_services.MAX_CAP},
    "cap_per_day": {"type": "integer", "minimum": 0, "maximum": relay_services.MAX_CAP},
    "backup_relay_id": NULLABLE_ID, "enabled": {"type": "boolean"}, "is_default": {"type": "boolean"},
}
IDENTITY_FIELDS = {
    "name": {"type": "string", "minLength": 1, "maxLength": relay_services.NAME_MAX},
    "from_name": {"type": "string", "maxLength": 200},
    "from_email": {"type": "string", "format": "email", "maxLength": 320},
    "reply_to": {"type": "string", "maxLength": 320}, "relay_id": NULLABLE_ID,
}
CAMPAIGN_FIELDS = {
    **{name: {"type": "string", "maxLength": limit} for name, limit in FIELD_LIMITS.items()},
    "layout_id": ID,
    "list_ids": {"type": "array", "items": ID,
                 "description": "Target lists; with segment_ids, at least one target in all."},
    "segment_ids": {"type": "array", "items": ID,
                    "description": "Target segments, applied at send time; each person gets one message."},
    "message": {"type": "string"},
    "track_opens": {"type": "boolean"},
    "track_clicks": {"type": "boolean"},
    "sender_identity_id": {**NULLABLE_ID, "description": "Fills from_name, from_email and reply_to where "
                                                         "they are not given."},
    "relay_id": {**NULLABLE_ID, "description": "null: the identity's relay, else the default one."},
}


SIGNUP_FIELDS: dict[str, Schema] = {
    "form": {"type": "string", "minLength": 1, "maxLength": 64, "description": "The form's address (slug)."},
    "email": {"type": "string", "maxLength": 320},
    "name": {"type": "string", "maxLength": 300},
    "lists": {"type": "array", "items": ID, "maxItems": 100,
              "description": "For a form whose visitors choose: which of its lists."},
    "attributes": {"type": "object", "description": "The form's extra fields."},
    "website": {"type": "string", "description": "The honeypot: leave it out or empty."},
    "altcha": {"type": "string", "maxLength": 4096,
               "description": "For a form with ALTCHA on: the solved challenge (the widget's base64 payload; "
                              "challenges from GET /s/{form}/altcha)."},
}


def _json_body(schema: Schema, *, required: bool = True, example: Schema | None = None) -> Schema:
    media_type: Schema = {"schema": schema}
    if example is not None:
        media_type["example"] = example
    return {"required": required, "content": {JSON: media_type}}


# --- operations -------------------------------------------------------------------------------------

ERROR_MEANINGS = {
    "400": "The request could not be read.",
    "401": "No valid bearer token (missing, unknown, revoked or expired).",
    "403": "The token's role (capped by its user's) is below what the operation needs; for the public "
           "signup, the request's Origin is not one the form allows.",
    "404": "No such object (or an id out of range).",
    "409": "A name or email already taken, or an action the object's state does not allow.",
    "413": "The body is over the size limit.",
    "429": "Too many signups for this address or form; details give retry_after seconds.",
    "422": "Bad input: details list each problem as {field, message}.",
}


def _operation(summary: str, ok: dict[str, Schema], errors: str, *, parameters: list[Schema] | None = None,
               body: Schema | None = None, public: bool = False) -> Schema:
    """ok: {status: response}; errors: the error statuses it may answer, space-separated."""
    responses: dict[str, Schema] = dict(ok)
    statuses = errors.split() + ([] if public else ["401", "403"])
    for status in sorted(set(statuses)):
        responses[status] = {"description": ERROR_MEANINGS[status],
                             "content": {JSON: {"schema": _ref("Error")}}}
    operation: Schema = {"summary": summary, "responses": responses}
    if parameters:
        operation["parameters"] = parameters
    if body is not None:
        operation["requestBody"] = body
    if public:
        operation["security"] = []
    return operation


def _json(schema: Schema, description: str = "OK") -> Schema:
    return {"description": description, "content": {JSON: {"schema": schema}}}


NO_CONTENT = {"204": {"description": "Deleted."}}


def _path_id(name: str) -> Schema:
    return {"name": name, "in": "path", "required": True, "schema": ID, "example": 1}


def _query(name: str, schema: Schema, description: str = "") -> Schema:
    parameter = {"name": name, "in": "query", "required": False, "schema": schema}
    if description:
        parameter["description"] = description
    return parameter


PAGE_PARAMETERS = [
    _query("page", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}),
    _query("per_page", {"type": "integer", "minimum": 1, "maximum": MAX_PER_PAGE}),
]


def _paths() -> dict[str, Schema]:
    list_id, subscriber_id = [_path_id("list_id")], [_path_id("subscriber_id")]
    layout_id, campaign_id = [_path_id("layout_id")], [_path_id("campaign_id")]
    email_path = [{"name": "email", "in": "path", "required": True, "example": "ann@example.com",
                   "schema": {"type": "string", "minLength": 1, "maxLength": 320}}]
    domain_id = [_path_id("domain_id")]
    campaign = {"200": _json(_ref("Campaign"))}
    relay_id, identity_id = [_path_id("relay_id")], [_path_id("identity_id")]

    def campaign_action(summary: str, ok: str = "200", errors: str = "404 409 422") -> Schema:
        return {"post": _operation(summary, {ok: _json(_ref("Campaign"))}, errors, parameters=campaign_id)}

    return {
        "/openapi.json": {"get": _operation(
            "This document.", {"200": _json({"type": "object"})}, "", public=True)},
        "/lists": {
            "get": _operation("Lists, by id.", {"200": _json(_page_of("List"))}, "422",
                              parameters=PAGE_PARAMETERS),
            "post": _operation("Create a list.", {"201": _json(_ref("List"), "Created.")}, "409 413 422",
                               body=_json_body(_object(LIST_FIELDS, ["name"]),
                                               example={"name": "Newsletter", "description": "Monthly"})),
        },
        "/lists/{list_id}": {
            "get": _operation("A list with its counts.", {"200": _json(_ref("List"))}, "404",
                              parameters=list_id),
            "patch": _operation("Rename or describe a list.", {"200": _json(_ref("List"))}, "404 409 413 422",
                                parameters=list_id, body=_json_body(_object(LIST_FIELDS, closed=True))),
            "delete": _operation("Delete a list (its subscribers stay).", NO_CONTENT, "404",
                                 parameters=list_id),
        },
        "/lists/{list_id}/import": {"post": _operation(
            "Import a CSV file into the list, in the background.",
            {"202": _json(_object({"import_id": ID}, ["import_id"]), "Queued.")}, "400 404 413 422",
            parameters=list_id,
            body={"required": True, "content": {"multipart/form-data": {"schema": _object(
                {"file": {"type": "string", "contentMediaType": "text/csv"}}, ["file"])}}},
        )},
        "/lists/{list_id}/export": {"get": _operation(
            "The list as CSV: email, name, status, created_at, then one column per attribute key.",
            {"200": {"description": "CSV", "content": {"text/csv": {"schema": {"type": "string"}}}}}, "404",
            parameters=list_id,
        )},
        "/imports/{import_id}": {"get": _operation(
            "An import's progress and first errors.", {"200": _json(_ref("Import"))}, "404",
            parameters=[_path_id("import_id")],
        )},
        "/subscribers": {
            "get": _operation(
                "Subscribers, newest first.", {"200": _json(_page_of("Subscriber"))}, "422",
                parameters=[*PAGE_PARAMETERS, _query("q", {"type": "string"}, "Searches email and name."),
                            _query("list_id", ID), _query("status", _enum(SubscriberStatus))],
            ),
            "post": _operation(
                "Create a subscriber.", {"201": _json(_ref("Subscriber"), "Created.")}, "409 413 422",
                body=_json_body(_object(SUBSCRIBER_FIELDS, ["email"], closed=True), example={
                    "email": "ann@example.com", "name": "Ann", "attributes": {"city": "Paris"},
                    "list_ids": [1]}),
            ),
        },
        "/subscribers/{subscriber_id}": {
            "get": _operation("A subscriber, with their newest system emails.",
                              {"200": _json(_ref("SubscriberDetail"))}, "404",
                              parameters=subscriber_id),
            "patch": _operation(
                "Change some fields (attributes are replaced whole).", {"200": _json(_ref("Subscriber"))},
                "404 409 413 422", parameters=subscriber_id,
                body=_json_body(_object(SUBSCRIBER_FIELDS, closed=True)),
            ),
            "delete": _operation("Delete a subscriber.", NO_CONTENT, "404", parameters=subscriber_id),
        },
        "/public/subscribe": {
            "post": _operation(
                "Sign up through a signup form, as its hosted page would (no token; CORS from the form's "
                "allowed origins, preflight OPTIONS answered). 202 whatever became of it: the answer never "
                "tells whether the address was known.",
                {"202": _json(_object({"status": {"type": "string"}, "message": {"type": "string"}},
                                      ["status", "message"]), "Accepted.")},
                "400 403 404 413 422 429", public=True,
                body=_json_body(_object(SIGNUP_FIELDS, ["form", "email"], closed=True), example={
                    "form": "news", "email": "ann@example.com", "name": "Ann", "lists": [1]}),
            ),
        },
        "/subscribers/{subscriber_id}/resend-confirmation": {
            "post": _operation(
                "Queue the confirmation link of the subscriber's newest unconfirmed signup again; the "
                "worker sends it, and the outcome is in the subscriber's system_messages.",
                {"202": _json(_object({"queued": {"type": "boolean"},
                                       "system_message_id": {"type": ["integer", "null"]}},
                                      ["queued", "system_message_id"]), "Queued.")}, "404",
                parameters=subscriber_id,
            ),
        },
        "/suppressions": {
            "get": _operation(
                "Suppressed addresses (no campaign reaches them), newest first.",
                {"200": _json(_page_of("Suppression"))}, "422",
                parameters=[*PAGE_PARAMETERS, _query("q", {"type": "string"}, "Searches the email."),
                            _query("reason", _enum(SuppressionReason))],
            ),
            "post": _operation(
                "Suppress an address (200 when it already was: it keeps its first reason).",
                {"201": _json(_ref("Suppression"), "Suppressed."), "200": _json(_ref("Suppression"))},
                "413 422",
                body=_json_body(_object(SUPPRESSION_FIELDS, ["email"], closed=True), example={
                    "email": "ann@example.com", "reason": "manual", "detail": "asked by phone"}),
            ),
        },
        "/suppressions/{email}": {
            "get": _operation("The suppression of an address.", {"200": _json(_ref("Suppression"))}, "404",
                              parameters=email_path),
            "delete": _operation(
                "Lift the suppression (kept as lifted, with the reason). The subscriber's status does not "
                "change.", {"204": {"description": "Lifted."}}, "400 404 413 422",
                parameters=[*email_path, _query(
                    "reason", {"type": "string", "minLength": 1, "maxLength": 500},
                    "Why (or a JSON body {reason}).",
                )],
                body=_json_body(_object({"reason": {"type": "string", "minLength": 1, "maxLength": 500}}),
                                required=False),
            ),
        },
        "/suppressions/import": {"post": _operation(
            "Suppress every address of a CSV file (one per line, or an email column): all or nothing.",
            {"200": _json(_ref("SuppressionImport"))}, "400 413 422",
            body={"required": True, "content": {"multipart/form-data": {"schema": _object(
                {"file": {"type": "string", "contentMediaType": "text/csv"}}, ["file"])}}},
        )},
        "/suppressions/export": {"get": _operation(
            "The suppressions in force as CSV: email, reason, source, detail, campaign_id, created_at.",
            {"200": {"description": "CSV", "content": {"text/csv": {"schema": {"type": "string"}}}}}, "",
        )},
        "/layouts": {
            "get": _operation("Layouts, with their kind but without their HTML or MJML.",
                              {"200": _json(_page_of("LayoutSummary"))},
                              "422", parameters=PAGE_PARAMETERS),
            "post": _operation(
                "Create a layout from JSON {name, html} or {name, mjml}, or multipart name + file (.html, "
                ".htm or .mjml).",
                {"201": _json(_ref("Layout"), "Created.")}, "400 409 413 422",
                body={"required": True, "content": {
                    JSON: {"schema": {**_object(LAYOUT_FIELDS, ["name"]),
                                      "oneOf": [{"required": ["html"]}, {"required": ["mjml"]}]},
                           "example": {"name": "Plain", "html": "<html><body>{{ message }}</body></html>"}},
                    "multipart/form-data": {"schema": _object(
                        {"name": {"type": "string"}, "html": {"type": "string"}, "mjml": {"type": "string"},
                         "file": {"type": "string", "contentMediaType": "text/html"}}, ["name"])},
                }},
            ),
        },
        "/layouts/{layout_id}": {
            "get": _operation("A layout with its HTML and, for an mjml one, its MJML source.",
                              {"200": _json(_ref("Layout"))}, "404",
                              parameters=layout_id),
            "patch": _operation("Rename a layout or replace it with HTML or MJML.",
                                {"200": _json(_ref("Layout"))},
                                "400 404 409 413 422", parameters=layout_id,
                                body=_json_body(_object(LAYOUT_FIELDS))),
            "delete": _operation("Delete a layout no campaign uses.", NO_CONTENT, "404 409",
                                 parameters=layout_id),
        },
        "/layouts/{layout_id}/preview": {"post": _operation(
            "The layout rendered for a subscriber, or for the sample one.",
            {"200": _json(_object({"html": {"type": "string"}}, ["html"]))}, "404 413 422",
            parameters=layout_id,
            body=_json_body(_object({"subscriber_id": ID}), required=False),
        )},
        "/sending-domains": {
            "get": _operation("Sending domains, by id.", {"200": _json(_page_of("SendingDomain"))}, "422",
                              parameters=PAGE_PARAMETERS),
            "post": _operation(
                "Add a sending domain: makes its DKIM key(s), answers the DNS records to publish.",
                {"201": _json(_ref("SendingDomain"), "Created.")}, "409 413 422",
                body=_json_body(_object(
                    {"domain": {"type": "string", "minLength": 1, "example": "example.com"},
                     "selector": {"type": "string", "maxLength": SELECTOR_MAX_LENGTH - 1},
                     "ed25519": {"type": "boolean", "description": "Also sign with Ed25519 (RFC 8463)."}},
                    ["domain"], closed=True), example={"domain": "example.com", "ed25519": True}),
            ),
        },
        "/sending-domains/{domain_id}": {
            "get": _operation("A sending domain and its DNS records.", {"200": _json(_ref("SendingDomain"))},
                              "404", parameters=domain_id),
            "delete": _operation("Delete a sending domain and its keys: its mail goes out unsigned.",
                                 NO_CONTENT, "404", parameters=domain_id),
        },
        "/sending-domains/{domain_id}/check": {"post": _operation(
            "Look the domain's DKIM, SPF and DMARC records up now and say what is missing or wrong.",
            {"200": _json(_ref("SendingDomain"))}, "404", parameters=domain_id,
        )},
        "/campaigns": {
            "get": _operation(
                "Campaigns, newest first.", {"200": _json(_page_of("Campaign"))}, "422",
                parameters=[*PAGE_PARAMETERS, _query("status", _enum(CampaignStatus))],
            ),
            "post": _operation(
                "Create a draft campaign.", {"201": _json(_ref("Campaign"), "Created.")}, "413 422",
                body=_json_body(
                    _object(CAMPAIGN_FIELDS, ["name", "subject", "from_email", "layout_id"],
                            closed=True),
                    example={"name": "November", "subject": "Hi {{ subscriber.name }}",
                             "from_email": "news@example.com", "layout_id": 1, "list_ids": [1],
                             "message": "Our news."},
                ),
            ),
        },
        "/campaigns/{campaign_id}": {
            "get": _operation("A campaign with its progress.", campaign, "404", parameters=campaign_id),
            "patch": _operation("Change a draft or scheduled campaign.", campaign, "404 409 413 422",
                                parameters=campaign_id,
                                body=_json_body(_object(CAMPAIGN_FIELDS, closed=True))),
            "delete": _operation("Delete a campaign that is not sending.", NO_CONTENT, "404 409",
                                 parameters=campaign_id),
        },
        "/campaigns/{campaign_id}/send": campaign_action("Start sending now.", "202"),
        "/campaigns/{campaign_id}/schedule": {"post": _operation(
            "Send at a time (ISO 8601 with an offset), shown in `timezone` (IANA) if given.",
            campaign, "404 409 413 422", parameters=campaign_id,
            body=_json_body(_object({"send_at": TIME, "timezone": {"type": "string", "maxLength": 64}},
                                    ["send_at"]),
                            example={"send_at": "2030-01-01T09:30:00+01:00", "timezone": "Europe/Paris"}),
        )},
        "/campaigns/{campaign_id}/unschedule": campaign_action(
            "Take a scheduled campaign back to draft (cancel, by contrast, is final)."),
        "/campaigns/{campaign_id}/cancel": campaign_action("Cancel a scheduled or sending campaign."),
        "/campaigns/{campaign_id}/pause": campaign_action("Pause sending."),
        "/campaigns/{campaign_id}/resume": campaign_action("Resume sending."),
        "/campaigns/{campaign_id}/retry-failed": {"post": _operation(
            "Send the failed deliveries again.",
            {"200": _json({"allOf": [_ref("Campaign"), _object({"retried": COUNT}, ["retried"])]})},
            "404 409 422", parameters=campaign_id,
        )},
        "/campaigns/{campaign_id}/preview": {"get": _operation(
            "The message as a subscriber will receive it (default: the first active recipient of the "
            "campaign's lists, else the sample person): subject, From, preheader and both bodies.",
            {"200": _json(_object(
                {"subscriber_id": {"type": ["integer", "null"]}, "to": {"type": ["string", "null"]},
                 "from": {"type": "string"}, "subject": {"type": "string"}, "preheader": {"type": "string"},
                 "html": {"type": "string"}, "text": {"type": "string"}},
                ["subscriber_id", "to", "from", "subject", "preheader", "html", "text"],
            ))},
            "404 422", parameters=[*campaign_id, _query("subscriber_id", ID)],
        )},
        "/campaigns/{campaign_id}/test": {"post": _operation(
            "Send the campaign now to a few addresses, rendered for a subscriber or the sample one.",
            {"200": _json(_object({"sent_to": {"type": "array", "items": {"type": "string"}},
                                   "subscriber_id": {}}, ["sent_to", "subscriber_id"]))},
            "404 413 422", parameters=campaign_id,
            body=_json_body(_object(
                {"emails": {"type": "array", "minItems": 1, "maxItems": MAX_TEST_RECIPIENTS,
                            "items": {"type": "string", "format": "email"}},
                 "subscriber_id": {"anyOf": [ID, {"type": "string", "format": "email"}, {"type": "null"}]}},
                ["emails"],
            ), example={"emails": ["qa@example.com"], "subscriber_id": 1}),
        )},
        "/campaigns/{campaign_id}/deliveries": {"get": _operation(
            "The per-recipient delivery log: pages (?page=) or, deep in a big log, keyset pages (?after=).",
            {"200": _json({"oneOf": [_page_of("Delivery"), _ref("DeliveryKeysetPage")]})}, "404 422",
            parameters=[*campaign_id, *PAGE_PARAMETERS, _query("status", _enum(DeliveryStatus)),
                        _query("after", {"type": "integer", "minimum": 0, "maximum": MAX_ID},
                               "The previous keyset page's next_after (0 for the first).")],
        )},
        "/relays": {
            "get": _operation("SMTP relays, by id.", {"200": _json(_page_of("Relay"))}, "422",
                              parameters=PAGE_PARAMETERS),
            "post": _operation(
                "Add a relay.", {"201": _json(_ref("Relay"), "Created.")}, "409 413 422",
                body=_json_body(_object(RELAY_FIELDS, ["name", "host"], closed=True), example={
                    "name": "Mailgun", "host": "smtp.mailgun.org", "port": 587, "tls_mode": "starttls",
                    "username": "postmaster@example.com", "password": "secret", "cap_per_hour": 500}),
            ),
        },
        "/relays/{relay_id}": {
            "get": _operation("A relay (its password only as password_set).", {"200": _json(_ref("Relay"))},
                              "404", parameters=relay_id),
            "patch": _operation("Change some of a relay's fields.", {"200": _json(_ref("Relay"))},
                                "404 409 413 422", parameters=relay_id,
                                body=_json_body(_object(RELAY_FIELDS, closed=True))),
            "delete": _operation("Delete a relay: what named it falls back on the default.", NO_CONTENT,
                                 "404", parameters=relay_id),
        },
        "/relays/{relay_id}/test": {"post": _operation(
            "Test connection: connect, EHLO, STARTTLS and log in as configured; the greeting and the EHLO "
            "extensions, or the error in words.", {"200": _json(_ref("RelayTest"))}, "404",
            parameters=relay_id,
        )},
        "/sender-identities": {
            "get": _operation("Sender identities, by id.", {"200": _json(_page_of("SenderIdentity"))}, "422",
                              parameters=PAGE_PARAMETERS),
            "post": _operation(
                "Save a sender identity.", {"201": _json(_ref("SenderIdentity"), "Created.")}, "409 413 422",
                body=_json_body(_object(IDENTITY_FIELDS, ["name", "from_email"], closed=True), example={
                    "name": "Newsletter", "from_name": "Example News", "from_email": "news@example.com",
                    "reply_to": "replies@example.com"}),
            ),
        },
        "/sender-identities/{identity_id}": {
            "get": _operation("A sender identity.", {"200": _json(_ref("SenderIdentity"))}, "404",
                              parameters=identity_id),
            "patch": _operation("Change some of a sender identity's fields.",
                                {"200": _json(_ref("SenderIdentity"))}, "404 409 413 422",
                                parameters=identity_id,
                                body=_json_body(_object(IDENTITY_FIELDS, closed=True))),
            "delete": _operation("Delete a sender identity (campaigns keep their From fields).", NO_CONTENT,
                                 "404", parameters=identity_id),
        },
        "/campaigns/{campaign_id}/resend-non-openers": {"post": _operation(
            "A draft copy of a sent campaign aimed at those it was sent to who did not open it (human opens "
            "only; a new segment, applied when the copy sends), optionally with a new subject, optionally "
            "scheduled delay_hours from now.",
            {"201": _json(_ref("Campaign"), "Created.")}, "404 409 413 422", parameters=campaign_id,
            body=_json_body(_object(
                {"subject": {"type": "string", "maxLength": FIELD_LIMITS["subject"]},
                 "delay_hours": {"type": "number", "minimum": 0, "maximum": MAX_RESEND_DELAY_HOURS}},
                closed=True,
            ), required=False, example={"subject": "In case you missed it", "delay_hours": 48}),
        )},
        **_segment_paths(),
        "/audit": {"get": _operation(
            "The audit log, newest first (owner tokens).", {"200": _json(_page_of("AuditEntry"))}, "422",
            parameters=[*PAGE_PARAMETERS, _query("user", {"type": "string", "maxLength": 320},
                                                 "Part of the acting user's email."),
                        _query("action", {"type": "string", "maxLength": 320},
                               'An action ("campaign.send"), or a prefix ending in "." ("campaign.").'),
                        _query("since", {"type": "string"}, "A day (YYYY-MM-DD, UTC) or an ISO 8601 time "
                               "with an offset."),
                        _query("until", {"type": "string"}, "A day (included) or an ISO 8601 time.")],
        )},
        "/campaigns/{campaign_id}/report": {"get": _operation(
            "The campaign's report: the same figures as its report page.", {"200": _json(_ref("Report"))},
            "404", parameters=campaign_id,
        )},
    }


def _segment_paths() -> dict[str, Schema]:
    segment_id = [_path_id("segment_id")]
    example = {"all": [{"field": "attribute", "key": "plan", "op": "equals", "value": "pro"},
                       {"any": [{"field": "activity", "op": "opened_within_days", "value": 30},
                                {"field": "list", "op": "member", "value": 1}]}]}  # fmt: skip
    segment_fields = {"name": {"type": "string", "minLength": 1, "maxLength": SEGMENT_NAME_MAX},
                      "rules": _ref("SegmentRules")}
    return {
        "/segments": {
            "get": _operation("Segments, by id.", {"200": _json(_page_of("Segment"))}, "422",
                              parameters=PAGE_PARAMETERS),
            "post": _operation("Save a segment.", {"201": _json(_ref("Segment"), "Created.")}, "409 413 422",
                               body=_json_body(_object(segment_fields, ["name", "rules"], closed=True),
                                               example={"name": "Pro readers", "rules": example})),
        },
        "/segments/count": {"post": _operation(
            "Count the subscribers an (unsaved) rule tree matches, and how many of them a send would reach. "
            "On PostgreSQL a count that runs past SEGMENT_COUNT_TIMEOUT_MS is stopped: 422 segment_too_slow.",
            {"200": _json(_ref("SegmentCount"))}, "413 422",
            body=_json_body(_object({"rules": _ref("SegmentRules")}, ["rules"], closed=True),
                            example={"rules": example}),
        )},
        "/segments/{segment_id}": {
            "get": _operation("A segment with its counts.",
                              {"200": _json({"allOf": [_ref("Segment"), _ref("SegmentCount")]})}, "404 422",
                              parameters=segment_id),
            "patch": _operation("Rename a segment or change its rules.", {"200": _json(_ref("Segment"))},
                                "404 409 413 422", parameters=segment_id,
                                body=_json_body(_object(segment_fields, closed=True))),
            "delete": _operation("Delete a segment no campaign targets.", NO_CONTENT, "404 409",
                                 parameters=segment_id),
        },
        "/segments/{segment_id}/subscribers": {"get": _operation(
            "The subscribers the segment matches now, by id.", {"200": _json(_page_of("Subscriber"))},
            "404 422", parameters=[*segment_id, *PAGE_PARAMETERS],
        )},
    }


def openapi_document(server_url: str = API_PREFIX) -> Schema:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "mailapp JSON API",
            "version": "1",
            "description": "Send `Authorization: Bearer <token>` (create one with `flask --app wsgi tokens "
                           "create EMAIL`). Errors always have the shape "
                           '{"error": {"code", "message", "details": [{"field", "message"}]}}.',
        },
        "servers": [{"url": server_url}],
        "security": [{"bearer": []}],
        "paths": _paths(),
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": SCHEMAS,
        },
    }


@bp.get("/openapi.json")
def openapi_json():
    """Public, like the README that documents the same API: it holds no data."""
    return jsonify(openapi_document())
