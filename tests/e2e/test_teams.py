"""A team in a real browser: an owner invites someone, the invite arrives by email (read in the Dev
inbox), the invitee joins, turns on two-factor sign-in with the secret the page shows, signs out and in
with password and code, then resets a forgotten password by email, after which the old one fails."""

from __future__ import annotations

import re
import time

import pyotp
import pytest
from playwright.sync_api import Page, expect

from mailapp.devinbox.store import DevInbox
from tests.e2e.conftest import RunningApp, sign_in
from tests.smtp import ReceivedMessage

pytestmark = pytest.mark.browser

INVITEE = "new.colleague@example.com"
FIRST_PASSWORD = "joined with this 1"
NEW_PASSWORD = "reset to this one 2"


def wait_for_mail(
    mailapp_server: RunningApp, address: str, subject: str, timeout: float = 20.0
) -> ReceivedMessage:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for message in mailapp_server.smtp.messages:
            if message.to == address and message.message["Subject"] == subject:
                return message
        time.sleep(0.05)
    raise AssertionError(f"no {subject!r} to {address} within {timeout}s")


def link_in_dev_inbox(page: Page, mailapp_server: RunningApp, message: ReceivedMessage, subject: str) -> str:
    """Under `make run` system mail lands in the Dev inbox; here the test SMTP server got it, so it is
    handed to the inbox's store, as the dev SMTP server does, and read in the dashboard."""
    DevInbox(mailapp_server.env["DEVINBOX_DIR"]).save(message.raw)
    page.goto("/dev/inbox/")
    page.get_by_test_id("devinbox-table").get_by_role("link", name=subject).first.click()
    page.get_by_role("tab", name="Text").click()
    text = page.get_by_test_id("text-part").inner_text()
    match = re.search(re.escape(mailapp_server.base_url) + r"(/\S+)", text)
    assert match, text
    return match.group(1)


def sign_out(page: Page) -> None:
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()


def test_an_invited_colleague_joins_turns_on_two_factor_and_resets_a_forgotten_password(
    page: Page, anonymous_page: Page, mailapp_server: RunningApp, screenshot
) -> None:
    # The owner invites.
    page.goto("/")
    page.get_by_role("navigation").get_by_role("link", name="Users", exact=True).click()
    page.get_by_label("Email").fill(INVITEE)
    page.get_by_label("Role").select_option("editor")
    page.get_by_role("button", name="Send invite").click()
    shown = page.get_by_test_id("invite-link").inner_text()
    screenshot(page, "teams-01-invite-sent")
    invite_mail = wait_for_mail(mailapp_server, INVITEE, "You are invited to mailapp")
    invite_path = link_in_dev_inbox(page, mailapp_server, invite_mail, "You are invited to mailapp")
    assert mailapp_server.url(invite_path) == shown
    screenshot(page, "teams-02-invite-in-dev-inbox")

    # The invitee joins and is signed in.
    colleague = anonymous_page
    colleague.goto(invite_path)
    expect(colleague.get_by_text("You are invited as editor")).to_be_visible()
    colleague.get_by_label("Your name").fill("New Colleague")
    colleague.get_by_label("Password", exact=True).fill(FIRST_PASSWORD)
    colleague.get_by_label("Password again").fill(FIRST_PASSWORD)
    colleague.get_by_role("button", name="Join").click()
    expect(colleague).to_have_url(mailapp_server.url("/"))
    expect(colleague.get_by_text(f"{INVITEE} (editor)")).to_be_visible()

    # Two-factor enrolment: the code is computed from the secret the page shows.
    colleague.get_by_role("link", name="2FA").click()
    colleague.get_by_test_id("enrol").click()
    expect(colleague.locator("svg").first).to_be_visible()
    secret = colleague.get_by_test_id("totp-secret").inner_text()
    screenshot(colleague, "teams-03-enrol")
    totp = pyotp.TOTP(secret)
    colleague.get_by_label("Code").fill(totp.now())
    colleague.get_by_role("button", name="Turn on two-factor sign-in").click()
    recovery_codes = colleague.get_by_test_id("recovery-codes").locator("li").all_inner_texts()
    assert len(recovery_codes) == 10
    screenshot(colleague, "teams-04-recovery-codes")

    # Signing in again takes the password, then a code (the next one: the enrolment's is spent).
    sign_out(colleague)
    sign_in(colleague, INVITEE, FIRST_PASSWORD)
    expect(colleague).to_have_url(mailapp_server.url("/login/code"))
    colleague.get_by_label("Code").fill(totp.at(time.time() + 30))
    colleague.get_by_role("button", name="Sign in").click()
    expect(colleague).to_have_url(mailapp_server.url("/"))
    sign_out(colleague)

    # Forgot password: the reset mail, a new password, and the old one no longer works.
    colleague.get_by_role("link", name="Forgot password?").click()
    colleague.get_by_label("Email").fill(INVITEE)
    colleague.get_by_role("button", name="Send the reset link").click()
    expect(colleague.get_by_text("If that address has an account")).to_be_visible()
    reset_mail = wait_for_mail(mailapp_server, INVITEE, "Reset your mailapp password")
    reset_path = link_in_dev_inbox(page, mailapp_server, reset_mail, "Reset your mailapp password")
    colleague.goto(reset_path)
    colleague.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    colleague.get_by_label("New password again").fill(NEW_PASSWORD)
    colleague.get_by_role("button", name="Set the new password").click()
    expect(colleague.get_by_text("Your password is changed")).to_be_visible()
    screenshot(colleague, "teams-05-password-reset")

    sign_in(colleague, INVITEE, FIRST_PASSWORD)
    expect(colleague.get_by_text("Wrong email or password.")).to_be_visible()
    sign_in(colleague, INVITEE, NEW_PASSWORD)
    expect(colleague).to_have_url(mailapp_server.url("/login/code"))
    # The code of this step is spent; a recovery code signs in instead, once.
    colleague.get_by_label("Code").fill(recovery_codes[0])
    colleague.get_by_role("button", name="Sign in").click()
    expect(colleague).to_have_url(mailapp_server.url("/"))

    # The owner's audit log tells the story.
    page.goto("/audit/?user=" + INVITEE)
    for action in ("user.invite_accept", "user.two_factor_enable", "user.password_reset", "auth.sign_in"):
        expect(page.get_by_role("cell", name=action, exact=True).first).to_be_visible()
    screenshot(page, "teams-06-audit-log")
