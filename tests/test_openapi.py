"""The OpenAPI document at /api/v1/openapi.json: valid OpenAPI 3.1, public, and in step with the URL
map (every /api/v1 rule and method is an operation, and there is no other)."""

from __future__ import annotations

import re

import schemathesis
from schemathesis.core.result import Ok

from mailapp.api.openapi import openapi_document
from mailapp.api.routes import API_PREFIX

IGNORED_METHODS = {"HEAD", "OPTIONS"}


def _url_map_operations(app) -> set[tuple[str, str]]:
    """(METHOD, OpenAPI path) for every API rule: /api/v1/lists/<int:list_id> -> /lists/{list_id}."""
    operations = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(API_PREFIX + "/"):
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule.removeprefix(API_PREFIX))
        operations.update((method, path) for method in rule.methods - IGNORED_METHODS)
    return operations


def _document_operations(document: dict) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in document["paths"].items() for method in item}


def test_the_document_has_exactly_the_operations_of_the_url_map(app):
    in_url_map = _url_map_operations(app)
    in_document = _document_operations(openapi_document())
    assert in_url_map - in_document == set(), "routes the document does not describe"
    assert in_document - in_url_map == set(), "operations the app does not have"
    assert len(in_url_map) > 30


def test_a_new_api_route_is_missing_from_the_document_until_described(app):
    document = openapi_document()
    del document["paths"]["/lists/{list_id}/export"]
    assert _url_map_operations(app) - _document_operations(document) == {("GET", "/lists/{list_id}/export")}


def test_the_document_is_served_without_a_token(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_json() == openapi_document()


def test_every_other_operation_asks_for_the_bearer_token(client):
    document = openapi_document()
    assert document["security"] == [{"bearer": []}]
    public = [(method, path) for path, item in document["paths"].items() for method, operation in item.items()
              if operation.get("security") == []]
    assert sorted(public) == [("get", "/openapi.json"), ("post", "/public/subscribe")]
    assert client.get("/api/v1/lists").status_code == 401


def test_the_document_is_valid_openapi_3_1_with_every_operation_loadable(client):
    # from_dict, not from_wsgi: loaded from a URL, schemathesis leaves out the operation serving it.
    schema = schemathesis.openapi.from_dict(client.get("/api/v1/openapi.json").get_json())
    schema.validate()
    results = list(schema.get_all_operations())
    problems = [result for result in results if not isinstance(result, Ok)]
    assert problems == []
    assert len(results) == len(_document_operations(openapi_document()))


def test_every_path_parameter_is_declared(app):
    for path, item in openapi_document()["paths"].items():
        for method, operation in item.items():
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert declared == set(re.findall(r"{(\w+)}", path)), (method, path)
