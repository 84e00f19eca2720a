"""The dev SMTP server and the Dev inbox pages: a real aiosmtpd server (ours, on a free port) receives
mail sent with smtplib; the files and the pages are checked."""

from __future__ import annotations

import os
import re
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from mailapp.devinbox.server import serve
from mailapp.devinbox.store import DevInbox


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on port {port} (exit code {process.poll()})")


class RunningServer:
    def __init__(self, inbox: DevInbox, port: int) -> None:
        self.inbox = inbox
        self.port = port

    def send(self, message: EmailMessage, to: list[str] | None = None) -> None:
        with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as smtp:
            smtp.send_message(message, to_addrs=to)


@pytest.fixture
def devsmtp(app) -> Iterator[RunningServer]:
    """Our serve() in a thread, on a free port, storing into the app's DEVINBOX_DIR."""
    inbox = DevInbox(app.config["DEVINBOX_DIR"], max_messages=5000)
    inbox.delete_all()
    port = free_port()
    ready = threading.Event()
    stop = threading.Event()
    thread = threading.Thread(target=serve, args=(inbox, "127.0.0.1", port, ready.set, stop), daemon=True)
    thread.start()
    assert ready.wait(10)
    yield RunningServer(inbox, port)
    stop.set()
    thread.join(10)
    inbox.delete_all()


def newsletter(subject: str = "Spring news", to: str = "ana@example.com") -> EmailMessage:
    message = EmailMessage()
    message["From"] = "News <news@example.com>"
    message["To"] = to
    message["Subject"] = subject
    message.set_content("Hello Ana,\nthe text part.")
    message.add_alternative(
        "<html><body><h1>Hello Ana</h1><script>parent.document.title='owned'</script></body></html>",
        subtype="html",
    )
    return message


def eml_files(app) -> list[Path]:
    return sorted(Path(app.config["DEVINBOX_DIR"]).glob("*.eml"))


# ---------------------------------------------------------------- server and storage


def test_server_stores_each_message_as_an_eml_file(app, devsmtp) -> None:
    devsmtp.send(newsletter("First"))
    devsmtp.send(newsletter("Second"), to=["ana@example.com", "hidden@example.com"])
    files = eml_files(app)
    assert len(files) == 2
    assert all(re.fullmatch(r"\d{20}-[0-9a-f]{8}\.eml", path.name) for path in files)
    first, second = (path.read_bytes() for path in files)  # names sort by arrival
    assert b"Subject: First" in first
    assert b"Subject: Second" in second
    assert b"Delivered-To: hidden@example.com" in second  # the envelope, so Bcc shows
    assert second.startswith(b"Return-Path: <news@example.com>\r\n")
    assert not list(Path(app.config["DEVINBOX_DIR"]).glob(".incoming-*"))  # no temp files left


def test_inbox_keeps_only_the_newest_messages(tmp_path) -> None:
    inbox = DevInbox(tmp_path, max_messages=5)
    ids = [inbox.save(f"Subject: {number}\r\n\r\nbody".encode()) for number in range(12)]
    assert inbox.count() == 5
    summaries, total = inbox.page(1, 50)
    assert total == 5
    assert [summary.id for summary in summaries] == list(reversed(ids[-5:]))
    assert [summary.subject for summary in summaries] == ["11", "10", "9", "8", "7"]

    big = DevInbox(tmp_path / "big", max_messages=100)
    for number in range(250):
        big.save(f"Subject: {number}\r\n\r\nbody".encode())
        assert big.count() <= 100
    newest = [summary.subject for summary in big.page(1, 100)[0]]
    assert newest[:90] == [str(number) for number in range(249, 159, -1)]


def test_store_refuses_path_tricks(tmp_path) -> None:
    from mailapp.errors import NotFoundError

    inbox = DevInbox(tmp_path)
    for bad in ("../../etc/passwd", "..", "00000000000000000001-deadbeef/../x", ""):
        with pytest.raises(NotFoundError):
            inbox.get(bad)


def test_cli_serve_runs_as_a_process(app, tmp_path) -> None:
    """The Procfile's devsmtp command: `flask --app wsgi devinbox serve --port N`, stopped by SIGTERM."""
    port = free_port()
    directory = tmp_path / "inbox"
    env = {**os.environ, "DEVINBOX_DIR": str(directory)}
    flask = [sys.executable, "-m", "flask", "--app", "wsgi", "devinbox", "serve", "--port", str(port)]
    flask += ["--max-messages", "3"]
    process = subprocess.Popen(
        flask, env=env, cwd=Path(__file__).resolve().parent.parent, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for_port(port, process)
        for number in range(4):
            RunningServer(DevInbox(directory), port).send(newsletter(f"Process {number}"))
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=15)
    assert process.returncode == 0, stderr
    assert f"listening on 127.0.0.1:{port}" in stderr
    subjects = [summary.subject for summary in DevInbox(directory).page(1, 10)[0]]
    assert subjects == ["Process 3", "Process 2", "Process 1"]


def test_cli_serve_reports_a_busy_port(runner, devsmtp) -> None:
    result = runner.invoke(args=["devinbox", "serve", "--port", str(devsmtp.port)])
    assert result.exit_code != 0
    assert f"Cannot listen on 127.0.0.1:{devsmtp.port}" in result.output


# ---------------------------------------------------------------- pages


def test_pages_need_login(client, devsmtp) -> None:
    devsmtp.send(newsletter())
    message_id = devsmtp.inbox.page(1, 1)[0][0].id
    for url in ("/dev/inbox/", f"/dev/inbox/{message_id}", f"/dev/inbox/{message_id}/html"):
        response = client.get(url)
        assert response.status_code == 302
        assert "/login" in response.headers["Location"]


def test_empty_state_explains_how_mail_gets_there(auth_client, devsmtp) -> None:
    page = auth_client.get("/dev/inbox/").get_data(as_text=True)
    assert "The dev inbox is empty" in page
    assert "devinbox serve" in page
    assert 'href="/dev/inbox/"' in page  # the nav bar


def test_index_lists_newest_first_and_paginates(auth_client, devsmtp) -> None:
    for number in range(3):
        devsmtp.send(newsletter(f"Issue {number}", to=f"reader{number}@example.com"))
    for number in range(50):
        devsmtp.inbox.save(f"Subject: Filler {number}\r\nFrom: a@example.com\r\n\r\nx".encode())
    first = auth_client.get("/dev/inbox/").get_data(as_text=True)
    assert "Filler 49" in first
    assert "Issue 2" not in first
    assert "Page 1 of 2" in first
    second = auth_client.get("/dev/inbox/?page=2").get_data(as_text=True)
    assert second.index("Issue 2") < second.index("Issue 1") < second.index("Issue 0")
    assert "reader2@example.com" in second
    assert "News &lt;news@example.com&gt;" in second


def test_message_page_shows_html_frame_text_headers_and_source(auth_client, devsmtp) -> None:
    devsmtp.send(newsletter("Look at me"))
    message_id = devsmtp.inbox.page(1, 1)[0][0].id
    page = auth_client.get(f"/dev/inbox/{message_id}").get_data(as_text=True)
    iframe = re.search(r"<iframe[^>]*>", page).group(0)
    assert 'sandbox=""' in iframe
    assert f'src="/dev/inbox/{message_id}/html"' in iframe
    assert "Hello Ana,\nthe text part." in page
    assert "<th class=\"text-nowrap\">Subject</th>" in page
    assert "Content-Type: multipart/alternative" in page  # the raw source
    assert "&lt;script&gt;parent.document.title" in page  # escaped in the source view, never run

    frame = auth_client.get(f"/dev/inbox/{message_id}/html")
    assert frame.headers["Content-Security-Policy"] == "sandbox"
    assert "<h1>Hello Ana</h1>" in frame.get_data(as_text=True)

    raw = auth_client.get(f"/dev/inbox/{message_id}/raw")
    assert raw.mimetype == "message/rfc822"
    assert b"Subject: Look at me" in raw.data


def test_text_only_message_frame(auth_client, devsmtp) -> None:
    message = EmailMessage()
    message["From"] = "a@example.com"
    message["To"] = "b@example.com"
    message["Subject"] = "Plain"
    message.set_content("Just <text>.")
    devsmtp.send(message)
    message_id = devsmtp.inbox.page(1, 1)[0][0].id
    frame = auth_client.get(f"/dev/inbox/{message_id}/html")
    assert frame.headers["Content-Security-Policy"] == "sandbox"
    assert "Just &lt;text&gt;." in frame.get_data(as_text=True)


def test_unknown_message_is_404(auth_client, devsmtp) -> None:
    assert auth_client.get("/dev/inbox/00000000000000000001-deadbeef").status_code == 404
    assert auth_client.get("/dev/inbox/not-an-id").status_code == 404


def test_delete_all(auth_client, app, devsmtp) -> None:
    devsmtp.send(newsletter())
    devsmtp.send(newsletter())
    assert auth_client.post("/dev/inbox/delete-all", data={}).status_code == 400  # no CSRF token
    assert len(eml_files(app)) == 2
    response = auth_client.post_form("/dev/inbox/delete-all", {}, follow_redirects=True)
    assert "Deleted 2 message(s)" in response.get_data(as_text=True)
    assert eml_files(app) == []


def test_not_available_when_disabled(app, auth_client, devsmtp) -> None:
    app.config["DEVINBOX_ENABLED"] = False
    try:
        assert auth_client.get("/dev/inbox/").status_code == 404
        assert auth_client.post_form("/dev/inbox/delete-all", {}).status_code == 404
    finally:
        app.config["DEVINBOX_ENABLED"] = True
