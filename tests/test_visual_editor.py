"""The visual editor's server side: MJML detected, compiled by MRML and stored beside its HTML (sends use the
HTML), MJML problems told on their line, the starters, and layout images (checked by content, served at a
public, cached URL)."""

from __future__ import annotations

import base64
import io
import re

import pytest
from sqlalchemy import select

from mailapp.errors import TemplateError, ValidationError
from mailapp.layouts import images, mjml, services
from mailapp.layouts.starters import STARTERS
from mailapp.models import Layout, LayoutImage

SIMPLE_MJML = """<mjml>
  <mj-body>
    <mj-section><mj-column>
      <mj-text>Hello {{ subscriber.name }}</mj-text>
      <mj-text>{{ message }}</mj-text>
      <mj-button href="{{ unsubscribe_url }}">Unsubscribe</mj-button>
    </mj-column></mj-section>
  </mj-body>
</mjml>
"""
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR4nGP8z8DAwMDAxMDAwMDAAAANHQEDasKb6QAAAABJRU5ErkJggg=="
)
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'


def test_mjml_is_recognised_by_its_root_element_and_html_is_not() -> None:
    assert mjml.is_mjml(SIMPLE_MJML)
    assert mjml.is_mjml("<!-- made in mailapp -->\n<mjml><mj-body></mj-body></mjml>")
    assert not mjml.is_mjml("<html><body><mjml></mjml></body></html>")


def test_an_mjml_layout_is_stored_with_its_source_and_compiled_html(db) -> None:
    layout = services.create_layout("Visual", SIMPLE_MJML)
    db.session.commit()
    stored = db.session.scalar(select(Layout).where(Layout.id == layout.id))
    assert stored.mjml == SIMPLE_MJML
    assert "<mj-" not in stored.html
    assert '<html' in stored.html
    assert "{{ unsubscribe_url }}" in stored.html
    assert services.inspect_layout(stored).warnings == []


def test_an_html_layout_has_no_mjml_source_and_turning_mjml_into_html_forgets_it(db) -> None:
    layout = services.create_layout("Visual", SIMPLE_MJML)
    services.update_layout(layout, html='<p>{{ message }} <a href="{{ unsubscribe_url }}">u</a></p>')
    assert layout.mjml is None
    assert layout.html.startswith("<p>")


def test_invalid_mjml_is_refused_with_its_line_and_nothing_is_stored(db) -> None:
    # An element inside a self-closing-only one: MRML says where.
    broken = (
        '<mjml>\n<mj-head>\n<mj-attributes>\n<mj-all font-family="x"><mj-text></mj-text></mj-all>\n'
        "</mj-attributes>\n</mj-head>\n<mj-body></mj-body>\n</mjml>"
    )
    with pytest.raises(TemplateError) as raised:
        services.create_layout("Broken", broken)
    assert "MJML is not valid" in raised.value.message
    assert raised.value.details[0]["line"] == 4
    with pytest.raises(TemplateError, match="closing tag"):
        services.create_layout("Unclosed", "<mjml>\n  <mj-body>\n    <mj-section>\n  </mj-body>\n</mjml>")
    assert db.session.scalar(select(Layout)) is None


def test_a_template_problem_in_mjml_is_told_on_the_mjml_line(db) -> None:
    source = SIMPLE_MJML.replace("{{ message }}", "{{ shop.url }}")
    with pytest.raises(TemplateError) as raised:
        services.create_layout("Unknown", source)
    assert raised.value.details[0]["line"] == 5
    assert "line 5 of the MJML" in raised.value.message


def test_mj_include_is_refused_so_mjml_cannot_read_the_servers_files(db) -> None:
    with pytest.raises(TemplateError, match="mj-include"):
        services.create_layout("Include", '<mjml><mj-body><mj-include path="/etc/passwd" /></mj-body></mjml>')


def test_mjml_larger_than_the_layout_limit_is_refused(app, db) -> None:
    app.config["LAYOUT_MAX_BYTES"] = 2000
    try:
        padded = SIMPLE_MJML.replace("{{ message }}", "{{ message }}" + " x" * 1000)
        with pytest.raises(ValidationError, match="larger than the limit"):
            services.create_layout("Big", padded)
    finally:
        app.config["LAYOUT_MAX_BYTES"] = 2 * 1024 * 1024


@pytest.mark.parametrize("starter", STARTERS, ids=lambda starter: starter.key)
def test_every_starter_validates_with_the_unsubscribe_link_in_place(db, starter) -> None:
    prepared = services.prepare_layout(starter.source())
    assert prepared.mjml == starter.source()
    assert prepared.check.warnings == []
    for variable in ("unsubscribe_url", "message", "subscriber.email", "view_in_browser_url"):
        assert variable in prepared.check.variables


def test_an_mjml_file_uploaded_on_the_layout_page_is_compiled(auth_client, db) -> None:
    data = {"name": "Uploaded", "html": "", "file": (io.BytesIO(SIMPLE_MJML.encode()), "letter.mjml")}
    response = auth_client.post_form("/layouts/new", data, content_type="multipart/form-data")
    assert response.status_code == 302
    assert db.session.scalar(select(Layout.mjml)) == SIMPLE_MJML


def test_the_layouts_page_offers_every_starter_and_the_visual_editor_opens_on_one(auth_client) -> None:
    page = auth_client.get("/layouts/").get_data(as_text=True)
    for starter in STARTERS:
        assert f"/layouts/new/visual?starter={starter.key}" in page
        assert starter.description in page
    editor = auth_client.get("/layouts/new/visual?starter=digest")
    assert editor.status_code == 200
    assert "1. First story" in editor.get_data(as_text=True)
    assert auth_client.get("/layouts/new/visual?starter=nope").status_code == 404


def test_saving_bad_mjml_in_the_visual_editor_shows_the_line_and_keeps_the_source(auth_client, db) -> None:
    broken = SIMPLE_MJML.replace("{{ message }}", "{{ shop.url }}")
    response = auth_client.post_form("/layouts/new/visual", {"name": "Broken", "html": broken},
                                     token_page="/layouts/new/visual")
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "Line 5:" in page
    assert "{{ shop.url }}" in page
    assert db.session.scalar(select(Layout)) is None


def test_an_html_layout_is_edited_as_code_not_in_the_visual_editor(auth_client, db) -> None:
    layout = services.create_layout("Code", '<p>{{ message }} <a href="{{ unsubscribe_url }}">u</a></p>')
    db.session.commit()
    response = auth_client.get(f"/layouts/{layout.id}/visual")
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/layouts/{layout.id}")


def _upload(client, files, token=None):
    token = token if token is not None else client.csrf_token("/layouts/new/visual")
    return client.post("/layouts/images", data={"files": files}, headers={"X-CSRFToken": token},
                       content_type="multipart/form-data")


def test_an_uploaded_image_is_served_at_a_public_cached_url(auth_client, client, db) -> None:
    response = _upload(auth_client, [(io.BytesIO(PNG), "dot.txt")])
    assert response.status_code == 201, response.get_data(as_text=True)
    src = response.get_json()["data"][0]["src"]
    path = re.fullmatch(r"http://[^/]+(/media/\d+-[0-9a-f]{64}\.png)", src).group(1)
    auth_client.post_form("/logout", {})
    served = client.get(path)
    assert served.status_code == 200
    assert served.data == PNG
    assert served.mimetype == "image/png"
    assert served.headers["X-Content-Type-Options"] == "nosniff"
    assert "max-age=31536000" in served.headers["Cache-Control"]
    assert client.get(path.replace(".png", ".gif")).status_code == 404
    assert client.get(re.sub(r"-[0-9a-f]{4}", "-0000", path)).status_code == 404


def test_the_same_image_uploaded_twice_is_stored_once(auth_client, db) -> None:
    first = _upload(auth_client, [(io.BytesIO(PNG), "a.png")]).get_json()["data"][0]["src"]
    second = _upload(auth_client, [(io.BytesIO(PNG), "b.png")]).get_json()["data"][0]["src"]
    assert first == second
    assert len(db.session.scalars(select(LayoutImage.id)).all()) == 1


@pytest.mark.parametrize(
    ("content", "name", "expected"),
    [
        (SVG, "logo.svg", "SVG"),
        (SVG, "logo.png", "SVG"),
        (b"<html>not an image</html>", "photo.jpg", "not a supported image"),
        (b"", "empty.png", "empty"),
    ],
)
def test_an_image_is_judged_by_its_content_not_its_name(auth_client, db, content, name, expected) -> None:
    response = _upload(auth_client, [(io.BytesIO(content), name)])
    assert response.status_code == 422
    assert expected in response.get_json()["error"]["message"]
    assert db.session.scalar(select(LayoutImage)) is None


def test_an_image_over_the_size_limit_is_refused(app, auth_client, db) -> None:
    app.config["LAYOUT_IMAGE_MAX_BYTES"] = len(PNG) - 1
    try:
        response = _upload(auth_client, [(io.BytesIO(PNG), "dot.png")])
    finally:
        app.config["LAYOUT_IMAGE_MAX_BYTES"] = 2 * 1024 * 1024
    assert response.status_code == 422
    assert "LAYOUT_IMAGE_MAX_BYTES" in response.get_json()["error"]["message"]


def test_an_image_upload_without_the_csrf_token_is_refused(auth_client, db) -> None:
    response = _upload(auth_client, [(io.BytesIO(PNG), "dot.png")], token="")
    assert response.status_code == 400
    assert db.session.scalar(select(LayoutImage)) is None


def test_image_kinds_are_told_by_their_first_bytes() -> None:
    assert images.image_kind(PNG).extension == "png"
    assert images.image_kind(b"\xff\xd8\xff\xe0rest").extension == "jpg"
    assert images.image_kind(b"GIF89a...").extension == "gif"
    assert images.image_kind(b"RIFF\x00\x00\x00\x00WEBPVP8 ").extension == "webp"
    assert images.image_kind(SVG) is None


def test_the_api_takes_mjml_and_gives_back_its_source_and_kind(api, db) -> None:
    created = api.post("/api/v1/layouts", json={"name": "From the API", "mjml": SIMPLE_MJML})
    assert created.status_code == 201, created.get_json()
    body = created.get_json()
    assert (body["kind"], body["mjml"]) == ("mjml", SIMPLE_MJML)
    assert "<mjml" not in body["html"]  # compiled...
    assert "{{ unsubscribe_url }}" in body["html"]  # ...its variables kept
    assert "unsubscribe_url" in body["variables"]
    fetched = api.get(f"/api/v1/layouts/{body['id']}").get_json()
    assert (fetched["kind"], fetched["mjml"], fetched["html"]) == ("mjml", SIMPLE_MJML, body["html"])
    [listed] = api.get("/api/v1/layouts").get_json()["items"]
    assert listed["kind"] == "mjml"
    # Replaced by HTML: an html layout, its MJML forgotten, as in the dashboard.
    patched = api.patch(f"/api/v1/layouts/{body['id']}", json={"html": "<p>{{ message }}</p>"}).get_json()
    assert (patched["kind"], patched["mjml"]) == ("html", None)
    patched = api.patch(f"/api/v1/layouts/{body['id']}", json={"mjml": SIMPLE_MJML.replace("Hello", "Hi")})
    assert patched.get_json()["kind"] == "mjml"
    assert "Hi " in patched.get_json()["html"]
    # An MJML file in a multipart upload, as on the layouts page.
    upload = {"name": "Uploaded", "file": (io.BytesIO(SIMPLE_MJML.encode()), "letter.mjml")}
    uploaded = api.post("/api/v1/layouts", data=upload, content_type="multipart/form-data").get_json()
    assert (uploaded["kind"], uploaded["mjml"]) == ("mjml", SIMPLE_MJML)


def test_bad_mjml_through_the_api_is_the_one_error_shape_naming_the_mjml_line(api, db) -> None:
    response = api.post("/api/v1/layouts", json={
        "name": "Unknown", "mjml": SIMPLE_MJML.replace("{{ message }}", "{{ shop.url }}"),
    })
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "template_error"
    assert error["details"][0]["field"] == "mjml"
    assert error["details"][0]["line"] == 5
    unclosed = api.post("/api/v1/layouts", json={
        "name": "Unclosed", "mjml": "<mjml>\n  <mj-body>\n    <mj-section>\n  </mj-body>\n</mjml>",
    })
    assert unclosed.status_code == 422
    assert unclosed.get_json()["error"]["details"][0]["field"] == "mjml"
    not_mjml = api.post("/api/v1/layouts", json={"name": "HTML", "mjml": "<html><body></body></html>"})
    assert not_mjml.status_code == 422
    assert not_mjml.get_json()["error"]["details"] == [
        {"field": "mjml", "line": 1, "message": "No <mjml> root element."}
    ]
    both = api.post("/api/v1/layouts", json={"name": "Both", "mjml": SIMPLE_MJML, "html": "<p></p>"})
    assert both.status_code == 422
    assert {problem["field"] for problem in both.get_json()["error"]["details"]} == {"html", "mjml"}
    assert api.post("/api/v1/layouts", json={"name": "Number", "mjml": 5}).status_code == 422
    assert db.session.scalar(select(Layout)) is None
