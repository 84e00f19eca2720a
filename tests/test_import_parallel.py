"""CSV import with two writers (PostgreSQL): each chunk split by a hash of the email, each part committed
with its own counters. The same result as one writer, row for row; a re-import changes nothing; errors
found by either part keep their line numbers; a failing part leaves only counted rows, and a resumed
import finishes as if nothing had happened."""

from __future__ import annotations

import io
import random

import pytest
from sqlalchemy import select

from mailapp.models.subscriber import Subscriber, SubscriberImportPart, SubscriberList, list_members
from mailapp.subscribers import import_postgres, importer, imports
from tests.conftest import is_postgres
from tests.factories import SubscriberFactory, SubscriberListFactory
from tests.test_import import assert_counts_add_up, run_csv

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not is_postgres(), reason="parallel writers are PostgreSQL's"),
]


def emails_in_part(part: int, count: int, domain: str = "example.com") -> list[str]:
    found = (f"p{n}@{domain}" for n in range(10_000))
    return [email for email in found if importer.part_of(email, 2) == part][:count]


def scenario(world: str, seed: int) -> tuple[SubscriberList, str]:
    """Existing subscribers (changed, same, on the list or not, unsubscribed) and a file of new, existing,
    repeated and invalid rows, under a domain of its own, so two worlds built from one seed differ only
    by their domain."""
    rng = random.Random(seed)
    target = SubscriberListFactory(name=f"Imported {world}")
    other = SubscriberListFactory(name=f"Other {world}")
    domain = f"{world}.example"
    for i in rng.sample(range(60), 30):
        SubscriberFactory(
            email=f"p{i}@{domain}", name=rng.choice(["", "Ann", "Bob"]),
            attributes=rng.choice([{}, {"city": "Paris"}, {"city": "Oslo", "vip": "yes"}]),
            status=rng.choice(["active", "active", "unsubscribed", "blocklisted"]),
            lists=rng.sample([target, other], rng.randrange(3)),
        )
    lines = ["email,name,city,plan"]
    for _ in range(150):
        if rng.random() < 0.05:
            lines.append("not-an-email,X,Y,Z")
            continue
        email = rng.choice(["p{}@{}", "P{}@{}", " p{}@{} "]).format(rng.randrange(80), domain)
        lines.append(",".join([email, rng.choice(["", "Ann", "Bob"]), rng.choice(["", "Paris", "Oslo"]),
                               rng.choice(["", "free", "pro"])]))
    return target, "\n".join(lines) + "\n"


def snapshot(db, target: SubscriberList, world: str) -> dict:
    """Every subscriber of the world and the lists they are on, with the domain taken out."""
    domain = f"@{world}.example"
    rows = db.session.execute(
        select(Subscriber.email, Subscriber.name, Subscriber.attributes, Subscriber.status,
               Subscriber.updated_at, Subscriber.created_at)
        .where(Subscriber.email.endswith(domain)).order_by(Subscriber.email)
    ).all()
    members = db.session.scalars(
        select(Subscriber.email).join(list_members, list_members.c.subscriber_id == Subscriber.id)
        .where(list_members.c.list_id == target.id)
    ).all()
    return {
        "subscribers": [(email.removesuffix(domain), name, attributes, status)
                        for email, name, attributes, status, _, _ in rows],
        "members": sorted(email.removesuffix(domain) for email in members),
    }


def report_without_ids(report: dict, world: str) -> dict:
    kept = {key: value for key, value in report.items()
            if key not in ("id", "list_id", "filename", "created_at", "finished_at", "errors", "parts")}
    kept["errors"] = [(error["line"], error["email"].replace(f"{world}.example", ""), error["reason"])
                      for error in report["errors"]]
    return kept


def parts_of(db, report: dict) -> list[SubscriberImportPart]:
    db.session.expire_all()
    return list(db.session.scalars(
        select(SubscriberImportPart).where(SubscriberImportPart.import_id == report["id"])
        .order_by(SubscriberImportPart.part)
    ))


@pytest.mark.parametrize("seed", range(3))
def test_two_writers_leave_what_one_writer_leaves_row_for_row(app, db, monkeypatch, seed):
    monkeypatch.setattr(importer, "CHUNK_ROWS", random.Random(seed).choice([7, 20, 1000]))
    one_target, one_file = scenario("one", seed)
    two_target, two_file = scenario("two", seed)
    db.session.commit()

    monkeypatch.setitem(app.config, "IMPORT_WRITERS", 1)
    one = run_csv(one_target, one_file)
    monkeypatch.setitem(app.config, "IMPORT_WRITERS", 2)
    two = run_csv(two_target, two_file)

    assert two["status"] == "done"
    assert report_without_ids(two, "two") == report_without_ids(one, "one")
    assert_counts_add_up(two)
    assert snapshot(db, two_target, "two") == snapshot(db, one_target, "one")
    assert [part.part for part in parts_of(db, one)] == [0]
    parts = parts_of(db, two)
    assert [part.part for part in parts] == [0, 1]
    assert all(part.processed > 0 for part in parts)  # both writers did a share
    for key in ("processed", "imported", "updated", "skipped"):
        assert sum(getattr(part, key) for part in parts) == two[key], key
    assert sum(part.error_count for part in parts) == two["invalid"]
    assert [part["part"] for part in two["parts"]] == [0, 1]
    assert sum(part["imported"] for part in two["parts"]) == two["imported"]


def test_the_import_page_shows_each_writers_progress(auth_client, app, db, monkeypatch):
    monkeypatch.setattr(importer, "CHUNK_ROWS", 4)
    target = SubscriberListFactory(name="Imported")
    db.session.commit()
    emails = emails_in_part(0, 3) + emails_in_part(1, 5)
    report = run_csv(target, "email\n" + "".join(f"{email}\n" for email in emails))

    html = auth_client.get(f"/imports/{report['id']}").get_data(as_text=True)

    table = html.split('data-testid="import-parts"', 1)[1].split("</table>", 1)[0]
    assert [row.split("</td>")[:3] for row in table.split("<tr>")[2:]] == [
        ["<td>1", "<td>3", "<td>3"], ["<td>2", "<td>5", "<td>5"]]


def test_a_reimport_with_two_writers_changes_nothing(app, db, monkeypatch):
    monkeypatch.setattr(importer, "CHUNK_ROWS", 5)
    target, content = scenario("again", 7)
    db.session.commit()
    first = run_csv(target, content)
    before = db.session.execute(
        select(Subscriber.email, Subscriber.name, Subscriber.attributes, Subscriber.status,
               Subscriber.updated_at).order_by(Subscriber.email)).all()
    members_before = snapshot(db, target, "again")["members"]

    again = run_csv(target, content)

    assert first["imported"] > 0
    assert (again["imported"], again["updated"]) == (0, 0)
    assert again["skipped"] == again["processed"] - again["invalid"]
    db.session.expire_all()
    after = db.session.execute(
        select(Subscriber.email, Subscriber.name, Subscriber.attributes, Subscriber.status,
               Subscriber.updated_at).order_by(Subscriber.email)).all()
    assert after == before
    assert snapshot(db, target, "again")["members"] == members_before


def test_errors_found_by_either_part_are_reported_with_their_line_numbers(app, db, monkeypatch):
    """Rows over the attribute limit are found by the writer that holds them: one in each part."""
    monkeypatch.setitem(app.config, "SUBSCRIBER_MAX_ATTRIBUTES", 2)
    monkeypatch.setattr(importer, "CHUNK_ROWS", 3)
    target = SubscriberListFactory(name="Imported")
    crowded = [emails_in_part(0, 1, "crowded.example")[0], emails_in_part(1, 1, "crowded.example")[0]]
    for email in crowded:
        SubscriberFactory(email=email, attributes={"a": "1", "b": "2"})
    fresh = emails_in_part(0, 3) + emails_in_part(1, 3)
    db.session.commit()
    lines = ["email,city"] + [f"{email},Paris" for email in fresh[:3]] + ["bad-email,Oslo"]
    lines += [f"{crowded[0]},Lyon"] + [f"{email},Paris" for email in fresh[3:]] + [f"{crowded[1]},Rome"]

    report = run_csv(target, "\n".join(lines) + "\n")

    assert report["status"] == "done"
    assert [(error["line"], error["email"]) for error in report["errors"]] == [
        (5, "bad-email"), (6, crowded[0]), (10, crowded[1])]
    assert report["invalid"] == 3
    assert report["imported"] == 6
    assert_counts_add_up(report)
    parts = parts_of(db, report)
    assert [part.error_count for part in parts] == [2, 1]  # the file's own errors count in part 0


class WorkerDied(BaseException):
    """Not an Exception: the task does not catch it, so the import stays running, as after a crash."""


def failing_once_in_part(monkeypatch, part: int, at_call: int, error: BaseException) -> None:
    """Part `part`'s writer raises at its at_call-th chunk, once, after storing the chunk's rows and
    before the commit: a fault the database will not make on demand."""
    write = import_postgres.PostgresChunkWriter.write
    calls = {"count": 0}

    def write_or_fail(self, connection, list_id, rows, prepared):
        counts = write(self, connection, list_id, rows, prepared)
        if importer.part_of(rows[0][1], 2) == part:
            calls["count"] += 1
            if calls["count"] == at_call:
                raise error
        return counts

    monkeypatch.setattr(import_postgres.PostgresChunkWriter, "write", write_or_fail)


def hundred_rows(db) -> tuple[SubscriberList, list[str], str]:
    target = SubscriberListFactory(name="Imported")
    db.session.commit()
    emails = [f"p{n}@example.com" for n in range(100)]
    return target, emails, "email,name\n" + "".join(f"{email},P\n" for email in emails)


def in_part(emails: list[str], part: int) -> set[str]:
    return {email for email in emails if importer.part_of(email, 2) == part}


def test_a_failing_part_leaves_only_rows_that_are_counted(app, db, monkeypatch):
    monkeypatch.setattr(importer, "CHUNK_ROWS", 10)
    target, emails, content = hundred_rows(db)
    failing_once_in_part(monkeypatch, 1, 3, RuntimeError("the writer lost its connection"))

    failed = run_csv(target, content)

    assert failed["status"] == "failed"
    assert "lost its connection" in failed["failure"]
    db.session.expire_all()
    stored = set(db.session.scalars(select(Subscriber.email)))
    # Nothing half-written: every stored row is counted, as imported, and is on the list.
    assert len(stored) == failed["imported"] == failed["processed"]
    assert len(list_member_ids(db, target)) == len(stored)
    parts = parts_of(db, failed)
    assert parts[1].records == 20  # its first two chunks, not the third that failed
    assert in_part(list(stored), 1) == in_part(emails[:20], 1)
    assert parts[1].imported == len(in_part(emails[:20], 1))
    assert in_part(list(stored), 0) == in_part(emails[:parts[0].records], 0)


def test_an_import_interrupted_in_one_part_resumes_each_part_where_it_stopped(app, db, monkeypatch):
    monkeypatch.setattr(importer, "CHUNK_ROWS", 10)
    target, emails, content = hundred_rows(db)
    failing_once_in_part(monkeypatch, 1, 3, WorkerDied())
    record = imports.start_import(target, "people.csv", io.BytesIO(content.encode()))
    db.session.commit()
    with pytest.raises(WorkerDied):
        imports.run_import(record.id)
    db.session.rollback()
    assert [part.records for part in parts_of(db, {"id": record.id})][1] == 20

    imports.run_import(record.id)  # the task, delivered again

    db.session.expire_all()
    resumed = imports.import_to_dict(imports.get_import(record.id))
    assert (resumed["status"], resumed["processed"], resumed["imported"], resumed["skipped"]) == (
        "done", 100, 100, 0)
    assert set(db.session.scalars(select(Subscriber.email))) == set(emails)
    assert len(list_member_ids(db, target)) == 100
    assert [part.records for part in parts_of(db, resumed)] == [100, 100]


def list_member_ids(db, target: SubscriberList) -> list[int]:
    return list(db.session.scalars(
        select(list_members.c.subscriber_id).where(list_members.c.list_id == target.id)))
