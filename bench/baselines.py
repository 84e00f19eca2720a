"""Baselines for the send benchmark: how fast the obvious Python loops and Postfix's own tools go.

Each sends a ~20 KB personalised HTML newsletter (plus its text part) into the harness's SMTP sink:
1. one Flask-Mail connection, `render_template` and a `flask_mail.Message` per recipient;
2. one plain `smtplib` connection with an `EmailMessage` per recipient;
3. the same with a new connection per message;
4. the ceiling: Postfix's `smtp-source` into the sink, on one reused connection and on four.
"""

from __future__ import annotations

import smtplib
import subprocess
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path

import jinja2

from bench.common import (
    BASELINE_FLASK_MAIL,
    BASELINE_NEW_CONNECTION,
    BASELINE_SMTPLIB,
    CEILING_FOUR,
    CEILING_ONE,
    Row,
    find_tool,
    result_row,
    sink_address,
    sink_note,
    unavailable_row,
)

MESSAGE_BYTES = 20_000
SENDER = "News <news@bench.example.com>"

# Messages per measurement: a few seconds each at the rates issue 5 measured (180-320/s).
PYTHON_MESSAGES = {"smoke": 15, "full": 600}
SOURCE_MESSAGES = {"smoke": 50, "full": 10_000}

_PARAGRAPH = (
    "Our spring collection is here, and it is the best one yet. We spent the winter testing every "
    "piece in real weather, so you do not have to. Read on for the highlights, the stories behind "
    "them, and a few things we learned along the way. "
)
_ARTICLE = """
<tr><td style="padding:24px 32px;border-bottom:1px solid #eeeeee;font-family:Helvetica,Arial,sans-serif">
  <h2 style="margin:0 0 12px;font-size:20px;color:#222222">
    Story {n}: what's new for {{{{ subscriber.name }}}}</h2>
  <p style="margin:0 0 12px;font-size:15px;line-height:22px;color:#444444">{text}</p>
  <p style="margin:0"><a
     href="https://shop.example.com/story/{n}?utm_source=newsletter&amp;uid={{{{ subscriber.id }}}}"
     style="color:#0d6efd;font-weight:bold;text-decoration:none">Read story {n} &rarr;</a></p>
</td></tr>"""


def newsletter_template() -> str:
    """A Jinja newsletter that renders to about MESSAGE_BYTES of HTML, personalised in several places."""
    head = """<!doctype html><html><head><meta charset="utf-8"><title>{{ subject }}</title></head>
<body style="margin:0;padding:0;background:#f4f4f4">
<table role="presentation" width="100%" cellpadding="0" cellspacing="0" style="background:#f4f4f4">
<tr><td align="center"><table role="presentation" width="600" cellpadding="0" cellspacing="0"
 style="background:#ffffff">
<tr><td style="padding:32px;font-family:Helvetica,Arial,sans-serif;font-size:16px">
Hello {{ subscriber.name }}, here is this week's letter for {{ subscriber.email }}.</td></tr>"""
    foot = """
<tr><td style="padding:32px;font-family:Helvetica,Arial,sans-serif;font-size:12px;color:#888888">
You get this because {{ subscriber.email }} subscribed. <a href="{{ unsubscribe_url }}">Unsubscribe</a>
</td></tr></table></td></tr></table></body></html>"""
    articles, n = [], 0
    while len(head) + len(foot) + sum(map(len, articles)) < MESSAGE_BYTES:
        n += 1
        articles.append(_ARTICLE.format(n=n, text=_PARAGRAPH * 3))
    return head + "".join(articles) + foot


TEXT_TEMPLATE = (
    "Hello {{ subscriber.name }},\n\nThis week's letter is best read in HTML.\n\n"
    "Unsubscribe: {{ unsubscribe_url }}\n"
)


def recipients(count: int) -> list[dict]:
    return [
        {
            "subscriber": {"id": i, "name": f"Reader {i}", "email": f"reader{i}@bench.example.net"},
            "subject": f"This week's letter, Reader {i}",
            "unsubscribe_url": f"https://mail.example.com/u/token-{i:08d}",
        }
        for i in range(count)
    ]


def flask_mail_loop(count: int) -> float:
    """Baseline 1: one Flask-Mail connection; render_template + Message per recipient. Messages/s."""
    from flask import Flask, render_template
    from flask_mail import Mail, Message

    host, port = sink_address()
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "newsletter.html").write_text(newsletter_template())
        Path(folder, "newsletter.txt").write_text(TEXT_TEMPLATE)
        app = Flask("bench_baseline", template_folder=folder)
        app.config.update(MAIL_SERVER=host, MAIL_PORT=port, MAIL_DEFAULT_SENDER=SENDER)
        mail = Mail(app)
        people = recipients(count)
        with app.app_context():
            started = time.perf_counter()
            with mail.connect() as connection:
                for context in people:
                    message = Message(
                        subject=context["subject"],
                        recipients=[context["subscriber"]["email"]],
                        html=render_template("newsletter.html", **context),
                        body=render_template("newsletter.txt", **context),
                    )
                    connection.send(message)
            elapsed = time.perf_counter() - started
    return count / elapsed


def _email_message(html: jinja2.Template, text: jinja2.Template, context: dict) -> EmailMessage:
    message = EmailMessage()
    message["From"] = SENDER
    message["To"] = context["subscriber"]["email"]
    message["Subject"] = context["subject"]
    message.set_content(text.render(**context))
    message.add_alternative(html.render(**context), subtype="html")
    return message


def smtplib_loop(count: int, *, reuse_connection: bool) -> float:
    """Baselines 2 and 3: plain smtplib + EmailMessage, one connection or one per message. Messages/s."""
    host, port = sink_address()
    environment = jinja2.Environment(autoescape=True)
    html, text = environment.from_string(newsletter_template()), environment.from_string(TEXT_TEMPLATE)
    people = recipients(count)
    started = time.perf_counter()
    if reuse_connection:
        with smtplib.SMTP(host, port) as smtp:
            for context in people:
                smtp.send_message(_email_message(html, text, context))
    else:
        for context in people:
            with smtplib.SMTP(host, port) as smtp:
                smtp.send_message(_email_message(html, text, context))
    return count / (time.perf_counter() - started)


def smtp_source_rate(count: int, sessions: int) -> float:
    """The ceiling: smtp-source sending MESSAGE_BYTES messages over `sessions` reused connections."""
    host, port = sink_address()
    binary = find_tool("smtp-source")
    assert binary
    command = [
        binary,
        "-d",  # keep each connection open for the next message
        "-s", str(sessions),
        "-m", str(count),
        "-l", str(MESSAGE_BYTES),
        "-M", "bench.example.com",  # no lookup of this machine's name
        "-f", "news@bench.example.com",
        "-t", "reader@bench.example.net",
        f"{host}:{port}",
    ]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, timeout=300)
    return count / (time.perf_counter() - started)


def run(scale: str) -> list[Row]:
    python_count, source_count = PYTHON_MESSAGES[scale], SOURCE_MESSAGES[scale]
    note = sink_note()
    size_note = f"{python_count} messages of ~20 KB HTML + text"
    rows = [
        result_row(BASELINE_FLASK_MAIL, flask_mail_loop(python_count), "msg/s",
                   notes=f"one connection, render_template + Message; {size_note}. {note}".strip()),
        result_row(BASELINE_SMTPLIB, smtplib_loop(python_count, reuse_connection=True), "msg/s",
                   notes=f"one connection, EmailMessage; {size_note}. {note}".strip()),
        result_row(BASELINE_NEW_CONNECTION, smtplib_loop(python_count, reuse_connection=False), "msg/s",
                   notes=f"EmailMessage, connect + QUIT per message; {size_note}. {note}".strip()),
    ]  # fmt: skip
    if not find_tool("smtp-source"):
        reason = "smtp-source is not installed (Debian package postfix; `make bench` installs it)"
        return rows + [unavailable_row(name, "msg/s", reason) for name in (CEILING_ONE, CEILING_FOUR)]
    for name, sessions in ((CEILING_ONE, 1), (CEILING_FOUR, 4)):
        notes = f"{source_count} messages of 20 KB, {sessions} reused connection(s). {note}"
        rows.append(result_row(name, smtp_source_rate(source_count, sessions), "msg/s", notes=notes.strip()))
    return rows
