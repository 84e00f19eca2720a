"""The open pixel and the click redirect: what they record, what they refuse, and machine flags."""

from __future__ import annotations

import socket
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from mailapp.extensions import db
from mailapp.models import CampaignStats, ClickEvent, Delivery, OpenEvent
from mailapp.sending import tokens
from mailapp.tracking import machine, opens, services
from mailapp.tracking.opens import OpenHit
from tests.tracking_fixtures import READER_UA, empty_open_buffer, make_campaign, make_delivery, settle

__all__ = ["empty_open_buffer"]

READER = {"User-Agent": READER_UA}
REMOTE = {"REMOTE_ADDR": "203.0.113.77"}


def count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def stats(campaign_id: int) -> CampaignStats:
    db.session.expire_all()
    return db.session.get(CampaignStats, campaign_id)


def open_path(delivery_id: int) -> str:
    return f"/o/{tokens.make_token('open', delivery_id)}.gif"


def click_path(delivery_id: int, position: int) -> str:
    return f"/c/{tokens.make_token('click', delivery_id, position)}"


def assert_pixel(response) -> None:
    assert response.status_code == 200
    assert response.mimetype == "image/gif"
    assert response.data.startswith(b"GIF89a")
    assert len(response.data) < 100
    assert "no-store" in response.headers["Cache-Control"]
    assert "no-cache" in response.headers["Cache-Control"]
    assert response.headers["Pragma"] == "no-cache"


def tampered(token: str) -> list[str]:
    payload, _, signature = token.rpartition(".")
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    return [
        token[:-1],  # truncated
        token[: len(token) // 2],
        f"{payload}.{flipped}",  # altered signature
        f"{int(payload.split('-')[0], 16) + 1:x}{payload[len(payload.split('-')[0]):]}.{signature}",
        f"{payload}.",
        "garbage",
        "",
    ]


# --- the pixel --------------------------------------------------------------------------------------


@pytest.mark.parametrize("token", ["nonsense", "1.2.3", "%00", "a" * 300, "x.y", "a/b/c", ""])
def test_pixel_answers_a_gif_for_garbage_and_records_nothing(client, token):
    make_delivery(make_campaign())
    assert_pixel(client.get(f"/o/{token}.gif"))
    settle()
    assert count(OpenEvent) == 0


def test_pixel_records_an_open_with_truncated_ip_and_updates_the_delivery(client):
    delivery = make_delivery(make_campaign())
    response = client.get(open_path(delivery.id), headers=READER, environ_base=REMOTE)
    assert_pixel(response)
    assert settle() in (0, 1)
    event = db.session.scalars(select(OpenEvent)).one()
    assert (event.delivery_id, event.campaign_id) == (delivery.id, delivery.campaign_id)
    assert event.ip == "203.0.113.0"
    assert event.user_agent == READER_UA
    assert event.is_machine is False
    db.session.refresh(delivery)
    assert delivery.open_count == 1
    assert delivery.first_opened_at == event.at
    s = stats(delivery.campaign_id)
    assert (s.opens, s.machine_opens, s.unique_opens) == (1, 0, 1)


def test_ipv6_is_truncated_to_48_bits(client):
    delivery = make_delivery(make_campaign())
    client.get(open_path(delivery.id), headers=READER, environ_base={"REMOTE_ADDR": "2001:db8:1234:5678::9"})
    settle()
    assert db.session.scalars(select(OpenEvent.ip)).one() == "2001:db8:1234::"


def test_tampered_and_other_kind_tokens_record_nothing(client):
    delivery = make_delivery(make_campaign())
    good = tokens.make_token("open", delivery.id)
    others = [tokens.make_token(kind, delivery.id) for kind in ("unsubscribe", "view")]
    others.append(tokens.make_token("click", delivery.id, 0))
    for token in tampered(good) + others:
        assert_pixel(client.get(f"/o/{token}.gif", headers=READER))
    settle()
    assert count(OpenEvent) == 0
    db.session.refresh(delivery)
    assert delivery.open_count == 0
    assert delivery.first_opened_at is None


def test_open_of_a_deleted_delivery_is_dropped(client):
    delivery = make_delivery(make_campaign())
    path = open_path(delivery.id)
    db.session.delete(delivery)
    db.session.commit()
    assert_pixel(client.get(path, headers=READER))
    settle()
    assert count(OpenEvent) == 0


def test_repeated_opens_count_once_as_unique(client):
    campaign = make_campaign()
    first, second = make_delivery(campaign), make_delivery(campaign)
    for _ in range(3):
        client.get(open_path(first.id), headers=READER)
    client.get(open_path(second.id), headers=READER)
    settle()
    s = stats(campaign.id)
    assert (s.opens, s.unique_opens, s.machine_opens) == (4, 2, 0)
    db.session.refresh(first)
    assert first.open_count == 3


@pytest.mark.parametrize(
    "user_agent",
    [
        "Mozilla/5.0",
        "Mozilla/5.0 (compatible; Barracuda Sentinel)",
        "Mimecast URL Protect",
        "",
    ],
)
def test_machine_user_agents_are_flagged_and_not_unique_opens(client, user_agent):
    delivery = make_delivery(make_campaign())
    client.get(open_path(delivery.id), headers={"User-Agent": user_agent})
    settle()
    assert db.session.scalars(select(OpenEvent.is_machine)).one() is True
    s = stats(delivery.campaign_id)
    assert (s.opens, s.machine_opens, s.unique_opens) == (1, 1, 0)


GMAIL_PROXY_UA = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
YAHOO_PROXY_UA = "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html"


@pytest.mark.parametrize(("user_agent", "proxy"), [(GMAIL_PROXY_UA, "gmail"), (YAHOO_PROXY_UA, "yahoo")])
def test_an_open_through_gmails_or_yahoos_proxy_is_a_human_open_and_a_proxy_open(client, user_agent, proxy):
    campaign = make_campaign()
    reader, other = make_delivery(campaign), make_delivery(campaign)
    client.get(open_path(reader.id), headers={"User-Agent": user_agent})
    client.get(open_path(reader.id), headers={"User-Agent": user_agent})
    client.get(open_path(other.id), headers=READER)
    settle()
    events = db.session.execute(
        select(OpenEvent.delivery_id, OpenEvent.is_machine, OpenEvent.via_proxy).order_by(OpenEvent.id)
    ).all()
    assert [tuple(event) for event in events] == [
        (reader.id, False, proxy), (reader.id, False, proxy), (other.id, False, None)
    ]
    s = stats(campaign.id)
    assert (s.opens, s.machine_opens, s.unique_opens, s.proxy_opens) == (3, 0, 2, 2)


def only_open_event() -> tuple[bool, str | None]:
    return tuple(db.session.execute(select(OpenEvent.is_machine, OpenEvent.via_proxy)).one())


def test_an_apple_mpp_open_is_a_machine_open_through_its_proxy(client):
    delivery = make_delivery(make_campaign())
    client.get(open_path(delivery.id), headers={"User-Agent": machine.APPLE_MPP_USER_AGENT})
    settle()
    assert only_open_event() == (True, "apple_mpp")
    s = stats(delivery.campaign_id)
    assert (s.opens, s.machine_opens, s.unique_opens, s.proxy_opens) == (1, 1, 0, 0)


def test_a_proxy_fetch_seconds_after_sending_is_still_a_machine_open(client):
    delivery = make_delivery(make_campaign(), sent_ago=timedelta(seconds=0))
    client.get(open_path(delivery.id), headers={"User-Agent": GMAIL_PROXY_UA})
    settle()
    assert only_open_event() == (True, "gmail")
    s = stats(delivery.campaign_id)
    assert (s.opens, s.machine_opens, s.unique_opens, s.proxy_opens) == (1, 1, 0, 0)


def test_a_click_with_an_image_proxys_user_agent_is_a_machines():
    assert machine.is_machine_user_agent(GMAIL_PROXY_UA)
    assert machine.is_machine_user_agent(YAHOO_PROXY_UA)
    assert machine.classify_open(GMAIL_PROXY_UA) == machine.OpenClass(is_machine=False, via_proxy="gmail")
    assert machine.classify_open(READER_UA) == machine.OpenClass(is_machine=False, via_proxy=None)
    assert machine.classify_open("Mimecast URL Protect") == machine.OpenClass(is_machine=True, via_proxy=None)


def test_an_open_seconds_after_sending_is_a_machine_open(client):
    campaign = make_campaign()
    just_sent = make_delivery(campaign, sent_ago=timedelta(seconds=0))
    later = make_delivery(campaign, sent_ago=timedelta(seconds=machine.DEFAULT_EARLY_SECONDS + 5))
    client.get(open_path(just_sent.id), headers=READER)
    client.get(open_path(later.id), headers=READER)
    settle()
    flags = dict(db.session.execute(select(OpenEvent.delivery_id, OpenEvent.is_machine)).all())
    assert flags == {just_sent.id: True, later.id: False}


def test_machine_rules():
    assert machine.is_machine_user_agent("Mozilla/5.0")
    assert not machine.is_machine_user_agent(READER_UA)
    assert not machine.is_machine_user_agent("Microsoft Outlook 16.0.17126; Pro")
    assert machine.truncate_ip("10.1.2.3") == "10.1.2.0"
    assert machine.truncate_ip("::ffff:10.1.2.3") == "10.1.2.0"
    assert machine.truncate_ip("not an ip") == ""


def test_replayed_buffer_entries_are_not_counted_twice():
    delivery = make_delivery(make_campaign())
    hits = [OpenHit(delivery.id, services.utcnow(), READER_UA, "", buffer_key=f"1-{n}") for n in range(3)]
    assert opens.record_opens(hits) == 3
    db.session.commit()
    # A flush that crashed after its commit replays the same entries: nothing is added.
    assert opens.record_opens(hits + [OpenHit(delivery.id, services.utcnow(), READER_UA, "", "2-0")]) == 1
    db.session.commit()
    db.session.refresh(delivery)
    assert count(OpenEvent) == 4
    assert delivery.open_count == 4
    assert stats(delivery.campaign_id).opens == 4


# --- the buffer (Redis) ---------------------------------------------------------------------------


def test_every_buffered_open_is_counted_after_the_flush(app, client):
    if not app.config["REDIS_URL"]:
        pytest.skip("the open buffer needs Redis: covered by the PostgreSQL + Redis pass")
    campaign = make_campaign()
    deliveries = [make_delivery(campaign) for _ in range(7)]
    for n in range(301):
        client.get(open_path(deliveries[n % 7].id), headers=READER)
    # Nothing is in the database until the flush: the pixel did no database work.
    assert count(OpenEvent) == 0
    assert opens.buffered_open_count() == 301
    assert settle() == 301
    assert opens.buffered_open_count() == 0
    assert count(OpenEvent) == 301
    assert db.session.scalar(select(func.sum(Delivery.open_count))) == 301
    s = stats(campaign.id)
    assert (s.opens, s.unique_opens) == (301, 7)


def test_buffer_flushes_in_batches_and_a_second_flush_finds_nothing(app, client, monkeypatch):
    if not app.config["REDIS_URL"]:
        pytest.skip("the open buffer needs Redis: covered by the PostgreSQL + Redis pass")
    from mailapp.tracking import buffer

    monkeypatch.setattr(buffer, "FLUSH_BATCH", 10)
    delivery = make_delivery(make_campaign())
    for _ in range(35):
        client.get(open_path(delivery.id), headers=READER)
    assert opens.flush_open_buffer(max_events=20) == 20
    assert opens.buffered_open_count() == 15
    assert settle() == 15
    assert settle() == 0
    db.session.refresh(delivery)
    assert delivery.open_count == 35


def test_flush_task_moves_the_buffer(app, client):
    if not app.config["REDIS_URL"]:
        pytest.skip("the open buffer needs Redis: covered by the PostgreSQL + Redis pass")
    from mailapp.tracking.tasks import flush_open_events

    delivery = make_delivery(make_campaign())
    client.get(open_path(delivery.id), headers=READER)
    assert flush_open_events.run() == 1
    assert count(OpenEvent) == 1


# --- clicks -----------------------------------------------------------------------------------------


def test_click_redirects_to_the_stored_link_and_records_it(client):
    delivery = make_delivery(make_campaign())
    response = client.get(click_path(delivery.id, 1), headers=READER, environ_base=REMOTE)
    assert response.status_code == 302
    assert response.headers["Location"] == "https://example.com/news?a=1&b=2"
    event = db.session.scalars(select(ClickEvent)).one()
    assert (event.delivery_id, event.is_machine, event.ip) == (delivery.id, False, "203.0.113.0")
    db.session.refresh(delivery)
    assert delivery.click_count == 1
    assert delivery.first_clicked_at == event.at


def test_a_click_counts_as_an_open_for_a_reader_whose_images_were_blocked(client):
    campaign = make_campaign()
    clicker, opener = make_delivery(campaign), make_delivery(campaign)
    client.get(click_path(clicker.id, 0), headers=READER)
    client.get(click_path(clicker.id, 2), headers=READER)
    client.get(open_path(opener.id), headers=READER)
    client.get(click_path(opener.id, 0), headers=READER)
    client.get(open_path(clicker.id), headers=READER)
    settle()
    s = stats(campaign.id)
    assert (s.unique_opens, s.opens, s.clicks, s.unique_clicks) == (2, 2, 3, 2)


def test_click_token_of_one_campaign_cannot_reach_another_campaigns_link(client):
    mine = make_campaign(["https://mine.example/a"])
    make_campaign(["https://theirs.example/a", "https://theirs.example/b"])
    delivery = make_delivery(mine)
    assert client.get(click_path(delivery.id, 0)).headers["Location"] == "https://mine.example/a"
    # Position 1 exists only in the other campaign: no redirect, nothing written.
    response = client.get(click_path(delivery.id, 1))
    assert response.status_code == 404
    assert "Location" not in response.headers
    assert count(ClickEvent) == 1


def test_bad_click_tokens_give_a_404_and_write_nothing(client):
    delivery = make_delivery(make_campaign())
    good = tokens.make_token("click", delivery.id, 0)
    bad = tampered(good)[:-1] + [
        tokens.make_token("open", delivery.id),
        tokens.make_token("click", delivery.id + 1000, 0),
        tokens.make_token("click", delivery.id, 99),
    ]
    for token in bad:
        response = client.get(f"/c/{token}?next=https://evil.example/")
        assert response.status_code == 404, token
        assert "evil.example" not in response.headers.get("Location", "")
    assert count(ClickEvent) == 0
    db.session.refresh(delivery)
    assert delivery.click_count == 0


def test_a_stored_link_that_is_not_http_is_never_a_redirect_target(client):
    delivery = make_delivery(make_campaign(["javascript:alert(1)"]))
    assert client.get(click_path(delivery.id, 0)).status_code == 404
    assert count(ClickEvent) == 0


@pytest.mark.parametrize("user_agent", ["Mimecast URL Protect", "Proofpoint ppops-url-defense", "curl/8.0"])
def test_scanner_clicks_are_flagged_and_kept_out_of_clicks(client, user_agent):
    delivery = make_delivery(make_campaign())
    assert client.get(click_path(delivery.id, 0), headers={"User-Agent": user_agent}).status_code == 302
    s = stats(delivery.campaign_id)
    assert (s.clicks, s.unique_clicks, s.scanner_clicks, s.unique_opens) == (0, 0, 1, 0)
    assert db.session.scalars(select(ClickEvent.is_machine)).one() is True


def test_a_click_seconds_after_sending_is_a_scanner_click(client):
    delivery = make_delivery(make_campaign(), sent_ago=timedelta(0))
    client.get(click_path(delivery.id, 0), headers=READER)
    assert stats(delivery.campaign_id).scanner_clicks == 1


def test_pixel_writes_the_open_directly_when_redis_is_down(app, client, monkeypatch):
    from mailapp.tracking import buffer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    monkeypatch.setitem(app.config, "REDIS_URL", f"redis://127.0.0.1:{dead_port}/0")
    delivery = make_delivery(make_campaign())
    assert_pixel(client.get(open_path(delivery.id), headers=READER))
    assert count(OpenEvent) == 1
    db.session.refresh(delivery)
    assert delivery.open_count == 1
    buffer.appender(buffer.redis_client()).close()


def test_buffer_entries_keep_user_agents_with_any_character():
    from mailapp.tracking import buffer

    parsed = buffer.parse_entry(b"17-3", {b"e": "5|1700000000.250000|10.0.0.0|Odd | agent | é".encode()})
    assert parsed["delivery_id"] == 5
    assert parsed["user_agent"] == "Odd | agent | é"
    assert parsed["buffer_key"] == "17-3"
    assert parsed["at"].timestamp() == 1700000000.25
    assert buffer.parse_entry(b"1-0", {b"e": b"not an entry"}) is None
    assert buffer.parse_entry(b"1-0", {}) is None


def test_redis_over_tls_or_a_unix_socket_goes_through_redis_py():
    import redis as redis_py

    from mailapp.tracking import buffer

    assert buffer.StreamAppender(redis_py.Redis.from_url("redis://127.0.0.1:6379/0")).plain_tcp is True
    assert buffer.StreamAppender(redis_py.Redis.from_url("rediss://127.0.0.1:6380/0")).plain_tcp is False
    assert buffer.StreamAppender(redis_py.Redis.from_url("unix:///tmp/redis.sock?db=1")).plain_tcp is False


def test_the_redis_py_path_appends_the_same_entries(app, client):
    if not app.config["REDIS_URL"]:
        pytest.skip("the open buffer needs Redis: covered by the PostgreSQL + Redis pass")
    from mailapp.tracking import buffer

    delivery = make_delivery(make_campaign())
    appender = buffer.StreamAppender(buffer.redis_client())
    appender.plain_tcp = False
    target = f"{delivery.id}:{delivery.campaign_id}:{delivery.subscriber_id}"  # as a v2 token binds it
    appender.append(f"{target}|1700000000.5|10.1.2.0|{READER_UA}".encode())
    assert settle() == 1
    event = db.session.scalars(select(OpenEvent)).one()
    assert (event.delivery_id, event.ip, event.user_agent) == (delivery.id, "10.1.2.0", READER_UA)
