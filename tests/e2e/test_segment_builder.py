"""The segment rule builder in the browser: a nested rule made with the form controls only (no JSON
typed), the live count following each change, and the saved segment counting the same people."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import ADMIN_EMAIL, RunningApp
from tests.e2e.test_responsive_mail import _api

pytestmark = pytest.mark.browser

SEGMENT = "Keen club members"


def seed(running: RunningApp) -> tuple[str, int]:
    """A list of four with a plan and a score each, and one outsider who would match but for the list."""
    token = running.flask("tokens", "create", ADMIN_EMAIL, "--name", "segments").strip().splitlines()[-1]
    club = _api(running, token, "POST", "/lists", {"name": "Segment club"})
    people = [
        ("pro", 10, True), ("free", 80, True), ("free", 20, True), ("pro", 90, True), ("pro", 99, False),
    ]
    for number, (plan, score, member) in enumerate(people):
        _api(running, token, "POST", "/subscribers", {
            "email": f"club{number}@example.net", "attributes": {"plan": plan, "score": score},
            "list_ids": [club["id"]] if member else [],
        })
    return token, club["id"]


def test_a_nested_rule_built_with_the_controls_counts_live_and_saves(
    page: Page, mailapp_server: RunningApp, screenshot
):
    token, club_id = seed(mailapp_server)
    page.goto("/segments/new")
    page.get_by_label("Name").fill(SEGMENT)
    count = page.get_by_test_id("segment-count")
    top = page.get_by_test_id("segment-group").first

    # Members of the club...
    top.get_by_role("button", name="Add rule").click()
    rule = page.get_by_test_id("segment-rule").first
    rule.get_by_label("Field").select_option("list")
    rule.get_by_label("Value").fill(str(club_id))
    expect(count).to_have_text(re.compile(r"^4 subscribers"))

    # ... who are on the pro plan, or scored over 50.
    top.get_by_role("button", name="Add group").click()
    nested = page.get_by_test_id("segment-group").nth(1)
    nested.get_by_label("Match").select_option("any")
    for key, operator, value in [("plan", "equals", "pro"), ("score", "gt", "50")]:
        nested.get_by_role("button", name="Add rule").click()
        added = nested.get_by_test_id("segment-rule").last
        added.get_by_label("Field").select_option("attribute")
        added.get_by_label("Attribute").fill(key)
        added.get_by_label("Operator").select_option(operator)
        added.get_by_label("Value").fill(value)
    expect(count).to_have_text(re.compile(r"^3 subscribers"))
    screenshot(page, "segments-10-nested-rule")

    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text(f"Segment '{SEGMENT}' saved.")).to_be_visible()
    segments = _api(mailapp_server, token, "GET", "/segments")["items"]
    (saved,) = [row for row in segments if row["name"] == SEGMENT]
    assert _api(mailapp_server, token, "GET", f"/segments/{saved['id']}")["count"] == 3
    assert saved["rules"] == {"all": [
        {"field": "list", "op": "member", "value": club_id},
        {"any": [{"field": "attribute", "key": "plan", "op": "equals", "value": "pro"},
                 {"field": "attribute", "key": "score", "op": "gt", "value": 50}]},
    ]}
