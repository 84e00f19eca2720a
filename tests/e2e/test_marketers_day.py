"""A marketer's day in the browser, against the running app: upload a layout and preview it, import
subscribers, create a campaign, test-send and schedule it, watch it go out, then read the report change
as subscribers open, click and unsubscribe.

One test walks the whole day, because each step needs what the one before made; each step is a function
named after what the marketer does, and every main page is saved under tests/e2e/screenshots/."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Page, expect

from mailapp.devinbox.store import DevInbox
from tests.e2e.conftest import BROWSER_TIMEZONE, RunningApp
from tests.smtp import ReceivedMessage

pytestmark = pytest.mark.browser

LAYOUT_NAME = "Spring newsletter"
LIST_NAME = "Customers"
CAMPAIGN_NAME = "Spring sale"
TESTER = "me@acme.example"
CUSTOMERS = {
    "alice@example.com": "Alice Martin",
    "bob@example.com": "Bob Stone",
    "chloe@example.com": "Chloé Dubois",
}
SUBSCRIBERS_CSV = """email,name,city
alice@example.com,Alice Martin,Paris
bob@example.com,Bob Stone,Berlin
chloe@example.com,Chloé Dubois,Lyon
ALICE@example.com,Alice again,Paris
not-an-email,Nobody,Nowhere
"""
# Opens and clicks this soon after sending are a scanner's (mailapp.tracking.machine.DEFAULT_EARLY_SECONDS).
MACHINE_WINDOW_SECONDS = 3.0
SEND_TIMEOUT_MS = 60_000


def layout_file(tmp_path: Path, shop_url: str) -> Path:
    """The marketer's HTML file, as their designer sent it."""
    path = tmp_path / "spring-newsletter.html"
    path.write_text(
        f"""<!doctype html>
<html>
<head><meta charset="utf-8"><style>.cta {{ color: #0a7; font-weight: bold; }}</style></head>
<body>
  <h1>{{{{ campaign.subject }}}}</h1>
  <p>Hello {{{{ subscriber.name or "friend" }}}} from {{{{ subscriber.attributes.city or "afar" }}}},</p>
  {{{{ message }}}}
  <p><a class="cta" href="{shop_url}/spring?ref=newsletter">See the spring catalogue</a></p>
  <p><a href="{{{{ unsubscribe_url }}}}">Unsubscribe</a></p>
</body>
</html>
""",
        encoding="utf-8",
    )
    return path


def nav(page: Page, label: str) -> None:
    page.get_by_role("navigation").get_by_role("link", name=label, exact=True).click()


def upload_layout(page: Page, screenshot, html_file: Path) -> None:
    page.goto("/")
    nav(page, "Layouts")
    expect(page.get_by_role("heading", name="Layouts", exact=True)).to_be_visible()
    screenshot(page, "10-layouts")
    page.get_by_role("link", name="New layout (HTML or MJML)", exact=True).click()
    page.get_by_label("Name", exact=True).fill(LAYOUT_NAME)
    page.get_by_label(re.compile(r"upload an \.html")).set_input_files(html_file)
    page.get_by_role("button", name="Create layout").click()

    expect(page.get_by_text(f"Layout '{LAYOUT_NAME}' created.")).to_be_visible()
    preview = page.locator("iframe[title='Layout preview']")
    # Uploaded HTML must not run script in the dashboard's origin.
    expect(preview).to_have_attribute("sandbox", "")
    frame = page.frame_locator("iframe[title='Layout preview']")
    expect(frame.get_by_text("Hello Jane Doe from Lisbon,")).to_be_visible()
    expect(frame.get_by_role("link", name="See the spring catalogue")).to_be_visible()
    for variable in ("subscriber.name", "unsubscribe_url", "message"):
        expect(page.get_by_test_id("used-variable").filter(has_text=variable).first).to_be_visible()
    screenshot(page, "11-layout-preview")


def import_subscribers(page: Page, screenshot, tmp_path: Path) -> None:
    nav(page, "Lists")
    expect(page.get_by_role("heading", name="Lists", exact=True)).to_be_visible()
    page.get_by_label("Name", exact=True).fill(LIST_NAME)
    page.get_by_label("Description").fill("Everyone who bought from the shop.")
    page.get_by_role("button", name="Create list").click()
    expect(page.get_by_role("heading", name=LIST_NAME)).to_be_visible()
    screenshot(page, "20-list-empty")

    csv_file = tmp_path / "customers.csv"
    csv_file.write_text(SUBSCRIBERS_CSV, encoding="utf-8")
    page.get_by_label("CSV file").set_input_files(csv_file)
    page.get_by_role("button", name="Import", exact=True).click()

    expect(page.get_by_role("heading", name="Import of customers.csv")).to_be_visible()
    progress = page.get_by_role("progressbar", name="Import progress")
    expect(progress).to_have_attribute("aria-valuenow", "100")
    expect(progress).to_contain_text("100%")
    expect(page.locator('[data-field="status"]')).to_have_text("done")
    figures = {"processed": "5", "imported": "3", "updated": "0", "skipped": "1", "invalid": "1"}
    for field, value in figures.items():
        expect(page.locator(f'[data-field="{field}"]')).to_have_text(value)
    expect(page.locator('[data-field="duplicates"]')).to_have_text("1")
    invalid_row = page.get_by_test_id("import-errors").locator("tbody tr")
    expect(invalid_row).to_have_count(1)
    expect(invalid_row.locator("td").nth(0)).to_have_text("6")
    expect(invalid_row.locator("td").nth(1)).to_have_text("not-an-email")
    screenshot(page, "21-import-done")

    page.get_by_role("main").get_by_role("link", name=LIST_NAME).first.click()
    members = page.get_by_test_id("members-table")
    for email in CUSTOMERS:
        expect(members.get_by_role("link", name=email)).to_be_visible()
    expect(page.get_by_test_id("list-counts")).to_contain_text(re.compile(r"Active\s*3\b"))
    screenshot(page, "22-list-members")


def create_campaign(page: Page, screenshot) -> None:
    nav(page, "Campaigns")
    screenshot(page, "30-campaigns")
    page.goto("/campaigns/new")
    page.get_by_label("Name", exact=True).fill(CAMPAIGN_NAME)
    page.get_by_label("Subject").fill("Spring is here, {{ subscriber.name }}")
    page.get_by_label("From name").fill("Acme Shop")
    page.get_by_label("From email").fill("news@acme.example")
    page.get_by_label("Message").fill("Our spring catalogue is out.\n\nTen percent off until Sunday.")
    page.get_by_label("Layout").select_option(label=LAYOUT_NAME)
    # The list picker is a checkbox list with a filter box (a Ctrl-click multi-select fails on phones).
    page.get_by_label("Filter send to lists").fill("no such list")
    expect(page.get_by_text("No match.")).to_be_visible()
    page.get_by_label("Filter send to lists").fill(LIST_NAME[:4].lower())
    page.get_by_role("checkbox", name=LIST_NAME, exact=True).check()
    expect(page.get_by_test_id("recipients-preview")).to_contain_text("3 active recipients")
    screenshot(page, "31-campaign-form")
    page.get_by_role("button", name="Save draft").click()

    expect(page.get_by_text(f"Campaign '{CAMPAIGN_NAME}' saved as a draft.")).to_be_visible()
    expect(page.get_by_test_id("campaign-status")).to_have_text("draft")
    see_it_before_it_goes(page, screenshot)


def see_it_before_it_goes(page: Page, screenshot) -> None:
    """The preview: as the first customer will get it, then as another, on a phone."""
    expect(page.get_by_test_id("preview-subject")).to_have_text("Spring is here, Alice Martin")
    expect(page.get_by_test_id("preview-from")).to_have_text("Acme Shop <news@acme.example>")
    expect(page.get_by_test_id("preview-preheader")).to_contain_text("Hello Alice Martin from Paris,")
    frame = page.frame_locator("iframe[title='Message preview']")
    expect(frame.get_by_text("Ten percent off until Sunday.")).to_be_visible()
    screenshot(page, "31b-campaign-preview")
    page.get_by_label("Preview as subscriber (email)").fill("bob@example.com")
    page.get_by_role("button", name="Show", exact=True).click()
    expect(page.get_by_test_id("preview-subject")).to_have_text("Spring is here, Bob Stone")
    page.get_by_test_id("preview-phone").click()
    expect(page.get_by_test_id("preview-frame")).to_have_attribute("style", re.compile(r"width: 375px"))
    expect(frame.get_by_text("Hello Bob Stone from Berlin,")).to_be_visible()


def send_a_test(page: Page, mailapp_server: RunningApp) -> ReceivedMessage:
    page.get_by_label("Send a test to").fill(TESTER)
    page.get_by_role("button", name="Send test").click()
    expect(page.get_by_text(f"Test sent to {TESTER}.")).to_be_visible()
    test_message = wait_for_mail(mailapp_server, TESTER)
    assert test_message.message["Subject"] == "[Test] Spring is here, Jane Doe"
    assert "Our spring catalogue is out." in test_message.html()
    return test_message


def read_the_test_in_the_dev_inbox(page: Page, mailapp_server: RunningApp, test_message: ReceivedMessage,
                                   screenshot) -> None:
    """Under `make run` test sends land in the Dev inbox. Here the test SMTP server got it, so it is handed
    to the inbox's store, as the built-in dev SMTP server does, and read in the dashboard."""
    campaign_url = page.url
    DevInbox(mailapp_server.env["DEVINBOX_DIR"]).save(test_message.raw)
    nav(page, "Dev inbox")
    inbox = page.get_by_test_id("devinbox-table")
    expect(inbox.locator("tbody tr")).to_have_count(1)
    expect(inbox).to_contain_text(TESTER)
    screenshot(page, "34-dev-inbox")
    inbox.get_by_role("link", name="[Test] Spring is here, Jane Doe").click()
    # Received HTML must not run script in the dashboard's origin.
    expect(page.locator("iframe[title='Message HTML']")).to_have_attribute("sandbox", "")
    message_frame = page.frame_locator("iframe[title='Message HTML']")
    expect(message_frame.get_by_text("Our spring catalogue is out.")).to_be_visible()
    screenshot(page, "35-dev-inbox-message")
    page.goto(campaign_url)


def schedule_then_unschedule(page: Page) -> None:
    """Scheduled for tomorrow, then taken back to draft: Unschedule, unlike Cancel, is not final."""
    tomorrow = datetime.now(ZoneInfo(BROWSER_TIMEZONE)) + timedelta(days=1)
    page.get_by_label("Send at").fill(tomorrow.strftime("%Y-%m-%dT%H:%M"))
    page.get_by_test_id("schedule-form").get_by_role("button", name="Schedule").click()
    expect(page.get_by_test_id("campaign-status")).to_have_text("scheduled")
    page.get_by_test_id("action-unschedule").click()
    expect(page.get_by_text("Campaign unscheduled: it is a draft again.")).to_be_visible()
    expect(page.get_by_test_id("campaign-status")).to_have_text("draft")
    expect(page.get_by_test_id("action-unschedule")).to_have_count(0)


def schedule_shortly(page: Page, mailapp_server: RunningApp, screenshot) -> datetime:
    """Pick a time a few seconds ahead, on the browser's wall clock (not UTC), and see it shown back."""
    zone = ZoneInfo(BROWSER_TIMEZONE)
    picked = (datetime.now(zone) + timedelta(seconds=8)).replace(microsecond=0)
    # The first sign-in took the browser's zone as the account's: the schedule is picked in it.
    expect(page.get_by_label("Time zone")).to_have_value(BROWSER_TIMEZONE)
    page.get_by_label("Send at").fill(picked.strftime("%Y-%m-%dT%H:%M:%S"))
    page.get_by_test_id("schedule-form").get_by_role("button", name="Schedule").click()

    expect(page.get_by_text("Campaign scheduled.")).to_be_visible()
    expect(page.get_by_test_id("campaign-status")).to_have_text("scheduled")
    shown = page.get_by_test_id("send-at")
    expect(shown).to_have_attribute("datetime", picked.astimezone(UTC).isoformat())
    # Shown in the zone it was picked in, and saying which: what the marketer picked, not the UTC hour.
    expect(shown).to_have_text(f"{picked:%Y-%m-%d %H:%M} {picked.tzname()}")
    if datetime.now(UTC) < picked - timedelta(seconds=1):
        assert campaign_mail(mailapp_server) == [], "the campaign went out before its time"
    screenshot(page, "32-campaign-scheduled")
    return picked


def watch_it_go_out(page: Page, mailapp_server: RunningApp, picked: datetime, screenshot) -> float:
    """The page follows the send live, without a reload by the marketer, up to a full bar."""
    sent_bar = page.locator('#campaign-progress [data-bar="sent"]')
    expect(sent_bar).to_have_attribute("style", re.compile(r"width: 100(\.0+)?%"), timeout=SEND_TIMEOUT_MS)
    expect(page.get_by_test_id("campaign-status")).to_have_text("sent", timeout=SEND_TIMEOUT_MS)
    finished_at = time.monotonic()
    progress = page.locator("#campaign-progress")
    expect(progress.locator('[data-stat="sent"]')).to_have_text("3")
    expect(progress.locator('[data-stat="failed"]')).to_have_text("0")
    expect(page.get_by_test_id("delivery-log").locator("tbody tr")).to_have_count(3)
    screenshot(page, "33-campaign-sent")

    received = campaign_mail(mailapp_server)
    assert sorted(m.to for m in received) == sorted(CUSTOMERS), "each customer gets exactly one message"
    for message in received:
        # Not sent before its time: the Date header is stamped when the message is sent.
        assert parsedate_to_datetime(message.message["Date"]) >= picked.replace(microsecond=0)
        assert message.message["Subject"] == f"Spring is here, {CUSTOMERS[message.to]}"
    return finished_at


def open_report(page: Page, via: str) -> None:
    """From the campaign page's Report button, or from the dashboard's recent campaigns."""
    if via == "campaign page":
        page.get_by_role("main").get_by_role("link", name="Report", exact=True).click()
    else:
        page.get_by_role("link", name="✉ mailapp").click()
        page.get_by_role("main").get_by_role("link", name=CAMPAIGN_NAME).click()
    expect(page.get_by_role("heading", name=CAMPAIGN_NAME)).to_be_visible()
    expect(page).to_have_title(re.compile(r"^Report: "))


def reload_until(page: Page, figures: dict[str, str], timeout: float = 20.0) -> None:
    """The report is rendered by the server, and opens reach it through a buffer flushed every second:
    reload until every figure (by data-testid) reads as expected."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(page.get_by_test_id(testid).inner_text().strip() == text for testid, text in figures.items()):
            return
        page.wait_for_timeout(300)
        page.reload()
    for testid, text in figures.items():
        expect(page.get_by_test_id(testid)).to_have_text(text, timeout=1)


def subscribers_read_and_click(
    page: Page, reader: Page, mailapp_server: RunningApp, finished_at: float, screenshot
) -> None:
    open_report(page, via="campaign page")
    expect(page.get_by_test_id("sent")).to_have_text("3")
    expect(page.get_by_test_id("open-rate")).to_have_text("0.0%")
    chart = page.get_by_role("img", name="Opens and clicks over time")
    human_open_bars = chart.locator("rect title").filter(has_text=re.compile(r": 1 human open$"))
    click_bars = chart.locator("rect title").filter(has_text=re.compile(r": 1 click$"))
    expect(human_open_bars).to_have_count(0)
    expect(click_bars).to_have_count(0)
    screenshot(page, "40-report-before")

    alice = mail_to(mailapp_server, "alice@example.com")
    pixel_url = only(re.findall(r'src="([^"]*/o/[^"]+\.gif)"', alice.html()), "open pixel")
    click_url = only(re.findall(r'href="([^"]*/c/[^"]+)"', alice.html()), "tracked link")
    assert click_url.startswith(mailapp_server.base_url)

    # Apple Mail Privacy Protection fetches every pixel on arrival: counted, but as a machine.
    mpp = reader.request.get(pixel_url, headers={"User-Agent": "Mozilla/5.0"})
    assert mpp.status == 200
    assert mpp.headers["content-type"] == "image/gif"
    # A person reads a little later than the scanners that fetch within seconds of delivery.
    wait = MACHINE_WINDOW_SECONDS + 0.5 - (time.monotonic() - finished_at)
    if wait > 0:
        reader.wait_for_timeout(wait * 1000)
    opened = reader.goto(pixel_url)
    assert opened is not None
    assert opened.ok
    reader.goto(click_url)
    expect(reader.get_by_role("heading", name="Spring catalogue")).to_be_visible()
    assert reader.url.endswith("/spring?ref=newsletter")

    reload_until(page, {
        "opens": "2", "machine-opens": "1", "open-rate": "33.3%",
        "click-rate": "33.3%", "click-to-open": "100.0%",
    })
    expect(chart).to_be_visible()
    expect(human_open_bars).to_have_count(1)
    expect(click_bars).to_have_count(1)
    expect(page.get_by_role("img", name="Top links by clicks")).to_be_visible()
    # The top links table: the link, 1 click, 1 unique click.
    expect(page.get_by_role("row", name=re.compile(r"spring\?ref=newsletter 1 1$"))).to_be_visible()
    screenshot(page, "41-report-after-open-and-click")

    page.get_by_role("link", name="Recipients' activity").click()
    alice_row = page.get_by_role("row").filter(has_text="alice@example.com")
    expect(alice_row).to_contain_text("opened")
    expect(alice_row).to_contain_text("clicked")
    for other in ("bob@example.com", "chloe@example.com"):
        expect(page.get_by_role("row").filter(has_text=other)).not_to_contain_text("opened")
    screenshot(page, "42-report-recipients")


def unsubscribe_through_the_link(
    page: Page, reader: Page, mailapp_server: RunningApp, screenshot
) -> None:
    bob = mail_to(mailapp_server, "bob@example.com")
    header = bob.message["List-Unsubscribe"]
    unsubscribe_url = only(re.findall(r"<(http[^>]+/u/[^>]+)>", header), "List-Unsubscribe URL")
    assert unsubscribe_url in bob.html(), "the visible link and the header point to the same page"

    # Mail scanners prefetch links: the GET only asks.
    reader.goto(unsubscribe_url)
    expect(reader.get_by_role("heading", name="Unsubscribe?")).to_be_visible()
    expect(reader.get_by_text("bob@example.com")).to_be_visible()
    screenshot(reader, "50-unsubscribe-confirm")
    page.goto("/subscribers?q=bob%40example.com")
    expect(subscriber_row(page, "bob@example.com")).to_contain_text("active")

    reader.get_by_role("button", name="Unsubscribe").click()
    expect(reader.get_by_role("heading", name="You are unsubscribed")).to_be_visible()
    screenshot(reader, "51-unsubscribed")

    nav(page, "Subscribers")
    page.get_by_label("Status").select_option("unsubscribed")
    page.get_by_role("button", name="Filter").click()
    row = subscriber_row(page, "bob@example.com")
    expect(row).to_contain_text("unsubscribed")
    # Who unsubscribed, when, and from which campaign.
    expect(row).to_contain_text(re.compile(rf"since .+, via {CAMPAIGN_NAME}"))
    expect(subscriber_row(page, "alice@example.com")).to_have_count(0)
    screenshot(page, "52-subscribers-unsubscribed")
    row.get_by_role("link", name="bob@example.com").click()
    expect(page.get_by_test_id("subscription")).to_contain_text("unsubscribed")
    expect(page.get_by_role("button", name="Resubscribe")).to_be_visible()
    from_campaign = page.get_by_test_id("unsubscribed-campaign")
    from_campaign.get_by_role("link", name=CAMPAIGN_NAME, exact=True).click()
    expect(page.get_by_role("heading", name=CAMPAIGN_NAME)).to_be_visible()

    open_report(page, via="dashboard")
    reload_until(page, {"unsubscribes": "1"})


def subscriber_row(page: Page, email: str):
    return page.get_by_test_id("subscribers-table").locator("tbody tr").filter(has_text=email)


def only(found: list[str], what: str) -> str:
    assert len(set(found)) == 1, f"expected one {what}, found {found}"
    return found[0].replace("&amp;", "&")


def campaign_mail(mailapp_server: RunningApp) -> list[ReceivedMessage]:
    return [m for m in mailapp_server.smtp.messages if m.to in CUSTOMERS]


def mail_to(mailapp_server: RunningApp, address: str) -> ReceivedMessage:
    return only_message([m for m in mailapp_server.smtp.messages if m.to == address], address)


def only_message(messages: list[ReceivedMessage], address: str) -> ReceivedMessage:
    assert len(messages) == 1, f"expected one message to {address}, got {len(messages)}"
    return messages[0]


def wait_for_mail(mailapp_server: RunningApp, address: str, timeout: float = 15.0) -> ReceivedMessage:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [m for m in mailapp_server.smtp.messages if m.to == address]
        if found:
            return only_message(found, address)
        time.sleep(0.05)
    raise AssertionError(f"no message to {address} within {timeout}s")


def test_a_marketers_day(
    page: Page, reader_page: Page, mailapp_server: RunningApp, landing_site: str, screenshot, tmp_path: Path
) -> None:
    upload_layout(page, screenshot, layout_file(tmp_path, landing_site))
    import_subscribers(page, screenshot, tmp_path)
    create_campaign(page, screenshot)
    test_message = send_a_test(page, mailapp_server)
    read_the_test_in_the_dev_inbox(page, mailapp_server, test_message, screenshot)
    schedule_then_unschedule(page)
    picked = schedule_shortly(page, mailapp_server, screenshot)
    finished_at = watch_it_go_out(page, mailapp_server, picked, screenshot)
    subscribers_read_and_click(page, reader_page, mailapp_server, finished_at, screenshot)
    unsubscribe_through_the_link(page, reader_page, mailapp_server, screenshot)
    nav(page, "Campaigns")
    screenshot(page, "60-campaigns-list")
    nav(page, "Reports")
    expect(page.get_by_role("main").get_by_role("link", name=CAMPAIGN_NAME)).to_be_visible()
    screenshot(page, "62-reports")
    page.goto("/")
    screenshot(page, "61-dashboard-home")
