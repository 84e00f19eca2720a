"""A visitor joins a double opt-in list in the browser, against the running app: the marketer makes the
list double opt-in and creates a signup form; a visitor fills the hosted form, the confirmation arrives
and is read in the Dev inbox, a link scanner's GET of the link changes nothing, and the visitor's click
on the button makes them active on the list."""

from __future__ import annotations

import re
import time
import urllib.request

import pytest
from playwright.sync_api import Page, expect

from mailapp.devinbox.store import DevInbox
from tests.e2e.conftest import RunningApp

pytestmark = pytest.mark.browser

LIST_NAME = "Garden club"
VISITOR = "visitor@example.org"


def make_the_list_double_opt_in(page: Page, screenshot) -> None:
    page.goto("/lists")
    page.get_by_label("Name").fill(LIST_NAME)
    page.get_by_role("button", name="Create list").click()
    list_id = re.search(r"/lists/(\d+)", page.url).group(1)
    page.goto(f"/lists/{list_id}/opt-in")
    page.get_by_label("Double opt-in: signups confirm by email").check()
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Opt-in settings of Garden club saved.")).to_be_visible()
    screenshot(page, "signup-10-list-opt-in")


def create_the_signup_form(page: Page, screenshot) -> None:
    page.goto("/signup-forms/new")
    page.get_by_label("Name", exact=True).fill("Garden news")
    page.get_by_label("Address").fill("garden")
    page.get_by_label("Lists", exact=True).select_option(label=LIST_NAME)
    page.get_by_label("Title", exact=True).fill("Join the garden club")
    page.get_by_label("Consent text").fill("I agree to receive the club's emails.")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Signup form Garden news saved.")).to_be_visible()
    expect(page.get_by_test_id("snippet")).to_contain_text('action="http://127.0.0.1:')
    screenshot(page, "signup-20-form")


def fill_the_hosted_form(anonymous_page: Page, screenshot) -> None:
    anonymous_page.set_viewport_size({"width": 390, "height": 844})
    anonymous_page.goto("/s/garden")
    expect(anonymous_page.get_by_role("heading", name="Join the garden club")).to_be_visible()
    expect(anonymous_page.get_by_test_id("consent")).to_have_text("I agree to receive the club's emails.")
    anonymous_page.get_by_label("Email").fill(VISITOR)
    anonymous_page.get_by_label("Name").fill("Vera Visitor")
    screenshot(anonymous_page, "signup-30-hosted-form")
    anonymous_page.get_by_role("button", name="Subscribe").click()
    expect(anonymous_page.get_by_test_id("message")).to_contain_text("we have sent it a link")


def read_the_confirmation_in_the_dev_inbox(page: Page, mailapp_server: RunningApp, screenshot) -> str:
    # The app (and its mailbox) is shared with the package's other browser tests: find the visitor's.
    deadline = time.monotonic() + 30
    while not (mine := [message for message in mailapp_server.smtp.messages if message.to == VISITOR]):
        assert time.monotonic() < deadline, "no confirmation reached the visitor"
        time.sleep(0.2)
    (message,) = mine
    DevInbox(mailapp_server.env["DEVINBOX_DIR"]).save(message.raw)
    page.goto("/dev/inbox/")
    page.get_by_test_id("devinbox-table").get_by_role(
        "link", name=f"Confirm your subscription to {LIST_NAME}"
    ).click()
    frame = page.frame_locator("iframe[title='Message HTML']")
    button = frame.get_by_role("link", name="Confirm my subscription")
    expect(button).to_be_visible()
    screenshot(page, "signup-40-confirmation-email")
    return button.get_attribute("href")


def status_of_the_visitor(page: Page) -> str:
    page.goto(f"/subscribers?q={VISITOR}")
    row = page.get_by_test_id("subscribers-table").locator("tbody tr")
    expect(row).to_have_count(1)
    return row.locator(".badge").first.inner_text()


def test_a_visitor_signs_up_confirms_with_the_button_and_joins_the_list(
    page: Page, anonymous_page: Page, mailapp_server: RunningApp, screenshot
):
    make_the_list_double_opt_in(page, screenshot)
    create_the_signup_form(page, screenshot)
    fill_the_hosted_form(anonymous_page, screenshot)
    confirm_url = read_the_confirmation_in_the_dev_inbox(page, mailapp_server, screenshot)
    assert confirm_url.startswith(mailapp_server.base_url + "/s/confirm/")
    assert status_of_the_visitor(page) == "unconfirmed"

    # A mail scanner fetches the link before the reader: the page asks, nothing changes.
    with urllib.request.urlopen(confirm_url, timeout=10) as scanned:  # noqa: S310 - our own loopback app
        assert scanned.status == 200
    assert status_of_the_visitor(page) == "unconfirmed"

    anonymous_page.goto(confirm_url)
    screenshot(anonymous_page, "signup-50-confirm-page")
    anonymous_page.get_by_role("button", name="Confirm my subscription").click()
    expect(anonymous_page.get_by_role("heading", name="Subscription confirmed")).to_be_visible()
    assert status_of_the_visitor(page) == "active"
    page.goto("/lists")
    page.get_by_role("link", name=LIST_NAME).click()
    expect(page.get_by_text(VISITOR)).to_be_visible()
