"""Fixtures of the fault-injection tests: a private PostgreSQL and Redis (whatever DATABASE_URL and
CELERY_BROKER_URL say, the shared servers are never restarted), the schema built by the migration
command the Procfile runs, a counting SMTP server in this process, and real worker and beat processes.

MAILAPP_FAULTS_FULL=1 (`make faults`) switches every test from its short CI form to the issue's full
figures: 10,000 recipients, three kills, a 30 s outage."""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import text

from config import TestConfig, database_url
from tests.faults.servers import (
    BIN,
    REPO_ROOT,
    Beat,
    CeleryProcess,
    CountingSMTPServer,
    PostgresServer,
    RedisServer,
    Worker,
    wait_until,
)
from tests.side_app import create_app_aside

FULL = os.environ.get("MAILAPP_FAULTS_FULL", "") == "1"
RESULTS_DIR = Path(__file__).resolve().parent / "results"
SECRET_KEY = "faults-secret-key"
PUBLIC_URL = "http://mailapp.test"
# Short leases, so the sweeper hands a killed worker's rows back within seconds.
LEASE_SECONDS = 5
BATCH_SIZE = 50
FINAL_STATES = {"sent", "failed", "cancelled"}


@dataclass
class FaultServers:
    postgres: PostgresServer
    redis: RedisServer
    database_url: str

    @property
    def broker_url(self) -> str:
        return self.redis.url(0)


@pytest.fixture(scope="session")
def fault_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultServers]:
    postgres = PostgresServer()
    redis_server = RedisServer()
    try:
        postgres.init()
        redis_server.start()
        servers = FaultServers(postgres, redis_server, postgres.create_database("mailapp_faults"))
        env = process_env(servers, smtp_port=1, workdir=tmp_path_factory.mktemp("faults-migrate"))
        result = subprocess.run(
            [str(BIN / "flask"), "--app", "wsgi", "db", "upgrade"], cwd=REPO_ROOT, env=env,
            capture_output=True, text=True, timeout=120, check=False,
        )
        assert result.returncode == 0, f"migration failed:\n{result.stdout}\n{result.stderr}"
        yield servers
    finally:
        redis_server.destroy()
        postgres.destroy()


def process_env(servers: FaultServers, smtp_port: int, workdir: Path, **extra: str) -> dict[str, str]:
    """The environment of every worker, beat and CLI process: the operator's variables, nothing else."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MAILAPP_", "CELERY_"))}
    env.update(
        MAILAPP_ENV="development",
        MAILAPP_INSTANCE_DIR=str(workdir / "instance"),
        PYTHONPATH=str(REPO_ROOT),
        SECRET_KEY=SECRET_KEY,
        DATABASE_URL=servers.database_url,
        CELERY_BROKER_URL=servers.broker_url,
        REDIS_URL=servers.broker_url,
        MAIL_SERVER="127.0.0.1",
        MAIL_PORT=str(smtp_port),
        PUBLIC_URL=PUBLIC_URL,
        SEND_LEASE_SECONDS=str(LEASE_SECONDS),
        # Batches small enough to finish well inside that lease.
        SEND_BATCH_SIZE=str(BATCH_SIZE),
        DEVINBOX_ENABLED="false",
    )
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def fault_app(fault_servers: FaultServers, app: Flask) -> Flask:
    """The app as this process sees the private servers: to build campaigns and read the outcome.

    create_app makes its Celery app the process default; the default goes back to the suite's, so only
    code run inside `fault_cluster` (which sets this one as current) publishes to the private Redis."""


    config = TestConfig()
    config.SECRET_KEY = SECRET_KEY
    config.SQLALCHEMY_DATABASE_URI = database_url(fault_servers.database_url)
    config.CELERY_BROKER_URL = fault_servers.broker_url
    config.REDIS_URL = fault_servers.broker_url
    config.PUBLIC_URL = PUBLIC_URL
    config.SEND_LEASE_SECONDS = LEASE_SECONDS
    return create_app_aside(config)


@dataclass
class FaultCluster:
    """One test's world: the private servers, an SMTP server, and the processes the test starts."""

    servers: FaultServers
    app: Flask
    smtp: CountingSMTPServer
    workdir: Path
    processes: list[CeleryProcess] = field(default_factory=list)
    restarts: int = 0
    restarted_at: datetime | None = None  # when the last supervised restart was ready

    def env(self, **extra: str) -> dict[str, str]:
        return process_env(self.servers, self.smtp.port, self.workdir, **extra)

    def worker(self, concurrency: int = 4, **extra_env: str) -> Worker:
        return self.start(workers=1, concurrency=concurrency, **extra_env)[0]  # type: ignore[return-value]

    def beat(self, **extra_env: str) -> Beat:
        return self.start(beats=1, **extra_env)[0]  # type: ignore[return-value]

    def start(self, workers: int = 0, beats: int = 0, concurrency: int = 4, **extra_env: str
              ) -> list[CeleryProcess]:
        """Start processes side by side (each takes seconds to import the app), then wait for all."""
        started: list[CeleryProcess] = []
        for _ in range(workers):
            started.append(Worker(len(self.processes), concurrency, self.env(**extra_env), self.workdir))
            self.processes.append(started[-1])
        for _ in range(beats):
            started.append(Beat(len(self.processes), self.env(**extra_env), self.workdir))
            self.processes.append(started[-1])
        for process in started:
            process.start()
        for process in started:
            process.wait_ready(" ready." if isinstance(process, Worker) else "beat: Starting...")
        return started

    def logs(self) -> str:
        return "\n".join(process.tail() for process in self.processes)

    def scalar(self, sql: str, **params: object) -> object:
        """A fresh read, outside the test's ORM session (which may hold stale rows)."""
        from mailapp.extensions import db

        with db.engine.connect() as connection:
            return connection.execute(text(sql), params).scalar()

    def delivery_statuses(self, campaign_id: int) -> dict[str, int]:
        from mailapp.extensions import db

        with db.engine.connect() as connection:
            rows = connection.execute(
                text("SELECT status, count(*) FROM deliveries WHERE campaign_id = :c GROUP BY status"),
                {"c": campaign_id},
            )
            return {status: count for status, count in rows}

    def describe(self, campaign_id: int) -> dict[str, object]:
        """The campaign's state as the engine sees it, for failure messages."""
        from mailapp.extensions import db

        with db.engine.connect() as connection:
            campaign = connection.execute(
                text("SELECT status, status_reason FROM campaigns WHERE id = :c"), {"c": campaign_id}
            ).one()
            rows = connection.execute(
                text(
                    "SELECT status, count(*), min(leased_until), max(leased_until), min(next_attempt_at), "
                    "max(attempts) FROM deliveries WHERE campaign_id = :c GROUP BY status"
                ),
                {"c": campaign_id},
            )
            deliveries = {row[0]: [str(value) for value in row[1:]] for row in rows}
            now = connection.execute(text("SELECT now()")).scalar()
        return {"campaign": tuple(campaign), "deliveries [count, leases, next attempt, attempts]": deliveries,
                "db_now": str(now)}

    def campaign_status(self, campaign_id: int) -> str:
        return str(self.scalar("SELECT status FROM campaigns WHERE id = :c", c=campaign_id))

    def started_at(self, campaign_id: int) -> datetime:
        from sqlalchemy import select

        from mailapp.extensions import db
        from mailapp.models import Campaign

        with db.engine.connect() as connection:
            statement = select(Campaign.started_at).where(Campaign.id == campaign_id)
            return connection.execute(statement).scalar_one()

    def create_campaign(self, recipients: int, prefix: str) -> tuple[int, set[str]]:
        """A campaign to a list of `recipients` new subscribers, as the dashboard would build it.
        Returns its id and the addresses that must each receive it exactly once."""
        from sqlalchemy import insert

        from mailapp.extensions import db
        from mailapp.models import Campaign, Layout, Subscriber, SubscriberList, list_members
        from tests.factories import SIMPLE_LAYOUT

        mailing_list = SubscriberList(name=f"{prefix} list")
        layout = Layout(name=f"{prefix} layout", html=SIMPLE_LAYOUT)
        db.session.add_all([mailing_list, layout])
        db.session.flush()
        emails = [f"{prefix}-{number}@example.com" for number in range(recipients)]
        subscriber_ids = db.session.scalars(
            insert(Subscriber).returning(Subscriber.id),
            [{"email": email, "name": f"Reader {number}"} for number, email in enumerate(emails)],
        ).all()
        members = [{"list_id": mailing_list.id, "subscriber_id": sid} for sid in subscriber_ids]
        db.session.execute(insert(list_members), members)
        campaign = Campaign(
            name=f"{prefix} campaign", subject="News for {{ subscriber.name }}", from_name="Example News",
            from_email="news@example.com", layout_id=layout.id, message="This week's news.",
            lists=[mailing_list],
        )
        db.session.add(campaign)
        db.session.commit()
        return campaign.id, set(emails)

    def send_now(self, campaign_id: int) -> None:
        """What the dashboard's "Send now" does: claim here, the snapshot and the batches in the workers."""
        from mailapp.campaigns import lifecycle
        from mailapp.extensions import db

        campaign = lifecycle.send_campaign_now(campaign_id)
        version = campaign.schedule_version
        db.session.commit()
        lifecycle.start_now(campaign_id, version)
        db.session.remove()

    def schedule(self, campaign_id: int, send_at: datetime) -> None:
        """What the dashboard's "Schedule" does: store the time, and queue an ETA start if it is near."""
        from mailapp.campaigns import lifecycle
        from mailapp.extensions import db

        campaign = lifecycle.schedule_campaign(campaign_id, send_at)
        db.session.commit()
        lifecycle.queue_start(
            campaign.id, campaign.schedule_version, campaign.send_at, campaign.start_queued_version
        )
        db.session.remove()

    def resume(self, campaign_id: int) -> None:
        from mailapp.campaigns import lifecycle
        from mailapp.extensions import db

        lifecycle.resume_campaign(campaign_id)
        db.session.commit()
        lifecycle.continue_sending(campaign_id)
        db.session.remove()

    def unsent_emails(self, campaign_id: int, status: str | None = None) -> set[str]:
        """Recipients not recorded as sent (only those in `status`, if given: 'sending' are leased)."""
        from mailapp.extensions import db

        with db.engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT email FROM deliveries WHERE campaign_id = :c AND status <> 'sent' "
                    "AND (CAST(:status AS text) IS NULL OR status = :status)"
                ),
                {"c": campaign_id, "status": status},
            )
            return {email.lower() for (email,) in rows}

    def supervise(self) -> int:
        """Restart any worker or beat process that exited, as systemd's Restart=always would; how many."""
        restarted = 0
        for process in self.processes:
            if process.process is not None and process.process.poll() is not None:
                process.start()
                process.wait_ready(" ready." if isinstance(process, Worker) else "beat: Starting...")
                self.restarted_at = datetime.now(UTC)
                restarted += 1
        self.restarts += restarted
        return restarted

    def wait_finished(
        self, campaign_id: int, timeout: float, also: frozenset[str] = frozenset(), supervised: bool = False
    ) -> str:
        """Wait until the campaign is sent or stopped for good (or in one of `also`); its status. With
        `supervised`, processes that exit meanwhile are restarted (see supervise)."""
        states = FINAL_STATES | also

        def finished() -> str | None:
            if supervised:
                self.supervise()
            status = self.campaign_status(campaign_id)
            return status if status in states else None

        return str(wait_until(
            finished, timeout, f"campaign {campaign_id} to finish", interval=0.5,
            state=lambda: self.describe(campaign_id),
        ))


def outcome(expected: set[str], received: Counter[str]) -> tuple[set[str], int]:
    """(lost addresses, duplicate messages) of one campaign's recipients as the SMTP server saw them."""
    lost = {email for email in expected if received[email] == 0}
    duplicates = sum(received[email] - 1 for email in expected if received[email] > 1)
    return lost, duplicates


def _empty_tables() -> None:
    from mailapp.extensions import db

    tables = ", ".join(table.name for table in db.metadata.sorted_tables)
    with db.engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture
def fault_cluster(
    fault_servers: FaultServers, fault_app: Flask, tmp_path: Path, request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[FaultCluster]:
    from celery import _state

    from mailapp.extensions import db

    smtp = CountingSMTPServer()
    smtp.start()
    if not fault_servers.redis.ping():
        fault_servers.redis.start()
    fault_servers.redis.flushall()
    previous_current = _state.get_current_app()
    celery_app = fault_app.extensions["celery"]
    celery_app.set_current()
    # Celery takes the broker from CELERY_BROKER_URL in the environment before its own config, and CI's
    # PostgreSQL + Redis pass sets it to the suite's Redis: without this, what this process queues (a
    # send-now's snapshot task) would go there, and only a beat's recovery would hide the loss. The
    # app's connection pools are dropped so they are made again for the private broker.
    monkeypatch.setenv("CELERY_BROKER_URL", fault_servers.broker_url)
    celery_app._pool = None
    celery_app.amqp._producer_pool = None
    cluster = FaultCluster(fault_servers, fault_app, smtp, tmp_path)
    with fault_app.app_context():
        _empty_tables()
        try:
            yield cluster
        finally:
            for process in cluster.processes:
                process.kill()
            report = getattr(request.node, "rep_call", None)
            if report is not None and report.failed:
                print(cluster.logs())
            db.session.remove()
            _empty_tables()
            smtp.stop()
            previous_current.set_current()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Keep each phase's report on the test item, so a failed test's fixture can print the logs."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def record_result(name: str, figures: dict) -> Path:
    """Print the measured figures and keep them under tests/faults/results/ (git-ignored)."""
    figures = {"test": name, "full": FULL, "at": datetime.now(UTC).isoformat(timespec="seconds"), **figures}
    line = json.dumps(figures, sort_keys=True)
    print(f"\nFAULT FIGURES {line}")
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{name}.jsonl"
    with path.open("a") as results:
        results.write(line + "\n")
    return path
