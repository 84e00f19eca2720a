"""The send loop's settings, read from the app's config once per run and handed to the engine
(config.py documents each SEND_* setting)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flask import current_app

from mailapp.sending.suppression import BouncePolicy

# The answers to a window's messages wait in the sender's socket buffer while it writes the next ones
# (about 150 bytes a message): a window of thousands could fill it, and sender and relay would then wait
# on each other until the timeout. 100 stays far below that.
MAX_PIPELINE_WINDOW = 100


@dataclass(frozen=True)
class SendSettings:
    public_url: str  # PUBLIC_URL: tracking and unsubscribe links point here
    batch_size: int  # SEND_BATCH_SIZE
    lease_seconds: float  # SEND_LEASE_SECONDS
    run_seconds: float  # SEND_RUN_SECONDS
    mark_group: int  # SEND_MARK_GROUP
    mark_seconds: float  # SEND_MARK_SECONDS
    max_consecutive_failures: int  # SEND_MAX_CONSECUTIVE_FAILURES
    max_attempts: int  # SEND_MAX_ATTEMPTS
    retry_base_seconds: float  # SEND_RETRY_BASE_SECONDS
    # SEND_SMTP_CHUNKING, SEND_SMTP_PIPELINE_WINDOW: BDAT, with this many messages in flight, when the
    # relay offers CHUNKING and PIPELINING (pipeline.py).
    chunking: bool = True
    pipeline_window: int = 1
    bounce_domain: str = ""  # BOUNCE_DOMAIN: VERP envelope senders and the mailto unsubscribe (verp.py)
    secret_key: str = field(default="", repr=False)  # SECRET_KEY: signs the VERP tokens
    # Applied to the hard bounces the relay reports at send time (SOFT_BOUNCE_*, AUTO_PAUSE_*).
    bounce_policy: BouncePolicy = BouncePolicy()

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> SendSettings:
        return cls(
            public_url=config["PUBLIC_URL"],
            batch_size=int(config["SEND_BATCH_SIZE"]),
            lease_seconds=float(config["SEND_LEASE_SECONDS"]),
            run_seconds=float(config["SEND_RUN_SECONDS"]),
            mark_group=int(config["SEND_MARK_GROUP"]),
            mark_seconds=float(config["SEND_MARK_SECONDS"]),
            max_consecutive_failures=int(config["SEND_MAX_CONSECUTIVE_FAILURES"]),
            max_attempts=int(config["SEND_MAX_ATTEMPTS"]),
            retry_base_seconds=float(config["SEND_RETRY_BASE_SECONDS"]),
            chunking=bool(config["SEND_SMTP_CHUNKING"]),
            pipeline_window=min(max(1, int(config["SEND_SMTP_PIPELINE_WINDOW"])), MAX_PIPELINE_WINDOW),
            bounce_domain=config.get("BOUNCE_DOMAIN") or "",
            secret_key=config["SECRET_KEY"],
            bounce_policy=BouncePolicy.from_config(config),
        )

    @classmethod
    def for_current_app(cls) -> SendSettings:
        return cls.from_config(current_app.config)
