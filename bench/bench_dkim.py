"""Benchmark: DKIM signing. The whole campaign of bench_send again, now DKIM-signed (rsa-sha256), in the
same run and at the same scale, so its ratio to the unsigned "send" row is the cost of signing; and the
machine's raw RSA-2048 signing rate through `cryptography` (OpenSSL), the physical limit of that step.

- "smoke": 500 recipients in this process, like bench_send's smoke row.
- "full": 100,000 recipients, PostgreSQL + Redis, two worker processes, like bench_send's full row.

Run it alone: `MAILAPP_BENCH_SINK_HOST=127.0.0.1 MAILAPP_BENCH_SINK_PORT=2525 \
.venv/bin/python -m bench.bench_dkim smoke` (or through bench.run: `--only baselines,bench_send,bench_dkim`).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import bench_send  # noqa: E402
from bench.common import peak_rss_mb_self, result_row, sink_note  # noqa: E402

SEND_ROW = {"smoke": "send: whole campaign (smoke, in-process)", "full": "send: whole campaign"}
TARGET = ">= 70%"  # of the unsigned send rate
SIGNING_SECONDS = {"smoke": 1.0, "full": 5.0}  # per signing-rate row
# The bench's own From domain, so the unsigned send rows of later rounds never find its key.
FROM_DOMAIN = "dkim.example.com"
WORKER_SECRET_KEY = "bench-secret"  # noqa: S105 - bench_send.running_workers gives its workers this key


def raw_rsa_signatures_per_second(seconds: float) -> float:
    """PKCS#1 v1.5 SHA-256 signatures of a 32-byte digest, one after another, in this process."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

    from mailapp.sending.dkim import generate_rsa_key

    key = serialization.load_pem_private_key(generate_rsa_key()[0].encode(), password=None)
    digest, scheme, prehashed = bytes(32), padding.PKCS1v15(), Prehashed(hashes.SHA256())
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for _ in range(50):
            key.sign(digest, scheme, prehashed)
        count += 50
    return count / (time.perf_counter() - started)


def signed_messages_per_second(seconds: float) -> float:
    """DkimSigner.sign alone on a ~20 KB message like the send bench's: body hash, headers, signature."""
    from mailapp.sending.dkim import DkimKey, DkimSigner, generate_rsa_key

    signer = DkimSigner(FROM_DOMAIN, [DkimKey("bench", "rsa-sha256", generate_rsa_key()[0])])
    headers = (
        "To: Reader 1 <reader1@example.com>\r\nSubject: News for Reader 1\r\nDate: Thu, 03 Dec 2026 18:00:00 "
        "+0000\r\nMessage-ID: <1.abc@dkim.example.com>\r\nList-Unsubscribe: <https://news.example.com/u/x>\r\n"
        "From: Example News <news@dkim.example.com>\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
        "MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"b\"\r\n\r\n"
    )
    line = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod=\r\n"
    message = headers.encode() + line * 280
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for _ in range(50):
            signer.sign(message)
        count += 50
    return count / (time.perf_counter() - started)


def _sign_campaign_domain(campaign_id: int, secret_key: str | None) -> None:
    """The campaign sends from FROM_DOMAIN, which gets an RSA key (sealed with `secret_key`, the
    workers' key, at full scale; the app's own otherwise)."""
    from mailapp.domains import services
    from mailapp.extensions import db
    from mailapp.models import Campaign
    from mailapp.secret_box import SecretBox

    box = SecretBox([secret_key]) if secret_key else None
    if services.find_domain(FROM_DOMAIN) is None:
        services.create_domain(FROM_DOMAIN, box=box)
    db.session.get(Campaign, campaign_id).from_email = f"news@{FROM_DOMAIN}"
    db.session.commit()


def _forget_domain() -> None:
    from mailapp.domains import services
    from mailapp.extensions import db

    found = services.find_domain(FROM_DOMAIN)
    if found is not None:
        services.delete_domain(found)
        db.session.commit()


def run_smoke(recipients: int) -> list[dict[str, Any]]:
    database_url = os.environ.get("DATABASE_URL") or f"sqlite:///{tempfile.mkdtemp()}/bench.sqlite"
    app = bench_send._make_app(database_url, os.environ.get("CELERY_BROKER_URL", "memory://"))
    from mailapp.sending import engine

    with app.app_context():
        campaign_id = bench_send._prepare_campaign(recipients)
        _sign_campaign_domain(campaign_id, None)
        try:
            started = time.perf_counter()
            engine.send_campaign(campaign_id)
            elapsed = time.perf_counter() - started
            assert bench_send._finished(campaign_id), "the campaign did not finish"
        finally:
            _forget_domain()
    return [result_row("send with DKIM: whole campaign (smoke, in-process)", recipients / elapsed, "msg/s",
                       baseline=SEND_ROW["smoke"], target=TARGET, peak_rss_mb=peak_rss_mb_self(),
                       notes=f"rsa-sha256, {recipients} recipients, 1 process {sink_note()}".strip())]


def run_full(recipients: int) -> list[dict[str, Any]]:
    app = bench_send._make_app(os.environ["DATABASE_URL"], os.environ["CELERY_BROKER_URL"])
    with app.app_context():
        campaign_id = bench_send._prepare_campaign(recipients)
        _sign_campaign_domain(campaign_id, WORKER_SECRET_KEY)
        try:
            with bench_send.running_workers() as workers:
                elapsed, peaks = bench_send.send_and_watch(campaign_id, workers)
        finally:
            _forget_domain()
    note = f"rsa-sha256, {recipients} recipients, PostgreSQL + Redis, 2 worker processes {sink_note()}"
    return [result_row("send with DKIM: whole campaign", recipients / elapsed, "msg/s",
                       baseline=SEND_ROW["full"], target=TARGET, notes=note.strip(), peak_rss_mb=max(peaks))]


def run(scale: str) -> list[dict[str, Any]]:
    recipients = bench_send.SCALE_RECIPIENTS[scale]
    rows = run_full(recipients) if scale == "full" else run_smoke(recipients)
    raw = raw_rsa_signatures_per_second(SIGNING_SECONDS[scale])
    rows.append(result_row("DKIM: raw RSA-2048 signatures (cryptography)", raw, "sig/s",
                           notes="one process, one core: the most messages/s one send process can sign"))
    signed = signed_messages_per_second(SIGNING_SECONDS[scale])
    rows.append(result_row("DKIM: signing alone, 20 KB message", signed, "msg/s",
                           baseline_value=raw, notes="DkimSigner.sign: body hash, header canonicalization, "
                           "signature; ratio to the raw RSA rate"))
    return rows


if __name__ == "__main__":
    for row in run(sys.argv[1] if len(sys.argv) > 1 else "smoke"):
        print(row)
