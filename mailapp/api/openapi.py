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
from mailapp.models.subscriber import ImportStatus, SubscriberStatus
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

SCHEMAS: dict[str, Schema] = {
    "Error": _object({"error": _object(
        {"code": STRING, "message": STRING, "details": {"type": "array", "items": PROBLEM}},
        ["code", "message", "details"],
    )}, ["error"]),
    "List": _every_field(
        {"id": ID, "name": {"type": "string"}, "description": {"type": "string"}, "created_at": NULLABLE_TIME,
         "subscriber_count": COUNT, "active_count": COUNT, "unsubscribed_count": COUNT,
         "blocklisted_count": COUNT},
    ),
    "Import": _every_field(
        {"id": ID, "list_id": {"type": ["integer", "null"]}, "filename": {"type": "string"},
         "status": _enum(ImportStatus), "total": COUNT, "processed": COUNT, "imported": COUNT,
         "updated": COUNT, "skipped": COUNT, "duplicates": COUNT, "invalid": COUNT,
         "errors": {"type": "array", "items": {"type": "object"}}, "failure": {"type": ["string", "null"]},
         "created_at": NULLABLE_TIME, "finished_at": NULLABLE_TIME},
    ),
    "Subscriber": _every_field(
        {"id": ID, "email": {"type": "string"}, "name": {"type": "string"}, "attributes": {"type": "object"},
         "status": _enum(SubscriberStatus), "created_at": NULLABLE_TIME, "updated_at": NULLABLE_TIME,
         "unsubscribed_at": NULLABLE_TIME, "unsubscribed_campaign_id": {"type": ["integer", "null"]},
         "list_ids": {"type": "array", "items": ID}},
    ),
    "LayoutSummary": _object(
        {"id": ID, "name": {"type": "string"}, "variables": {"type": "array", "items": {"type": "string"}},
         "warnings": {"type": "array", "items": {"type": "string"}}, "created_at": TIME, "updated_at": TIME},
        ["id", "name", "variables", "warnings", "created_at", "updated_at"],
    ),
    "Layout": {"allOf": [_ref("LayoutSummary"), _object({"html": {"type": "string"}}, ["html"])]},
    "Campaign": _object(
        {"id": ID, "name": {"type": "string"}, "status": _enum(CampaignStatus),
         "status_reason": {"type": ["string", "null"]}, "subject": {"type": "string"},
         "from_name": {"type": "string"}, "from_email": {"type": "string"}, "reply_to": {"type": "string"},
         "layout_id": {"type": ["integer", "null"]}, "list_ids": {"type": "array", "items": ID},
         "message": {"type": "string"}, "track_opens": {"type": "boolean"},
         "track_clicks": {"type": "boolean"},
         "send_at": NULLABLE_TIME, "send_timezone": {"type": "string"},
         "started_at": NULLABLE_TIME, "finished_at": NULLABLE_TIME,
         "created_at": NULLABLE_TIME, "stats": CAMPAIGN_STATS},
        ["id", "name", "status", "subject", "from_name", "from_email", "reply_to", "layout_id", "list_ids",
         "message", "track_opens", "track_clicks", "send_at", "started_at", "finished_at", "created_at",
         "stats"],
    ),
    "Delivery": _object(
        {"id": ID, "subscriber_id": {"type": ["integer", "null"]}, "email": {"type": "string"},
         "status": _enum(DeliveryStatus), "attempts": COUNT, "sent_at": NULLABLE_TIME,
         "message_id": {"type": ["string", "null"]}, "smtp_code": {"type": ["integer", "null"]},
         "error": {"type": ["string", "null"]}},
        ["id", "subscriber_id", "email", "status", "attempts", "sent_at", "message_id", "smtp_code", "error"],
    ),
    "DeliveryKeysetPage": _object(
        {"items": {"type": "array", "items": _ref("Delivery")}, "per_page": {"type": "integer", "minimum": 1},
         "after": {"type": ["integer", "null"]}, "next_after": {"type": ["integer", "null"]}},
        ["items", "per_page", "after", "next_after"],
    ),
    "Report": _every_field(
        {"recipients": COUNT, "sent": COUNT, "failed": COUNT, "unique_opens": COUNT, "opens": COUNT,
         "machine_opens": COUNT, "open_rate": RATE, "unique_clicks": COUNT, "clicks": COUNT,
         "click_rate": RATE, "unsubscribes": COUNT,
         "timeline": {"type": "array", "items": _object({"at": TIME, "opens": COUNT, "clicks": COUNT},
                                                         ["at", "opens", "clicks"])},
         "top_links": {"type": "array", "items": _object(
             {"url": {"type": "string"}, "clicks": COUNT, "unique_clicks": COUNT},
             ["url", "clicks", "unique_clicks"])}},
    ),
}

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
LAYOUT_FIELDS = {"name": {"type": "string", "minLength": 1}, "html": {"type": "string"}}
CAMPAIGN_FIELDS = {
    **{name: {"type": "string", "maxLength": limit} for name, limit in FIELD_LIMITS.items()},
    "layout_id": ID,
    "list_ids": {"type": "array", "items": ID, "minItems": 1},
    "message": {"type": "string"},
    "track_opens": {"type": "boolean"},
    "track_clicks": {"type": "boolean"},
}


def _json_body(schema: Schema, *, required: bool = True, example: Schema | None = None) -> Schema:
    media_type: Schema = {"schema": schema}
    if example is not None:
        media_type["example"] = example
    return {"required": required, "content": {JSON: media_type}}


# --- operations -------------------------------------------------------------------------------------

ERROR_MEANINGS = {
    "400": "The request could not be read.",
    "401": "No valid bearer token.",
    "404": "No such object (or an id out of range).",
    "409": "A name or email already taken, or an action the object's state does not allow.",
    "413": "The body is over the size limit.",
    "422": "Bad input: details list each problem as {field, message}.",
}


def _operation(summary: str, ok: dict[str, Schema], errors: str, *, parameters: list[Schema] | None = None,
               body: Schema | None = None, public: bool = False) -> Schema:
    """ok: {status: response}; errors: the error statuses it may answer, space-separated."""
    responses: dict[str, Schema] = dict(ok)
    statuses = errors.split() + ([] if public else ["401"])
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
    campaign = {"200": _json(_ref("Campaign"))}

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
            "get": _operation("A subscriber.", {"200": _json(_ref("Subscriber"))}, "404",
                              parameters=subscriber_id),
            "patch": _operation(
                "Change some fields (attributes are replaced whole).", {"200": _json(_ref("Subscriber"))},
                "404 409 413 422", parameters=subscriber_id,
                body=_json_body(_object(SUBSCRIBER_FIELDS, closed=True)),
            ),
            "delete": _operation("Delete a subscriber.", NO_CONTENT, "404", parameters=subscriber_id),
        },
        "/layouts": {
            "get": _operation("Layouts, without their HTML.", {"200": _json(_page_of("LayoutSummary"))},
                              "422", parameters=PAGE_PARAMETERS),
            "post": _operation(
                "Create a layout from JSON {name, html} or multipart name + file.",
                {"201": _json(_ref("Layout"), "Created.")}, "400 409 413 422",
                body={"required": True, "content": {
                    JSON: {"schema": _object(LAYOUT_FIELDS, ["name", "html"]),
                           "example": {"name": "Plain", "html": "<html><body>{{ message }}</body></html>"}},
                    "multipart/form-data": {"schema": _object(
                        {"name": {"type": "string"}, "html": {"type": "string"},
                         "file": {"type": "string", "contentMediaType": "text/html"}}, ["name"])},
                }},
            ),
        },
        "/layouts/{layout_id}": {
            "get": _operation("A layout with its HTML.", {"200": _json(_ref("Layout"))}, "404",
                              parameters=layout_id),
            "patch": _operation("Rename a layout or replace its HTML.", {"200": _json(_ref("Layout"))},
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
        "/campaigns": {
            "get": _operation(
                "Campaigns, newest first.", {"200": _json(_page_of("Campaign"))}, "422",
                parameters=[*PAGE_PARAMETERS, _query("status", _enum(CampaignStatus))],
            ),
            "post": _operation(
                "Create a draft campaign.", {"201": _json(_ref("Campaign"), "Created.")}, "413 422",
                body=_json_body(
                    _object(CAMPAIGN_FIELDS, ["name", "subject", "from_email", "layout_id", "list_ids"],
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
        "/campaigns/{campaign_id}/report": {"get": _operation(
            "The campaign's report: the same figures as its report page.", {"200": _json(_ref("Report"))},
            "404", parameters=campaign_id,
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
