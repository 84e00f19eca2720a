"""CSV import: the file checks, the row rules and counters, the pages, the API, a real worker, and
property tests on random input."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from mailapp.addresses import normalize_email
from mailapp.errors import ImportFileError, ValidationError
from mailapp.models.subscriber import Subscriber, SubscriberImport, SubscriberList, list_members
from mailapp.subscribers import import_parse, import_postgres, importer, imports, subscriber_lists
from tests.conftest import is_postgres
from tests.factories import SubscriberFactory, SubscriberListFactory


def run_csv(target: SubscriberList, content: bytes | str, filename: str = "people.csv") -> dict:
    """Upload and run the import in this process (the task's body), returning the import's report."""
    from mailapp.extensions import db

    data = content.encode("utf-8") if isinstance(content, str) else content
    record = imports.start_import(target, filename, io.BytesIO(data))
    db.session.commit()
    import_id = record.id
    imports.run_import(import_id)
    db.session.expire_all()
    return imports.import_to_dict(imports.get_import(import_id))


def assert_counts_add_up(report: dict) -> None:
    assert report["processed"] == (
        report["imported"] + report["updated"] + report["skipped"] + report["invalid"]
    )


def members_of(db, target: SubscriberList) -> list[str]:
    return list(db.session.scalars(
        select(Subscriber.email).join(list_members, list_members.c.subscriber_id == Subscriber.id)
        .where(list_members.c.list_id == target.id).order_by(Subscriber.email)
    ))


def uploads(app) -> set[Path]:
    directory = Path(app.config["UPLOAD_DIR"])
    return set(directory.iterdir()) if directory.exists() else set()


@pytest.fixture
def target(db) -> SubscriberList:
    return SubscriberListFactory(name="Imported")


# --- email fast path ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    ["ann@example.com", "Ann.Lee+tag@Sub.Example.co.uk", " x@y.io ", "o'neil@example.org", "a@b.test",
     "a@localhost", "a@xn--bcher-kva.example", "a--b@ex--ample.com", "a..b@example.com", ".a@example.com",
     "ü@example.com", "a@example.123", "a@-example.com", "a" * 65 + "@example.com", "a@exa_mple.com",
     "a@example", "a@example.com.", "\"quoted\"@example.com"],
)
def test_fast_email_path_agrees_with_email_validator(raw):
    assert_fast_path_agrees(raw)


EMAIL_ALPHABET = "abcAB09.-_+'@xn" + "üé\"()[] "


@settings(max_examples=400, deadline=None)
@given(
    local=st.text(EMAIL_ALPHABET, min_size=0, max_size=70),
    domain=st.text("abz09.-_ü", min_size=0, max_size=30),
    tld=st.sampled_from(["com", "io", "test", "local", "c", "123", "co.uk", ""]),
)
def test_fast_email_path_property(local, domain, tld):
    assert_fast_path_agrees(f"{local}@{domain}.{tld}" if tld else f"{local}@{domain}")


def assert_fast_path_agrees(raw: str) -> None:
    """The shortcut accepts exactly what email-validator accepts, and normalises it the same way."""
    try:
        expected = normalize_email(raw)
    except ValidationError:
        with pytest.raises(ValidationError):
            import_parse.fast_normalize_email(raw)
    else:
        assert import_parse.fast_normalize_email(raw) == expected


# --- refused files: nothing stored --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"\r\n\r\n", "empty"),
        (b"\xef\xbb\xbf", "empty"),
        (b"name,city\nAnn,Paris\n", "no 'email' column"),
        (b"just some text without columns", "no 'email' column"),
        (b"email,name\n", "no rows below"),
        (b"\xff\xfee\x00m\x00a\x00i\x00l\x00", "binary"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary"),
        (b"email,name\nann@example.com,Jos\xe9\n", "not UTF-8"),
        (b"email,n\xe9m\nann@example.com,x\n", "line 1"),
        ("email;name\n".encode("utf-16"), "binary"),
        (b"email,Email\na@example.com,b@example.com\n", "more than one 'email'"),
        (b"email,name,NAME\na@example.com,x,y\n", "more than one 'name'"),
        (b"email,city,city\na@example.com,x,y\n", "twice"),
        (b"email," + b"x" * 70_000 + b"\n", "too long"),
        (("email," + ",".join(f"c{i}" for i in range(51)) + "\na@example.com\n").encode(), "at most 50"),
    ],
)
def test_file_that_cannot_be_imported_is_refused_and_nothing_is_stored(app, db, target, content, message):
    files_before = uploads(app)
    with pytest.raises(ImportFileError, match=message):
        imports.start_import(target, "bad.csv", io.BytesIO(content))
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(SubscriberImport)) == 0
    assert uploads(app) == files_before


def test_too_big_file_is_refused(app, db, target, monkeypatch):
    monkeypatch.setitem(app.config, "IMPORT_MAX_BYTES", 100)
    files_before = uploads(app)
    content = "email\n" + "".join(f"p{i}@example.com\n" for i in range(20))
    with pytest.raises(ImportFileError, match="too big"):
        imports.start_import(target, "big.csv", io.BytesIO(content.encode()))
    assert uploads(app) == files_before


# --- rows and counters --------------------------------------------------------------------------------


def test_import_creates_subscribers_with_names_and_attributes(db, target):
    report = run_csv(
        target, "Email,Name,City,Plan\r\nAnn@Example.com,Ann,Paris,pro\r\nbob@example.com,,Oslo,\r\n"
    )
    assert report["status"] == "done"
    assert (report["processed"], report["imported"], report["updated"], report["skipped"]) == (2, 2, 0, 0)
    assert report["total"] == 2
    ann = db.session.scalar(select(Subscriber).where(Subscriber.email == "ann@example.com"))
    assert ann.name == "Ann"
    assert ann.attributes == {"City": "Paris", "Plan": "pro"}
    assert ann.status == "active"
    bob = db.session.scalar(select(Subscriber).where(Subscriber.email == "bob@example.com"))
    assert bob.attributes == {"City": "Oslo"}  # empty cells are not stored
    assert members_of(db, target) == ["ann@example.com", "bob@example.com"]


def test_bom_and_semicolons_are_understood(db, target):
    report = run_csv(target, "\ufeffEMAIL;Name;Ville\nann@example.com;Ann;Montréal\n".encode())
    assert report["imported"] == 1
    ann = db.session.scalar(select(Subscriber))
    assert ann.attributes == {"Ville": "Montréal"}


def test_reimporting_the_same_file_changes_nothing(db, target):
    content = "email,name,city\nann@example.com,Ann,Paris\nbob@example.com,Bob,Oslo\n"
    first = run_csv(target, content)
    assert first["imported"] == 2
    before = {s.email: (s.name, s.attributes, s.updated_at) for s in db.session.scalars(select(Subscriber))}
    second = run_csv(target, content)
    assert (second["imported"], second["updated"], second["skipped"], second["duplicates"]) == (0, 0, 2, 0)
    after = {s.email: (s.name, s.attributes, s.updated_at) for s in db.session.scalars(select(Subscriber))}
    assert after == before


def test_existing_subscribers_are_updated_merged_and_joined(db, target):
    SubscriberFactory(email="ann@example.com", name="Ann", attributes={"city": "Paris", "vip": "yes"})
    SubscriberFactory(email="bob@example.com", name="Bob", attributes={"city": "Oslo"})
    SubscriberFactory(email="carl@example.com", name="Carl", attributes={"city": "Rome"}, lists=[target])
    report = run_csv(
        target,
        "email,name,city\n"
        "ann@example.com,,Lyon\n"  # attribute changes, name kept (empty cell)
        "bob@example.com,Bob,Oslo\n"  # same data, but joins the list: updated
        "carl@example.com,Carl,Rome\n",  # same data, already on the list: skipped
    )
    assert (report["imported"], report["updated"], report["skipped"]) == (0, 2, 1)
    ann = db.session.scalar(select(Subscriber).where(Subscriber.email == "ann@example.com"))
    assert ann.name == "Ann"
    assert ann.attributes == {"city": "Lyon", "vip": "yes"}
    assert members_of(db, target) == ["ann@example.com", "bob@example.com", "carl@example.com"]


def test_import_never_changes_the_status_of_unsubscribed_or_blocklisted(db, target):
    SubscriberFactory(email="gone@example.com", status="unsubscribed")
    SubscriberFactory(email="bad@example.com", status="blocklisted")
    report = run_csv(target, "email,name\ngone@example.com,Gone\nbad@example.com,Bad\n")
    assert report["status"] == "done"
    statuses = dict(db.session.execute(select(Subscriber.email, Subscriber.status)).all())
    assert statuses == {"gone@example.com": "unsubscribed", "bad@example.com": "blocklisted"}


def test_duplicates_within_the_file_are_skipped_and_counted(db, target, monkeypatch):
    monkeypatch.setattr(importer, "CHUNK_ROWS", 2)  # so repeats span chunks too
    report = run_csv(
        target,
        "email,name\nann@example.com,First\nANN@example.com,Second\nbob@example.com,Bob\n"
        "carl@example.com,Carl\nann@example.com,Third\nbob@example.com,Bob2\n",
    )
    assert (report["imported"], report["skipped"], report["duplicates"]) == (3, 3, 3)
    assert db.session.scalar(select(Subscriber.name).where(Subscriber.email == "ann@example.com")) == "First"
    assert_counts_add_up(report)


def expected_import(existing: dict[str, dict], target_id: int, rows: list[tuple[str, str, str, str]]) -> dict:
    """The docstring's rules, applied row by row in plain Python: what an import of `rows` (email, name,
    city, plan cells) must leave behind, and its counters."""
    state = {email: {**stored, "attributes": dict(stored["attributes"]), "lists": set(stored["lists"])}
             for email, stored in existing.items()}
    counts = {"imported": 0, "updated": 0, "skipped": 0, "duplicates": 0}
    seen: set[str] = set()
    for raw_email, raw_name, city, plan in rows:
        email, name = raw_email.strip().lower(), raw_name.strip()
        attributes = {key: value for key, value in (("city", city), ("plan", plan)) if value}
        if email in seen:
            counts["duplicates"] += 1
            counts["skipped"] += 1
            continue
        seen.add(email)
        stored = state.get(email)
        if stored is None:
            state[email] = {"name": name, "attributes": attributes, "status": "active", "lists": {target_id},
                            "changed": True}
            counts["imported"] += 1
            continue
        changed = bool(name and name != stored["name"]) or any(
            stored["attributes"].get(key) != value for key, value in attributes.items())
        if changed:
            stored["name"] = name or stored["name"]
            stored["attributes"].update(attributes)
            stored["changed"] = True
        if changed or target_id not in stored["lists"]:
            counts["updated"] += 1
        else:
            counts["skipped"] += 1
        stored["lists"].add(target_id)
    return {"state": state, "counts": counts}


@pytest.mark.parametrize("seed", range(12))
def test_mixed_new_and_existing_rows_follow_the_rules_in_any_chunking(db, target, monkeypatch, seed):
    """New, existing (changed, same, on the list or not, unsubscribed), repeated and invalid rows, in
    random order and chunk sizes: the import leaves exactly what the rules say, with true counters.
    On PostgreSQL this proves the insert-only path for new emails agrees with the merge of existing ones."""
    import random

    rng = random.Random(seed)
    monkeypatch.setattr(importer, "CHUNK_ROWS", rng.choice([1, 3, 7, 50]))
    other = SubscriberListFactory(name="Other")
    existing: dict[str, dict] = {}
    for i in rng.sample(range(40), 20):
        email = f"p{i}@example.com"
        stored = {"name": rng.choice(["", "Ann", "Bob"]),
                  "attributes": rng.choice([{}, {"city": "Paris"}, {"city": "Oslo", "vip": "yes"}]),
                  "status": rng.choice(["active", "active", "unsubscribed", "blocklisted"]),
                  "lists": set(rng.sample([target.id, other.id], rng.randrange(3)))}
        SubscriberFactory(email=email, name=stored["name"], attributes=stored["attributes"],
                          status=stored["status"],
                          lists=[lst for lst in (target, other) if lst.id in stored["lists"]])
        existing[email] = stored
    updated_at_before = dict(db.session.execute(select(Subscriber.email, Subscriber.updated_at)).all())
    spellings = ["p{}@example.com", "P{}@Example.COM", " p{}@example.com "]
    rows = [(rng.choice(spellings).format(rng.randrange(40)), rng.choice(["", "Ann", "Bob", " Carl "]),
             rng.choice(["", "Paris", "Oslo"]), rng.choice(["", "free", "pro"])) for _ in range(60)]
    invalid_lines = set(rng.sample(range(len(rows)), 4))
    lines = ["email,name,city,plan"] + [
        "not-an-email,X,Y,Z" if index in invalid_lines else ",".join(row) for index, row in enumerate(rows)]
    expected = expected_import(existing, target.id, [row for index, row in enumerate(rows)
                                                     if index not in invalid_lines])

    report = run_csv(target, "\n".join(lines) + "\n")

    assert report["status"] == "done"
    assert {key: report[key] for key in expected["counts"]} == expected["counts"]
    assert report["invalid"] == len(invalid_lines)
    assert report["processed"] == len(rows)
    assert_counts_add_up(report)
    db.session.expire_all()
    stored = {s.email: s for s in db.session.scalars(select(Subscriber))}
    assert set(stored) == set(expected["state"])
    for email, want in expected["state"].items():
        subscriber = stored[email]
        assert (subscriber.name, subscriber.attributes, subscriber.status) == (
            want["name"], want["attributes"], want["status"]), email
        if not want.get("changed"):
            assert subscriber.updated_at == updated_at_before[email], email
    on_target = {email for email, want in expected["state"].items() if target.id in want["lists"]}
    assert set(members_of(db, target)) == on_target
    on_other = {email for email, want in expected["state"].items() if other.id in want["lists"]}
    assert set(members_of(db, other)) == on_other


@pytest.mark.postgres
@pytest.mark.skipif(not is_postgres(), reason="concurrent writers need PostgreSQL")
def test_an_email_stored_by_another_transaction_during_the_import_is_merged_not_lost(
    db, target, caplog, monkeypatch
):
    """The chunk looks up existing emails, then inserts the others. Another transaction stores one of
    them in between: the insert meets its unique index, the chunk runs again and merges that row."""
    import threading

    from sqlalchemy import text

    monkeypatch.setattr(import_postgres.log, "disabled", False)  # Alembic's logging config turns it off
    with db.engine.connect() as other_writer:
        other_writer.execute(text(
            "INSERT INTO subscribers (email, name, attributes, status, created_at, updated_at) "
            "VALUES ('bob@example.com', 'Robert', '{\"vip\": \"yes\"}', 'unsubscribed', now(), now())"))
        # Uncommitted when the import looks it up; committed while the import waits on the index.
        threading.Timer(1.0, other_writer.commit).start()
        with caplog.at_level("INFO", logger="mailapp.subscribers.import_postgres"):
            report = run_csv(target, "email,name,city\nann@example.com,Ann,Paris\nbob@example.com,Bob,Oslo\n")
    assert "running it again" in caplog.text
    assert (report["status"], report["imported"], report["updated"], report["skipped"]) == ("done", 1, 1, 0)
    db.session.expire_all()
    bob = db.session.scalar(select(Subscriber).where(Subscriber.email == "bob@example.com"))
    assert (bob.name, bob.attributes, bob.status) == ("Bob", {"vip": "yes", "city": "Oslo"}, "unsubscribed")
    assert members_of(db, target) == ["ann@example.com", "bob@example.com"]


def test_invalid_rows_are_reported_with_line_numbers_and_do_not_stop_good_ones(db, target):
    content = (
        b"email,name,city\n"
        b"ann@example.com,Ann,Paris\n"  # line 2
        b"not-an-email,X,Y\n"  # line 3
        b"bob@example.com,Bob,Oslo,extra\n"  # line 4: more cells than the header
        b"\n"  # line 5: blank, ignored
        b"carl@example.com,Carl,Caf\xe9\n"  # line 6: bad UTF-8
        b'dan@example.com,"Dan\nSmith",Rome\n'  # lines 7-8: quoted line break is fine
        b",NoEmail,Z\n"  # line 9
        b"eve@example.com," + b"n" * 301 + b",Z\n"  # line 10
        b"fay@example.com,Fay,Oslo"  # line 11, no final newline
    )
    report = run_csv(target, content)
    assert report["status"] == "done"
    assert report["imported"] == 3
    assert report["invalid"] == 5
    assert_counts_add_up(report)
    by_line = {error["line"]: error for error in report["errors"]}
    assert set(by_line) == {3, 4, 6, 9, 10}
    assert by_line[3]["email"] == "not-an-email"
    assert "Invalid email" in by_line[3]["reason"]
    assert "Expected 3 columns, found 4" in by_line[4]["reason"]
    assert "UTF-8" in by_line[6]["reason"]
    assert "empty" in by_line[9]["reason"]
    assert "longer than 300" in by_line[10]["reason"]
    assert members_of(db, target) == ["ann@example.com", "dan@example.com", "fay@example.com"]
    dan = db.session.scalar(select(Subscriber).where(Subscriber.email == "dan@example.com"))
    assert dan.name == "Dan Smith"  # a quoted line break becomes a space: a name is one line


def test_a_row_with_missing_trailing_cells_is_read_as_if_they_were_empty(db, target):
    run_csv(target, "email,name,city\nann@example.com,Ann,Paris\n")
    report = run_csv(
        target, "email,name,city\nann@example.com\nbob@example.com,Bob\ncarl@example.com,,Rome\n"
    )
    assert (report["status"], report["invalid"], report["imported"]) == ("done", 0, 2), report["errors"]
    assert_counts_add_up(report)
    people = {
        subscriber.email: (subscriber.name, subscriber.attributes)
        for subscriber in db.session.scalars(select(Subscriber))
    }
    # Missing cells are empty cells: they never overwrite what is stored.
    assert people == {
        "ann@example.com": ("Ann", {"city": "Paris"}),
        "bob@example.com": ("Bob", {}),
        "carl@example.com": ("", {"city": "Rome"}),
    }


def test_only_the_first_thousand_errors_are_kept_but_all_are_counted(db, target, monkeypatch):
    monkeypatch.setattr(importer, "CHUNK_ROWS", 400)
    content = "email\n" + "bad\n" * 1100 + "ok@example.com\n"
    report = run_csv(target, content)
    assert report["invalid"] == 1100
    assert len(report["errors"]) == importer.MAX_REPORTED_ERRORS
    assert report["errors"][-1]["line"] == 1001
    assert report["imported"] == 1


def test_many_chunks_keep_counts_and_progress_consistent(db, target, monkeypatch):
    monkeypatch.setattr(importer, "CHUNK_ROWS", 7)
    rows = [f"p{i}@example.com,P{i},{i % 3}" for i in range(50)]
    report = run_csv(target, "email,name,group\n" + "\n".join(rows + rows[:10]) + "\n")
    assert (report["processed"], report["imported"], report["duplicates"]) == (60, 50, 10)
    assert report["total"] == 60
    assert_counts_add_up(report)
    assert len(members_of(db, target)) == 50


def test_an_interrupted_import_resumes_after_its_last_chunk(db, target, monkeypatch):
    """A worker that died mid-way: the task runs again and carries on from the committed counters."""
    monkeypatch.setattr(importer, "CHUNK_ROWS", 2)
    content = "email\n" + "".join(f"p{i}@example.com\n" for i in range(6))
    record = imports.start_import(target, "x.csv", io.BytesIO(content.encode()))
    db.session.commit()
    # As if the first chunk (2 rows) had been committed before the crash.
    SubscriberFactory(email="p0@example.com", lists=[target])
    SubscriberFactory(email="p1@example.com", lists=[target])
    record.status, record.processed, record.imported = "running", 2, 2
    db.session.commit()
    imports.run_import(record.id)
    db.session.expire_all()
    report = imports.import_to_dict(imports.get_import(record.id))
    assert (report["status"], report["processed"], report["imported"], report["skipped"]) == ("done", 6, 6, 0)
    assert len(members_of(db, target)) == 6


def test_import_into_a_deleted_list_fails_cleanly(db, target):
    record = imports.start_import(target, "x.csv", io.BytesIO(b"email\na@example.com\n"))
    db.session.commit()
    subscriber_lists.delete_list(target)
    db.session.commit()
    imports.run_import(record.id)
    db.session.expire_all()
    stored = imports.get_import(record.id)
    assert stored.status == "failed"
    assert "deleted" in stored.failure
    assert db.session.scalar(select(func.count()).select_from(Subscriber)) == 0


def test_the_uploaded_file_is_removed_once_done(app, db, target):
    files_before = uploads(app)
    run_csv(target, "email\na@example.com\n")
    assert uploads(app) == files_before


# --- pages --------------------------------------------------------------------------------------------


def test_upload_through_the_list_page_shows_the_progress_page(auth_client, db, target, monkeypatch):
    queued = []
    monkeypatch.setattr("mailapp.subscribers.tasks.run_import.delay", queued.append)
    page = f"/lists/{target.id}"
    response = auth_client.post_form(
        f"{page}/import",
        {"file": (io.BytesIO(b"email,name\nann@example.com,Ann\n"), "people.csv")},
        token_page=page,
        content_type="multipart/form-data",
    )
    assert response.status_code == 302
    record = db.session.scalar(select(SubscriberImport))
    assert queued == [record.id]
    assert response.headers["Location"].endswith(f"/imports/{record.id}")
    html = auth_client.get(f"/imports/{record.id}").get_data(as_text=True)
    assert "people.csv" in html
    assert 'role="progressbar"' in html
    assert f"/imports/{record.id}/status" in html
    assert "<script>" not in html  # CSP: page JS lives in static/js
    imports.run_import(record.id)
    status = auth_client.get(f"/imports/{record.id}/status").get_json()
    assert status["status"] == "done"
    assert status["imported"] == 1
    done_page = auth_client.get(f"/imports/{record.id}").get_data(as_text=True)
    assert "100%" in done_page


def test_refused_upload_shows_the_reason_on_the_list_page(auth_client, db, target):
    page = f"/lists/{target.id}"
    response = auth_client.post_form(
        f"{page}/import", {"file": (io.BytesIO(b"name\nAnn\n"), "people.csv")},
        token_page=page, content_type="multipart/form-data",
    )
    assert response.status_code == 422
    assert "no &#39;email&#39; column" in response.get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(SubscriberImport)) == 0


def test_upload_without_a_file_is_refused(auth_client, db, target):
    page = f"/lists/{target.id}"
    response = auth_client.post_form(
        f"{page}/import", {}, token_page=page, content_type="multipart/form-data"
    )
    assert response.status_code == 422
    assert "Choose a CSV file" in response.get_data(as_text=True)


def test_import_page_lists_errors(auth_client, target):
    report = run_csv(target, "email\nbad-address\n")
    html = auth_client.get(f"/imports/{report['id']}").get_data(as_text=True)
    assert "bad-address" in html
    assert "Invalid email" in html


# --- API ----------------------------------------------------------------------------------------------


def test_api_import_answers_202_and_the_status(api, db, target, monkeypatch):
    queued = []
    monkeypatch.setattr("mailapp.subscribers.tasks.run_import.delay", queued.append)
    response = api.post(
        f"/api/v1/lists/{target.id}/import",
        data={"file": (io.BytesIO(b"email,name\nann@example.com,Ann\nnope,X\n"), "p.csv")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 202
    import_id = response.get_json()["import_id"]
    assert queued == [import_id]
    assert api.get(f"/api/v1/imports/{import_id}").get_json()["status"] == "queued"
    imports.run_import(import_id)
    body = api.get(f"/api/v1/imports/{import_id}").get_json()
    assert {key: body[key] for key in ("status", "total", "processed", "imported", "updated", "skipped")} == {
        "status": "done", "total": 2, "processed": 2, "imported": 1, "updated": 0, "skipped": 0,
    }
    assert body["errors"] == [{"line": 3, "email": "nope", "reason": body["errors"][0]["reason"]}]


def test_api_import_refused_file_is_422_with_the_error_shape(api, db, target):
    response = api.post(
        f"/api/v1/lists/{target.id}/import",
        data={"file": (io.BytesIO(b"\xff\xd8\xff\xe0 not a csv \xff"), "photo.jpg")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "import_error"
    assert db.session.scalar(select(func.count()).select_from(SubscriberImport)) == 0


def test_api_import_without_file_field_is_422(api, target):
    response = api.post(f"/api/v1/lists/{target.id}/import", data={}, content_type="multipart/form-data")
    assert response.status_code == 422


def test_api_import_missing_list_or_import_is_404(api):
    response = api.post(
        "/api/v1/lists/999/import", data={"file": (io.BytesIO(b"email\na@example.com\n"), "p.csv")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 404
    assert api.get("/api/v1/imports/999").status_code == 404


@pytest.mark.e2e
def test_import_end_to_end_with_the_real_worker(api, db, target, celery_worker):
    rows = "".join(f"person{i}@example.com,Person {i},{i % 5}\n" for i in range(300))
    response = api.post(
        f"/api/v1/lists/{target.id}/import",
        data={"file": (io.BytesIO(("email,name,score\n" + rows + "broken\n").encode()), "people.csv")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 202
    import_id = response.get_json()["import_id"]
    deadline = time.monotonic() + 60
    body = {}
    while time.monotonic() < deadline:
        body = api.get(f"/api/v1/imports/{import_id}").get_json()
        # The test client shares this test's session; end its transaction, which on SQLite holds the
        # write lock the worker needs.
        db.session.rollback()
        if body["status"] in ("done", "failed"):
            break
        time.sleep(0.2)
    assert body["status"] == "done", body
    assert (body["imported"], body["processed"], len(body["errors"])) == (300, 301, 1)
    db.session.expire_all()
    assert len(members_of(db, target)) == 300


# --- property tests -----------------------------------------------------------------------------------

CSV_PIECES = st.sampled_from([
    b"email", b"Email", b"name", b"city", b",", b";", b"\n", b"\r\n", b'"', b"a@example.com",
    b"B@Example.com", b"bad", b"x", b"\xef\xbb\xbf", b"\xff", b"\xc3\xa9", b"\x00", b" ", b"=1+1",
    b"\xe2\x82",
])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.lists(CSV_PIECES, max_size=40).map(b"".join), header=st.sampled_from([b"", b"email,name\n",
                                                                                        b"email;city\n"]))
def test_random_csv_bytes_never_break_the_import(app, db, target, header, body):
    content = header + body
    imports_before = db.session.scalar(select(func.count()).select_from(SubscriberImport))
    subscribers_before = db.session.scalar(select(func.count()).select_from(Subscriber))
    files_before = uploads(app)
    try:
        record = imports.start_import(target, "random.csv", io.BytesIO(content))
    except ImportFileError:
        db.session.rollback()
        # Refused: nothing stored, no file left behind.
        assert db.session.scalar(select(func.count()).select_from(SubscriberImport)) == imports_before
        assert db.session.scalar(select(func.count()).select_from(Subscriber)) == subscribers_before
        assert uploads(app) == files_before
        return
    db.session.commit()
    imports.run_import(record.id)
    db.session.expire_all()
    report = imports.import_to_dict(imports.get_import(record.id))
    assert report["status"] == "done", report
    assert_counts_add_up(report)
    assert report["invalid"] >= len(report["errors"])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=300))
def test_random_uploads_through_the_api_never_give_a_500(api, target, monkeypatch, body):
    monkeypatch.setattr("mailapp.subscribers.tasks.run_import.delay", lambda import_id: None)
    for content in (body, b"email,name\n" + body):
        response = api.post(
            f"/api/v1/lists/{target.id}/import", data={"file": (io.BytesIO(content), "r.csv")},
            content_type="multipart/form-data",
        )
        assert response.status_code in (202, 422), response.get_data(as_text=True)
        if response.status_code == 202:
            import_id = response.get_json()["import_id"]
            imports.run_import(import_id)
            report = api.get(f"/api/v1/imports/{import_id}").get_json()
            assert report["status"] == "done"
            assert report["processed"] == (
                report["imported"] + report["updated"] + report["skipped"] + report["invalid"]
            )


def test_a_status_column_is_ignored_not_applied(db, target):
    report = run_csv(target, "email,status,created_at\nnew@example.com,blocklisted,2020-01-01\n")
    assert report["imported"] == 1
    stored = db.session.scalar(select(Subscriber))
    assert stored.status == "active"
    assert stored.attributes == {}


@pytest.mark.postgres
@pytest.mark.skipif(not is_postgres(), reason="advisory locks are PostgreSQL's")
def test_a_duplicate_task_does_not_process_an_import_another_worker_holds(db, target):
    from sqlalchemy import text

    record = imports.start_import(target, "x.csv", io.BytesIO(b"email\na@example.com\n"))
    db.session.commit()
    lock = {"class_id": imports.IMPORT_LOCK_CLASS, "import_id": record.id}
    with db.engine.connect() as other_worker:
        assert other_worker.scalar(text("SELECT pg_try_advisory_lock(:class_id, :import_id)"), lock)
        imports.run_import(record.id)
        db.session.expire_all()
        assert imports.get_import(record.id).status == "queued"
        other_worker.execute(text("SELECT pg_advisory_unlock(:class_id, :import_id)"), lock)
        other_worker.commit()
    imports.run_import(record.id)
    db.session.expire_all()
    assert imports.get_import(record.id).imported == 1
