"""Render + build one campaign message, per message, in CPU time (timeit with the process clock, so
other work on the machine skews it little): the newsletter layout of bench_send (about 20 KB, ten
tracked links), on the skeleton path, with every header a campaign message carries.

    .venv/bin/python -m bench.timeit_message [--number 3000] [--repeat 9]

Not part of `make bench`: a quick before/after figure for changes to render.py or message.py."""

from __future__ import annotations

import argparse
import inspect
import os
import sys
import tempfile
import time
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args(argv)
    work = tempfile.mkdtemp(prefix="timeit-message-")
    os.environ.setdefault("MAILAPP_INSTANCE_DIR", work)

    from bench.bench_send import newsletter_layout
    from config import TestConfig
    from mailapp import create_app
    from mailapp.sending import message
    from mailapp.sending.render import CampaignRenderer, CampaignSource, Recipient

    config = TestConfig()
    config.SQLALCHEMY_DATABASE_URI = f"sqlite:///{work}/unused.sqlite"
    config.CELERY_BROKER_URL = "memory://"
    config.REDIS_URL = ""
    config.PUBLIC_URL = "https://news.example.com"
    config.INSTANCE_DIR = work
    app = create_app(config)
    with app.app_context():
        source = CampaignSource(
            id=7, name="November", subject="News for {{ subscriber.name }}", from_name="Example News",
            from_email="news@example.com", reply_to="", layout_html=newsletter_layout(),
            message="Hello\n\nWorld", track_opens=True, track_clicks=True,
        )
        renderer = CampaignRenderer(source, public_url=config.PUBLIC_URL)
        bulk: dict = {}
        # Older trees (before List-Id and Feedback-ID) build without them: the same script measures both.
        if "list_identity" in inspect.signature(message.FastMessageBuilder).parameters:
            bulk = {"list_identity": message.ListIdentity(3, "Example News", "news.example.com"),
                    "feedback": message.feedback_id(7, 3, "example.com")}
        builder = message.FastMessageBuilder(from_name="Example News", from_email="news@example.com", **bulk)
        suffix = message.message_id_suffix("example.com")
        counter = [0]

        def one_message() -> bytes:
            counter[0] += 1
            n = counter[0]
            rendered = renderer.render(Recipient(
                delivery_id=n, email=f"r{n}@example.com", name="Reader Name", subscriber_id=n,
                attributes={"city": "Lisbon"},
            ))
            return builder.build(message.Envelope(
                to_name="Reader Name", to_email=f"r{n}@example.com", subject=rendered.subject,
                text=rendered.text, html=rendered.html, message_id=message.make_message_id(n, suffix),
                date=message.message_date(), unsubscribe_url=rendered.unsubscribe_url,
                text_qp=rendered.text_qp, html_qp=rendered.html_qp,
            ))

        one_message()
        runs = timeit.repeat(one_message, number=args.number, repeat=args.repeat, timer=time.process_time)
        per = sorted(run / args.number * 1e6 for run in runs)
        best, median = per[0], per[len(per) // 2]
        print(f"render + build: best {best:.1f} us/message, median {median:.1f} us/message (CPU)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
