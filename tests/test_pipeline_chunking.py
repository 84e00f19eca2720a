"""SMTP submission with CHUNKING (RFC 3030 BDAT) and PIPELINING: several messages in flight on one
connection, against real servers (a BDAT-capable aiosmtpd, a delaying proxy, Postfix): bytes arrive
unstuffed, refusals mid-window land on their own message, a broken connection says which messages are
in doubt, and the engine retries those and re-queues the rest."""

from __future__ import annotations

import os
import smtplib
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from bench.delaying_proxy import DelayingProxy
from mailapp.sending import engine, pipeline
from mailapp.sending.pipeline import ConnectionLost, Outgoing
from tests.smtp import ChunkingSMTPTestServer
from tests.test_pipeline import _messages
from tests.test_sending import deliveries, make_campaign, wait_for_status


@pytest.fixture(scope="module")
def chunking_server() -> Iterator[ChunkingSMTPTestServer]:
    server = ChunkingSMTPTestServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def bdat_server(chunking_server: ChunkingSMTPTestServer) -> ChunkingSMTPTestServer:
    chunking_server.reset()
    chunking_server.handler.chunking = True
    return chunking_server


def _submit_all(port: int, messages: list[Outgoing], **options: object) -> list[pipeline.Submitted]:
    with smtplib.SMTP("127.0.0.1", port) as host:
        return list(pipeline.submit(host, messages, **options))


@pytest.mark.backend_free
@pytest.mark.parametrize("window", [2, 3, 50])
def test_bdat_delivers_each_message_unstuffed_and_refusals_land_on_their_own_message(
    bdat_server: ChunkingSMTPTestServer, window: int
) -> None:
    bdat_server.script_replies("reader2@example.com", ["550 5.1.1 No such user"])
    bdat_server.script_replies("reader3@example.com", ["452 4.2.2 Mailbox full"])
    bdat_server.script_replies("reader6@example.com", ["550 5.1.1 No such user"])
    messages = _messages(8)
    answers = _submit_all(bdat_server.port, messages, window=window)
    assert [answer.message.key for answer in answers] == list(range(8))
    assert [answer.code for answer in answers] == [250, 250, 550, 452, 250, 250, 550, 250]
    assert "No such user" in answers[2].reply
    assert "Mailbox full" in answers[3].reply
    received = {message.to: message.raw for message in bdat_server.messages}
    assert sorted(received) == [f"reader{n}@example.com" for n in (0, 1, 4, 5, 7)]
    for n in (0, 1, 4, 5, 7):
        # Exactly the bytes given: lines that start with a dot are not doubled under BDAT.
        assert received[f"reader{n}@example.com"] == messages[n].data


@pytest.mark.backend_free
def test_chunking_off_or_not_offered_falls_back_to_data(bdat_server: ChunkingSMTPTestServer) -> None:
    messages = _messages(3)
    assert [a.code for a in _submit_all(bdat_server.port, messages, window=8, chunking=False)] == [250] * 3
    bdat_server.handler.chunking = False
    assert [a.code for a in _submit_all(bdat_server.port, messages, window=8)] == [250] * 3
    assert [m.raw for m in bdat_server.messages] == [m.data for m in messages] * 2


@pytest.mark.backend_free
def test_the_window_is_how_many_messages_share_a_round_trip(bdat_server: ChunkingSMTPTestServer) -> None:
    """Behind a proxy that holds every reply back 50 ms: window 1 (DATA, as without CHUNKING) waits a
    round trip a message, a window of 20 sends the 40 messages in a few round trips."""
    delay, count = 0.05, 40
    timings = {}
    with DelayingProxy("127.0.0.1", bdat_server.port, delay=delay) as proxy:
        for window in (1, 20):
            started = time.perf_counter()
            answers = _submit_all(proxy.port, _messages(count, tag=f".w{window}"), window=window)
            timings[window] = time.perf_counter() - started
            assert [answer.code for answer in answers] == [250] * count
    assert timings[1] >= count * delay
    assert timings[20] < count * delay / 4, timings


@pytest.mark.backend_free
def test_a_drop_with_messages_in_flight_reports_them_in_doubt_and_the_built_one_unsent(
    bdat_server: ChunkingSMTPTestServer,
) -> None:
    bdat_server.handler.hang_up_on.add("reader3@example.com")
    messages = _messages(10)
    answers: list[pipeline.Submitted] = []
    with smtplib.SMTP("127.0.0.1", bdat_server.port) as host, pytest.raises(ConnectionLost) as lost:
        answers.extend(pipeline.submit(host, iter(messages), window=4))
    answered = [answer.message.key for answer in answers]
    in_doubt, unsent = lost.value.in_doubt, lost.value.unsent
    # Answered in order up to the message the server hung up on; a write that meets the reset may lose
    # answers the server had already sent, and those messages are in doubt too (never silently lost).
    assert answered == list(range(len(answered)))
    assert len(answered) <= 3
    assert messages[3] in in_doubt
    assert len(in_doubt) <= 4  # the window bounds what a drop leaves in doubt
    assert len(unsent) == 1  # built while the answers were awaited, never written whole
    assert [m.key for m in in_doubt + unsent] == list(range(len(answered), len(answered) + len(in_doubt) + 1))
    assert sorted(m.to for m in bdat_server.messages) == [f"reader{n}@example.com" for n in (0, 1, 2)]


@pytest.mark.backend_free
def test_a_failure_while_building_waits_for_the_answers_in_flight(
    bdat_server: ChunkingSMTPTestServer,
) -> None:
    """A time limit while building the next message reaches the caller only once the messages already
    written are answered, so none of them is handed back to be sent twice."""
    messages = _messages(6, tag=".stop")
    answers: list[pipeline.Submitted] = []

    def building() -> Iterator[Outgoing]:
        for message in messages:
            if message.key == 3:
                raise TimeoutError("building took too long")
            yield message

    with smtplib.SMTP("127.0.0.1", bdat_server.port) as host, pytest.raises(TimeoutError):
        answers.extend(pipeline.submit(host, building(), window=8, finish_on=(TimeoutError,)))
    assert [(answer.message.key, answer.code) for answer in answers] == [(0, 250), (1, 250), (2, 250)]
    assert len(bdat_server.messages) == 3


def test_the_engine_retries_the_messages_in_doubt_and_requeues_the_unsent(
    db, app, bdat_server: ChunkingSMTPTestServer, monkeypatch
) -> None:
    monkeypatch.setitem(app.config, "SEND_RETRY_BASE_SECONDS", 0.2)
    monkeypatch.setitem(app.config, "SEND_SMTP_PIPELINE_WINDOW", 4)
    # A drop that leaves several messages in doubt is one failure in a row, not one per message.
    monkeypatch.setitem(app.config, "SEND_MAX_CONSECUTIVE_FAILURES", 2)
    monkeypatch.setattr(app.extensions["mail"], "port", bdat_server.port)
    campaign, people = make_campaign(count=9)
    hung_up_on = deliveries(campaign.id)[2].email
    bdat_server.handler.hang_up_on.add(hung_up_on.lower())
    first_run = engine.send_campaign(campaign.id)
    assert first_run.stopped == ""
    rows = {row.email: row for row in deliveries(campaign.id)}
    in_doubt = {email: row for email, row in rows.items() if row.status == "pending"}
    assert hung_up_on in in_doubt
    assert 1 <= len(in_doubt) <= 4  # the window bounds what a drop leaves in doubt
    assert all(row.attempts == 1 and "lost" in row.error for row in in_doubt.values())
    assert {row.status for email, row in rows.items() if email not in in_doubt} <= {"sent", "failed"}
    time.sleep(first_run.retry_in)
    engine.send_campaign(campaign.id)
    received = Counter(message.to for message in bdat_server.messages)
    assert set(received) == {p.email for p in people}
    # The message hung up on was never kept, so its retry is its only copy.
    assert received[hung_up_on] == 1
    # An earlier message's answer can die in the reset after the server kept it (as in the test
    # above): that message is in doubt and its retry may deliver it a second time. Only a message in
    # doubt may arrive twice, and none more than twice.
    assert all(count == 1 or (email in in_doubt and count == 2) for email, count in received.items())
    assert all(row.status == "sent" for row in deliveries(campaign.id) if row.email in in_doubt)
    assert wait_for_status(campaign.id, "sent").status == "sent"


@pytest.mark.backend_free
@pytest.mark.skipif(os.geteuid() != 0, reason="a private Postfix instance needs root")
def test_postfix_takes_bdat_with_a_window_and_a_refused_recipient_mid_window() -> None:
    from tests.postfix import PostfixInstance

    postfix = PostfixInstance({"example.com": "discard:"})
    refusals = postfix.directory / "refusals"  # a folder Postfix's own user can read
    refusals.write_text("reader4@example.com REJECT 5.1.1 no such user\n")
    postfix.settings["smtpd_recipient_restrictions"] = (
        f"check_recipient_access texthash:{refusals}, permit_mynetworks, reject"
    )
    with postfix:
        messages = _messages(12)
        with smtplib.SMTP("127.0.0.1", postfix.port) as host:
            host.ehlo()
            assert host.has_extn("chunking")
            assert host.has_extn("pipelining")
            answers = list(pipeline.submit(host, messages, window=5))
        assert [answer.message.key for answer in answers] == list(range(12))
        assert [answer.code for answer in answers] == [250] * 4 + [554] + [250] * 7
        assert "no such user" in answers[4].reply
        # Every message after the refusal was taken: no transaction was left open.
        postfix.wait_for_log(r"disconnect from .* bdat=11/12")
        for n in (0, 1, 2, 3, 5, 11):
            postfix.wait_for_log(rf"to=<reader{n}@example\.com>, relay=none.*status=sent")
