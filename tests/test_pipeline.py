"""SMTP submission (mailapp.sending.pipeline): messages arrive byte for byte, PIPELINING is used when
offered and only then, and a broken connection says which messages are in doubt."""

from __future__ import annotations

import select
import smtplib
import socket
import threading
from collections.abc import Iterator

import pytest

from mailapp.sending import pipeline
from mailapp.sending.pipeline import ConnectionLost, Outgoing, dot_stuffed

pytestmark = pytest.mark.backend_free


def test_dot_stuffing_doubles_leading_dots_and_ends_the_data() -> None:
    assert dot_stuffed(b".first\r\nmiddle\r\n.\r\n..two\r\nlast") == (
        b"..first\r\nmiddle\r\n..\r\n...two\r\nlast\r\n.\r\n"
    )
    assert dot_stuffed(b"plain\r\n") == b"plain\r\n.\r\n"


def _messages(count: int, tag: str = "") -> list[Outgoing]:
    return [
        Outgoing(
            key=n, mail_from="news@example.com", rcpt_to=f"reader{n}{tag}@example.com",
            data=(
                f"Subject: number {n}\r\nTo: reader{n}@example.com\r\n\r\n"
                f".a line that starts with a dot\r\n..and two\r\n.\r\nend of {n}\r\n"
            ).encode("ascii"),
        )
        for n in range(count)
    ]


@pytest.mark.parametrize("relay_pipelining", [True, False], ids=["pipelining", "lockstep"])
def test_every_message_arrives_byte_for_byte(smtp_server, relay_pipelining: bool) -> None:
    smtp_server.handler.pipelining = relay_pipelining
    smtp_server.script_replies("reader2@example.com", ["550 5.1.1 No such user"])
    smtp_server.script_replies("reader4@example.com", ["452 4.2.2 Mailbox full"])
    messages = _messages(7)
    with smtplib.SMTP("127.0.0.1", smtp_server.port) as host:
        answers = {submitted.message.key: submitted for submitted in pipeline.submit(host, messages)}
    assert sorted(answers) == list(range(7))
    assert (answers[2].code, answers[2].accepted) == (550, False)
    assert "No such user" in answers[2].reply
    assert (answers[4].code, answers[4].accepted) == (452, False)
    assert all(answers[n].accepted for n in (0, 1, 3, 5, 6))
    received = {message.to: message.raw for message in smtp_server.messages}
    assert sorted(received) == [f"reader{n}@example.com" for n in (0, 1, 3, 5, 6)]
    for n in (0, 1, 3, 5, 6):
        assert received[f"reader{n}@example.com"].replace(b"\r\n", b"\n") == messages[n].data.replace(
            b"\r\n", b"\n"
        )


class WatchfulRelay:
    """A bare SMTP server on a real socket that watches how the client talks to it.

    Offering PIPELINING, it holds back its answer to each message's data until the next message's
    MAIL FROM has arrived (or a second passed): each time a client waits for that answer first is
    counted in `waited`. Not offering it, it checks before every answer whether the client has
    already sent more (`ran_ahead`)."""

    def __init__(self, *, offer_pipelining: bool) -> None:
        self.offer_pipelining = offer_pipelining
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.waited = 0
        self.ran_ahead = 0
        self.messages: list[bytes] = []
        self.buffer = b""
        self.connection: socket.socket | None = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.connection, _ = self.listener.accept()
        with self.connection:
            self._answer(b"220 watchful ESMTP")
            held_back = False
            while (line := self._readline()) is not None:
                command = line.upper()
                if command.startswith(b"EHLO"):
                    offer = b"250-PIPELINING\r\n" if self.offer_pipelining else b""
                    self._answer(b"250-watchful\r\n" + offer + b"250 8BITMIME")
                elif command.startswith(b"MAIL"):
                    if held_back:
                        self._answer(b"250 2.0.0 queued")
                        held_back = False
                    self._answer(b"250 2.1.0 OK")
                elif command.startswith((b"RCPT", b"RSET")):
                    self._answer(b"250 OK")
                elif command == b"DATA":
                    self._answer(b"354 go ahead")
                    self.messages.append(b"\r\n".join(iter(self._readline, b".")))
                    if self.offer_pipelining and self._pending(1.0):
                        held_back = True
                    else:
                        self.waited += self.offer_pipelining
                        self._answer(b"250 2.0.0 queued")
                elif command == b"QUIT":
                    self._answer(b"221 bye")
                    return

    def _readline(self) -> bytes | None:
        while b"\r\n" not in self.buffer:
            chunk = self.connection.recv(65536)
            if not chunk:
                return None
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def _pending(self, seconds: float) -> bool:
        return bool(self.buffer) or bool(select.select([self.connection], [], [], seconds)[0])

    def _answer(self, reply: bytes) -> None:
        if not self.offer_pipelining and self._pending(0.05):
            self.ran_ahead += 1
        self.connection.sendall(reply + b"\r\n")


@pytest.fixture
def relay_factory() -> Iterator[type[WatchfulRelay]]:
    relays: list[WatchfulRelay] = []

    def make(*, offer_pipelining: bool) -> WatchfulRelay:
        relay = WatchfulRelay(offer_pipelining=offer_pipelining)
        relays.append(relay)
        return relay

    yield make  # type: ignore[misc]
    for relay in relays:
        relay.listener.close()


def test_with_pipelining_the_next_envelope_rides_with_the_data(relay_factory) -> None:
    relay = relay_factory(offer_pipelining=True)
    with smtplib.SMTP("127.0.0.1", relay.port) as host:
        answers = list(pipeline.submit(host, _messages(5)))
    assert [answer.code for answer in answers] == [250] * 5
    assert len(relay.messages) == 5
    # The relay held back its answer to the first four messages' data, and each time the next MAIL FROM
    # came without it; only after the last message, with no envelope left to send, did the client wait.
    assert relay.waited == 1


def test_without_pipelining_each_command_waits_for_its_answer(relay_factory) -> None:
    relay = relay_factory(offer_pipelining=False)
    with smtplib.SMTP("127.0.0.1", relay.port) as host:
        answers = list(pipeline.submit(host, _messages(4)))
    assert [answer.code for answer in answers] == [250] * 4
    assert len(relay.messages) == 4
    assert relay.ran_ahead == 0


def test_a_relay_that_hangs_up_reports_the_message_in_doubt_and_the_unsent_one(smtp_server) -> None:
    smtp_server.handler.hang_up_on.add("reader1@example.com")
    messages = _messages(4)
    answers = []
    with smtplib.SMTP("127.0.0.1", smtp_server.port) as host, pytest.raises(ConnectionLost) as lost:
        answers.extend(pipeline.submit(host, iter(messages)))
    assert [answer.message.key for answer in answers] == [0]
    assert lost.value.in_doubt == [messages[1]]
    assert lost.value.unsent == [messages[2]]


def _failing_at(messages: list[Outgoing], key: int, error: BaseException) -> Iterator[Outgoing]:
    for message in messages:
        if message.key == key:
            raise error
        yield message


def test_a_time_limit_while_building_the_next_message_waits_for_the_current_ones_answer(smtp_server) -> None:
    """The next message is pulled before the current one's content goes out (its envelope rides in the
    same write); a time limit while building it (one of `finish_on`) reaches the caller only after the
    current one is sent and answered, so it is recorded as taken, not handed back to be sent twice."""
    messages = _messages(3, tag=".overlap")
    answers: list[pipeline.Submitted] = []
    host = smtplib.SMTP("127.0.0.1", smtp_server.port)
    try:
        with pytest.raises(TimeoutError):
            answers.extend(pipeline.submit(
                host, _failing_at(messages, 2, TimeoutError("building took too long")),
                finish_on=(TimeoutError,),
            ))
    finally:
        host.close()
    assert [(answer.message.key, answer.code) for answer in answers] == [(0, 250), (1, 250)]
    assert sorted(m.to for m in smtp_server.messages if m.to.endswith(".overlap@example.com")) == [
        "reader0.overlap@example.com", "reader1.overlap@example.com"
    ]


def test_any_other_failure_while_building_abandons_the_current_message_undelivered(smtp_server) -> None:
    """A failure that is not one of `finish_on` (the caller's database went away, so it could not record
    the answer) must not let the current message be delivered: it would be taken, never marked, and
    sent again. Its envelope is out and the server waits for content, so the connection is closed."""
    messages = _messages(4, tag=".abandon")
    answers: list[pipeline.Submitted] = []
    host = smtplib.SMTP("127.0.0.1", smtp_server.port)
    try:
        with pytest.raises(RuntimeError, match="database went away"):
            answers.extend(pipeline.submit(
                host, _failing_at(messages, 2, RuntimeError("the database went away")),
                finish_on=(TimeoutError,),
            ))
        assert host.sock is None  # closed: nothing can end the open DATA transaction by mistake
    finally:
        host.close()
    assert [(answer.message.key, answer.code) for answer in answers] == [(0, 250)]
    assert [m.to for m in smtp_server.messages if m.to.endswith(".abandon@example.com")] == [
        "reader0.abandon@example.com"
    ]
