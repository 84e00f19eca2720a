"""CSV export of a list: columns, formula-injection safety, streaming, the page and the API."""

from __future__ import annotations

import csv
import io

import pytest
from sqlalchemy import select

from mailapp.errors import NotFoundError
from mailapp.models.subscriber import Subscriber
from mailapp.subscribers import exports, imports
from tests.factories import SubscriberFactory, SubscriberListFactory


def parse(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_export_has_one_column_per_attribute_key(db):
    target = SubscriberListFactory()
    SubscriberFactory(email="ann@example.com", name="Ann", attributes={"city": "Paris"}, lists=[target])
    SubscriberFactory(email="bob@example.com", name="Bob", attributes={"plan": "pro", "city": "Oslo"},
                      lists=[target], status="unsubscribed")
    SubscriberFactory(email="other@example.com", attributes={"secret": "x"})  # not on the list
    text = "".join(exports.export_list_csv(target.id))
    assert text.splitlines()[0] == "email,name,status,created_at,city,plan"
    rows = parse(text)
    assert [(r["email"], r["name"], r["status"], r["city"], r["plan"]) for r in rows] == [
        ("ann@example.com", "Ann", "active", "Paris", ""),
        ("bob@example.com", "Bob", "unsubscribed", "Oslo", "pro"),
    ]
    assert rows[0]["created_at"].startswith("20")


def test_export_escapes_spreadsheet_formulas(db):
    target = SubscriberListFactory()
    SubscriberFactory(
        email="ann@example.com", name="=HYPERLINK(\"http://evil\")",
        attributes={"a": "+1", "b": "-2", "c": "@SUM(A1)", "d": "\tx", "e": "safe = fine", "n": 5,
                    "nested": {"k": "v"}},
        lists=[target],
    )
    row = parse("".join(exports.export_list_csv(target.id)))[0]
    assert row["name"] == "'=HYPERLINK(\"http://evil\")"
    assert (row["a"], row["b"], row["c"], row["d"]) == ("'+1", "'-2", "'@SUM(A1)", "'\tx")
    assert row["e"] == "safe = fine"
    assert row["n"] == "5"
    assert row["nested"] == '{"k": "v"}'


def test_export_streams_in_batches(db, monkeypatch):
    monkeypatch.setattr(exports, "EXPORT_BATCH", 3)
    target = SubscriberListFactory()
    people = SubscriberFactory.create_batch(10, lists=[target])
    chunks = list(exports.export_list_csv(target.id))
    assert len(chunks) == 4  # header travels with the first batch; batches of 3, 3, 3, 1
    rows = parse("".join(chunks))
    assert [r["email"] for r in rows] == [p.email for p in people]


def test_export_of_an_empty_list_is_just_the_header(db):
    target = SubscriberListFactory()
    assert "".join(exports.export_list_csv(target.id)) == "email,name,status,created_at\r\n"


def test_export_of_a_missing_list_raises(db):
    with pytest.raises(NotFoundError):
        next(exports.export_list_csv(999))


def test_export_round_trips_through_the_importer(db):
    source = SubscriberListFactory()
    SubscriberFactory(email="ann@example.com", name="Ann", attributes={"city": "Paris"}, lists=[source])
    SubscriberFactory(email="bob@example.com", name="Bob", status="unsubscribed", lists=[source])
    exported = "".join(exports.export_list_csv(source.id)).encode()
    record = imports.start_import(source, "export.csv", io.BytesIO(exported))
    db.session.commit()
    imports.run_import(record.id)
    db.session.expire_all()
    report = imports.import_to_dict(imports.get_import(record.id))
    # status and created_at columns are ignored by the importer: nothing changes.
    assert (report["processed"], report["skipped"], report["updated"], report["invalid"]) == (2, 2, 0, 0)
    ann = db.session.scalar(select(Subscriber).where(Subscriber.email == "ann@example.com"))
    assert ann.attributes == {"city": "Paris"}


def test_export_from_the_page(auth_client):
    target = SubscriberListFactory(name="My News")
    SubscriberFactory(email="ann@example.com", lists=[target])
    response = auth_client.get(f"/lists/{target.id}/export")
    assert response.status_code == 200
    assert response.is_streamed
    assert response.mimetype == "text/csv"
    assert 'filename="my-news-' in response.headers["Content-Disposition"]
    assert "ann@example.com" in response.get_data(as_text=True)


def test_export_from_the_api(api):
    target = SubscriberListFactory()
    SubscriberFactory(email="ann@example.com", lists=[target])
    response = api.get(f"/api/v1/lists/{target.id}/export")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert parse(response.get_data(as_text=True))[0]["email"] == "ann@example.com"
    missing = api.get("/api/v1/lists/999/export")
    assert missing.status_code == 404
    assert missing.get_json()["error"]["code"] == "not_found"


def test_export_page_of_missing_list_is_404(auth_client):
    assert auth_client.get("/lists/999/export").status_code == 404


def test_an_attribute_key_that_is_a_formula_comes_out_guarded_in_the_header(db):
    target = SubscriberListFactory()
    SubscriberFactory(email="ann@example.com", lists=[target],
                      attributes={'=HYPERLINK("http://evil")': "x", "+cmd": "y", "city": "-1"})
    text = "".join(exports.export_list_csv(target.id))
    header = next(csv.reader(io.StringIO(text)))
    assert header[4:] == ["'+cmd", "'=HYPERLINK(\"http://evil\")", "city"]
    assert not any(cell.startswith(("=", "+", "-", "@")) for cell in header)
    row = parse(text)[0]
    assert (row["'+cmd"], row["'=HYPERLINK(\"http://evil\")"], row["city"]) == ("y", "x", "'-1")
