"""The navigation bar marks the area of the page you are on."""

import re

import pytest

ACTIVE_RE = re.compile(r'class="nav-link active"[^>]*>([^<]+)</a>')


@pytest.mark.parametrize(
    ("path", "label"),
    [
        ("/campaigns/", "Campaigns"),
        ("/reports/", "Reports"),
        ("/subscribers", "Subscribers"),
        ("/subscribers/new", "Subscribers"),
        ("/lists", "Lists"),
        ("/layouts/", "Layouts"),
        ("/dev/inbox/", "Dev inbox"),
    ],
)
def test_the_current_area_is_marked(auth_client, path, label):
    page = auth_client.get(path)
    assert page.status_code == 200
    assert ACTIVE_RE.findall(page.get_data(as_text=True)) == [label]


def test_a_list_page_marks_lists_not_subscribers(auth_client, db):
    from tests.factories import SubscriberListFactory

    target = SubscriberListFactory()
    page = auth_client.get(f"/lists/{target.id}")
    assert ACTIVE_RE.findall(page.get_data(as_text=True)) == ["Lists"]


def test_the_dev_inbox_link_is_hidden_when_disabled(auth_client, app, monkeypatch):
    monkeypatch.setitem(app.config, "DEVINBOX_ENABLED", False)
    assert "Dev inbox" not in auth_client.get("/").get_data(as_text=True)


def test_the_favicon_is_served_to_anyone(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 200
    assert response.mimetype == "image/vnd.microsoft.icon"
    # An ICO header: reserved 0, type 1 (icon), at least one image.
    assert response.data[:4] == b"\x00\x00\x01\x00"
    assert int.from_bytes(response.data[4:6], "little") >= 1
    response.close()
