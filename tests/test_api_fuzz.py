"""The whole JSON API fuzzed from its own OpenAPI document (schemathesis): whatever the input, no
server error, and every answer has a documented status, content type and shape.

MAILAPP_FUZZ_EXAMPLES bounds the generated examples per operation (besides schemathesis's explicit
and boundary cases); derandomized, so that CI runs the same cases every time."""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from mailapp.api.openapi import openapi_document
from mailapp.auth.services import create_api_token, create_user
from mailapp.domains.services import create_domain
from mailapp.models.segment import Segment
from mailapp.models.signup import SignupForm
from mailapp.models.subscriber import ImportStatus, SubscriberImport
from mailapp.models.suppression import SuppressionReason
from mailapp.sending.suppression import suppress_address
from tests.campaign_fixtures import make_audience, make_delivery, make_ready_campaign
from tests.conftest import TEST_PASSWORD

pytestmark = pytest.mark.fuzz

FUZZ_EXAMPLES = int(os.environ.get("MAILAPP_FUZZ_EXAMPLES", "25"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture
def fuzz_token(db, smtp_server) -> str:
    """A token, and a little of everything for the fuzz to find under small ids (the document's examples
    use id 1): a layout, two lists with subscribers, a draft campaign, one that has deliveries, a
    finished import, a sending domain with both keys, and a signup form."""
    create_user("fuzz@example.com", TEST_PASSWORD, is_admin=True)
    token = create_api_token("fuzz@example.com", name="fuzz")
    audience = make_audience(3)
    make_ready_campaign(audience)
    sent = make_ready_campaign(audience, status="sent")
    make_delivery(sent.id, audience.active[0].id, status="sent")
    make_delivery(sent.id, audience.active[1].id, status="failed", error="550 no such user")
    suppress_address("ann@example.com", SuppressionReason.MANUAL, "api")  # the document's example
    db.session.add(SubscriberImport(
        list_id=audience.lists[0].id, filename="people.csv", file_path="/nonexistent", file_size=10,
        status=ImportStatus.DONE, errors=[{"line": 2, "email": "x", "reason": "Invalid"}],
    ))
    create_domain("example.com", ed25519=True)
    db.session.add(Segment(name="Active", rules={"field": "status", "op": "is", "value": "active"}))
    # The public signup's example names this form.
    db.session.add(SignupForm(slug="news", name="News", lists=[audience.lists[0]]))
    db.session.commit()
    return token


# The document as built in Python (tests/test_openapi.py checks the served one is the same): loaded at
# collection, so each operation is a test of its own.
schema = schemathesis.openapi.from_dict(openapi_document())


@schema.parametrize()
@settings(max_examples=FUZZ_EXAMPLES, derandomize=True, database=None, deadline=None,
          suppress_health_check=list(HealthCheck))
def test_no_input_makes_the_api_fail_or_break_its_document(case, app, fuzz_token, db):
    try:
        case.call_and_validate(app=app, headers={"Authorization": f"Bearer {fuzz_token}"}, checks=CHECKS)
    finally:
        db.session.rollback()
