"""Layouts: services, dashboard views and the API, with every kind of bad input (syntax, unknown
variables, SSTI payloads, oversize and non-UTF-8 files, duplicate names, deletes in use)."""

from __future__ import annotations

import io
import re

import pytest
from sqlalchemy import func, select

from mailapp.errors import ConflictError, InvalidStateError, NotFoundError, TemplateError, ValidationError
from mailapp.layouts import services
from mailapp.models import Layout
from tests.factories import SIMPLE_LAYOUT, CampaignFactory, LayoutFactory, SubscriberFactory
from tests.test_templating import SSTI_PAYLOADS

BROKEN_LAYOUT = "<html>\n<body>\n<p>Hello</p>\n<p>{{ subscriber.name </p>\n</body>\n</html>"
STYLED_LAYOUT = (
    "<html><head><style>p { color: #ff0000; }</style></head><body><p>Hi {{ subscriber.name }}, "
    "from {{ subscriber.attributes.city }}</p><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a>"
    "<script>parent.document.title='owned'</script></body></html>"
)


def layout_count(db) -> int:
    return db.session.scalar(select(func.count()).select_from(Layout))


# ---------------------------------------------------------------- services


def test_create_layout_stores_it_and_reports_variables(db) -> None:
    layout = services.create_layout("  Weekly  ", SIMPLE_LAYOUT)
    db.session.commit()
    assert layout.name == "Weekly"
    check = services.inspect_layout(layout)
    assert check.variables == ["message", "subscriber", "subscriber.name", "unsubscribe_url"]
    assert check.warnings == []


def test_layout_without_unsubscribe_link_is_stored_with_a_warning(db) -> None:
    layout = services.create_layout("No footer", "<p>Hello {{ subscriber.name }}</p>")
    db.session.commit()
    assert layout.id is not None
    assert services.inspect_layout(layout).warnings == [services.UNSUBSCRIBE_WARNING]


def test_syntax_error_is_refused_with_its_line_and_nothing_stored(db) -> None:
    with pytest.raises(TemplateError) as caught:
        services.create_layout("Broken", BROKEN_LAYOUT)
    db.session.rollback()
    assert caught.value.details[0]["line"] == 4
    assert layout_count(db) == 0


def test_unknown_variable_is_refused(db) -> None:
    with pytest.raises(TemplateError) as caught:
        services.create_layout("Unknown", "<p>\n{{ customer.first_name }}</p>")
    assert caught.value.details == [{"field": None, "line": 2, "message": "Unknown variable 'customer'."}]
    db.session.rollback()
    assert layout_count(db) == 0


def test_ssti_payloads_are_refused_by_the_service(db) -> None:
    # One test for the whole list (not one per payload): each test empties every table, which costs.
    for payload in SSTI_PAYLOADS:
        with pytest.raises(TemplateError):
            services.create_layout("Evil", f"<p>{payload}</p>")
        db.session.rollback()
    assert layout_count(db) == 0


def test_duplicate_name_is_a_conflict_regardless_of_case(db) -> None:
    LayoutFactory(name="Newsletter")
    with pytest.raises(ConflictError):
        services.create_layout("newsletter", SIMPLE_LAYOUT)
    db.session.rollback()
    assert layout_count(db) == 1


def test_empty_name_and_empty_html_are_refused(db) -> None:
    with pytest.raises(ValidationError, match="name"):
        services.create_layout("   ", SIMPLE_LAYOUT)
    with pytest.raises(ValidationError, match="empty"):
        services.create_layout("Empty", "  \n ")


def test_oversize_html_is_refused(app, db) -> None:
    limit = app.config["LAYOUT_MAX_BYTES"]
    with pytest.raises(ValidationError, match="limit"):
        services.create_layout("Huge", "<p>" + "x" * limit + "</p>")
    db.session.rollback()
    assert layout_count(db) == 0


def test_decode_layout_file() -> None:
    assert services.decode_layout_file("\ufeff<p>é</p>".encode(), "a.html") == "<p>é</p>"
    with pytest.raises(ValidationError) as caught:
        services.decode_layout_file(b"<p>one</p>\n<p>caf\xe9</p>", "latin1.html")
    assert caught.value.details[0]["line"] == 2
    assert "UTF-8" in caught.value.message
    with pytest.raises(ValidationError, match="HTML file"):
        services.decode_layout_file(b"<p>x</p>", "photo.png")
    with pytest.raises(ValidationError, match="NUL"):
        services.decode_layout_file(b"<p>\x00</p>", "binary.html")


def test_update_layout_validates_and_keeps_old_html_on_error(db) -> None:
    layout = LayoutFactory(name="Old")
    LayoutFactory(name="Taken")
    services.update_layout(layout, name="New", html="<p>{{ campaign.subject }} {{ unsubscribe_url }}</p>")
    db.session.commit()
    with pytest.raises(TemplateError):
        services.update_layout(layout, html="{{ ''.__class__ }}")
    db.session.rollback()
    with pytest.raises(ConflictError):
        services.update_layout(layout, name="taken")
    db.session.rollback()
    stored = db.session.get(Layout, layout.id)
    assert stored.name == "New"
    assert stored.html == "<p>{{ campaign.subject }} {{ unsubscribe_url }}</p>"


def test_delete_refused_while_an_unsent_campaign_uses_it(db) -> None:
    for status in ("draft", "scheduled", "sending", "paused"):
        layout = LayoutFactory()
        CampaignFactory(layout=layout, status=status, name=f"Spring sale ({status})")
        with pytest.raises(InvalidStateError, match=re.escape(f"Spring sale ({status})")):
            services.delete_layout(layout)
        db.session.rollback()
    assert layout_count(db) == 4


def test_delete_allowed_once_campaigns_are_sent(db) -> None:
    layout = LayoutFactory()
    campaign = CampaignFactory(layout=layout, status="sent")
    services.delete_layout(layout)
    db.session.commit()
    assert layout_count(db) == 0
    db.session.refresh(campaign)
    assert campaign.layout_id is None


def test_preview_renders_inlined_for_sample_and_real_subscriber(db) -> None:
    layout = LayoutFactory(html=STYLED_LAYOUT)
    sample = services.render_preview(layout)
    assert '<p style="color: #ff0000;">Hi Jane Doe, from Lisbon</p>' in sample
    subscriber = SubscriberFactory(name="Ana <b>", attributes={"city": "Porto"})
    real = services.render_preview(layout, subscriber.id)
    assert "Hi Ana &lt;b&gt;, from Porto" in real
    with pytest.raises(NotFoundError):
        services.render_preview(layout, 999_999)


# ---------------------------------------------------------------- views


def test_pages_need_login(client) -> None:
    layout = LayoutFactory()
    for url in ("/layouts/", "/layouts/new", f"/layouts/{layout.id}", f"/layouts/{layout.id}/preview"):
        response = client.get(url)
        assert response.status_code == 302
        assert "/login" in response.headers["Location"]


def test_index_empty_state_and_nav_link(auth_client) -> None:
    page = auth_client.get("/layouts/").get_data(as_text=True)
    assert "No layouts yet" in page
    assert 'href="/layouts/new"' in page
    assert 'href="/layouts/"' in page  # the nav bar


def test_index_lists_and_paginates(auth_client) -> None:
    for number in range(30):
        LayoutFactory(name=f"Layout {number:02d}")
    first = auth_client.get("/layouts/").get_data(as_text=True)
    assert "Layout 00" in first
    assert "Layout 29" not in first
    assert "Page 1 of 2" in first
    second = auth_client.get("/layouts/?page=2").get_data(as_text=True)
    assert "Layout 29" in second


def test_index_shows_how_many_campaigns_use_each_layout(auth_client) -> None:
    used = LayoutFactory(name="Used")
    LayoutFactory(name="Unused")
    CampaignFactory(layout=used, status="sent")
    CampaignFactory(layout=used, status="draft")
    assert services.campaign_counts([used.id]) == {used.id: 2}
    page = auth_client.get("/layouts/").get_data(as_text=True)
    assert re.search(r">Unused</a></td>\s*<td>0</td>", page)
    assert re.search(r">Used</a></td>\s*<td>2</td>", page)


def test_create_by_pasting_html(auth_client, db) -> None:
    response = auth_client.post_form("/layouts/new", {"name": "Pasted", "html": SIMPLE_LAYOUT})
    assert response.status_code == 302
    layout = db.session.scalar(select(Layout))
    assert layout.name == "Pasted"
    assert layout.html == SIMPLE_LAYOUT
    page = auth_client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Layout &#39;Pasted&#39; created." in page
    assert '<code class="me-1" data-testid="used-variable">unsubscribe_url</code>' in page
    assert "{{ subscriber.attributes.city }}" in page  # the supported variables


def test_create_by_uploading_a_file(auth_client, db) -> None:
    data = {"name": "Uploaded", "html": "", "file": (io.BytesIO(SIMPLE_LAYOUT.encode()), "news.html")}
    response = auth_client.post_form("/layouts/new", data, content_type="multipart/form-data")
    assert response.status_code == 302
    assert db.session.scalar(select(Layout.html)) == SIMPLE_LAYOUT


def test_form_shows_syntax_error_line_and_keeps_the_input(auth_client, db) -> None:
    response = auth_client.post_form("/layouts/new", {"name": "Broken", "html": BROKEN_LAYOUT})
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "Line 4:" in page
    assert "{{ subscriber.name &lt;/p&gt;" in page  # the textarea keeps what was typed
    assert 'value="Broken"' in page
    assert layout_count(db) == 0


def test_form_flags_unknown_variable(auth_client, db) -> None:
    response = auth_client.post_form("/layouts/new", {"name": "X", "html": "<p>\n\n{{ shop.url }}</p>"})
    assert response.status_code == 422
    assert "Line 3: Unknown variable &#39;shop&#39;." in response.get_data(as_text=True)
    assert layout_count(db) == 0


def test_form_refuses_ssti(auth_client, db) -> None:
    token = auth_client.csrf_token("/layouts/new")
    for payload in SSTI_PAYLOADS:
        form = {"name": "Evil", "html": payload, "csrf_token": token}
        response = auth_client.post("/layouts/new", data=form)
        assert response.status_code == 422, payload
        assert 'data-testid="form-errors"' in response.get_data(as_text=True)
    assert layout_count(db) == 0


def test_form_refuses_oversize_file(app, auth_client, db) -> None:
    big = b"<p>" + b"x" * app.config["LAYOUT_MAX_BYTES"] + b"</p>"
    data = {"name": "Big", "file": (io.BytesIO(big), "big.html")}
    response = auth_client.post_form("/layouts/new", data, content_type="multipart/form-data")
    assert response.status_code == 422
    assert "larger than the limit of 2.0 MB" in response.get_data(as_text=True)
    assert layout_count(db) == 0


def test_form_refuses_non_utf8_file(auth_client, db) -> None:
    data = {"name": "Latin", "file": (io.BytesIO("<p>\n<p>Olá</p>".encode("latin-1")), "latin.html")}
    response = auth_client.post_form("/layouts/new", data, content_type="multipart/form-data")
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "not UTF-8" in page
    assert "line 2" in page
    assert layout_count(db) == 0


def test_form_refuses_duplicate_name(auth_client, db) -> None:
    LayoutFactory(name="Weekly")
    response = auth_client.post_form("/layouts/new", {"name": "Weekly", "html": SIMPLE_LAYOUT})
    assert response.status_code == 422
    assert "A layout named &#39;Weekly&#39; already exists" in response.get_data(as_text=True)
    assert layout_count(db) == 1


def test_warning_without_unsubscribe_link(auth_client) -> None:
    response = auth_client.post_form("/layouts/new", {"name": "Bare", "html": "<p>Hi</p>"})
    page = auth_client.get(response.headers["Location"]).get_data(as_text=True)
    assert 'data-testid="layout-warning"' in page
    assert "has no {{ unsubscribe_url }}" in page


def test_edit_saves_and_refuses_bad_edits(auth_client, db) -> None:
    layout = LayoutFactory(name="Mine")
    url = f"/layouts/{layout.id}"
    html = "<p>{{ message }}{{ unsubscribe_url }}</p>"
    response = auth_client.post_form(url, {"name": "Mine v2", "html": html})
    assert response.status_code == 302
    response = auth_client.post_form(url, {"name": "Mine v3", "html": "{{ cycler.__init__.__globals__ }}"})
    assert response.status_code == 422
    db.session.expire_all()
    stored = db.session.get(Layout, layout.id)
    assert (stored.name, stored.html) == ("Mine v2", "<p>{{ message }}{{ unsubscribe_url }}</p>")


def test_layout_page_embeds_preview_in_sandboxed_iframe(auth_client) -> None:
    layout = LayoutFactory()
    page = auth_client.get(f"/layouts/{layout.id}").get_data(as_text=True)
    iframe = re.search(r"<iframe[^>]*>", page).group(0)
    assert 'sandbox=""' in iframe
    assert f'src="/layouts/{layout.id}/preview"' in iframe


def test_preview_frame_is_served_with_csp_sandbox(auth_client) -> None:
    layout = LayoutFactory(html=STYLED_LAYOUT)
    response = auth_client.get(f"/layouts/{layout.id}/preview")
    assert response.status_code == 200
    assert response.headers["Content-Security-Policy"] == "sandbox"
    body = response.get_data(as_text=True)
    assert '<p style="color: #ff0000;">Hi Jane Doe, from Lisbon</p>' in body


def test_preview_as_a_chosen_subscriber(auth_client) -> None:
    layout = LayoutFactory(html=STYLED_LAYOUT)
    subscriber = SubscriberFactory(email="ana@example.com", name="Ana", attributes={"city": "Faro"})
    page = auth_client.get(f"/layouts/{layout.id}?email=ANA@example.com").get_data(as_text=True)
    assert f'src="/layouts/{layout.id}/preview?subscriber_id={subscriber.id}"' in page
    frame = auth_client.get(f"/layouts/{layout.id}/preview?subscriber_id={subscriber.id}")
    assert "Hi Ana, from Faro" in frame.get_data(as_text=True)
    missing = auth_client.get(f"/layouts/{layout.id}?email=nobody@example.com").get_data(as_text=True)
    assert "No subscriber has the email address" in missing


def test_delete_from_the_page(auth_client, db) -> None:
    layout = LayoutFactory(name="Gone")
    response = auth_client.post_form(f"/layouts/{layout.id}/delete", {})
    assert response.status_code == 302
    assert layout_count(db) == 0


def test_delete_in_use_shows_why(auth_client, db) -> None:
    layout = LayoutFactory(name="Busy")
    CampaignFactory(layout=layout, status="scheduled", name="Launch")
    response = auth_client.post_form(f"/layouts/{layout.id}/delete", {}, follow_redirects=True)
    page = response.get_data(as_text=True)
    assert "is used by 1 campaign(s) not yet sent: &#39;Launch&#39; (scheduled)" in page
    assert layout_count(db) == 1


def test_delete_needs_csrf(auth_client, db) -> None:
    layout = LayoutFactory()
    response = auth_client.post(f"/layouts/{layout.id}/delete", data={})
    assert response.status_code == 400
    assert layout_count(db) == 1


# ---------------------------------------------------------------- API


def test_api_requires_token(client) -> None:
    assert client.get("/api/v1/layouts").status_code == 401


def test_api_create_json_get_list_patch_delete(api, db) -> None:
    response = api.post("/api/v1/layouts", json={"name": "API", "html": SIMPLE_LAYOUT})
    assert response.status_code == 201
    body = response.get_json()
    assert body["name"] == "API"
    assert body["variables"] == ["message", "subscriber", "subscriber.name", "unsubscribe_url"]
    layout_id = body["id"]

    assert api.get(f"/api/v1/layouts/{layout_id}").get_json()["html"] == SIMPLE_LAYOUT
    listing = api.get("/api/v1/layouts?per_page=10").get_json()
    assert listing["total"] == 1
    assert listing["items"][0]["id"] == layout_id

    patched = api.patch(f"/api/v1/layouts/{layout_id}", json={"name": "API v2"})
    assert patched.status_code == 200
    assert patched.get_json()["name"] == "API v2"

    assert api.delete(f"/api/v1/layouts/{layout_id}").status_code == 204
    assert api.get(f"/api/v1/layouts/{layout_id}").status_code == 404
    assert layout_count(db) == 0


def test_api_create_multipart(api) -> None:
    data = {"name": "Multipart", "file": (io.BytesIO(SIMPLE_LAYOUT.encode()), "news.html")}
    response = api.post("/api/v1/layouts", data=data, content_type="multipart/form-data")
    assert response.status_code == 201
    assert response.get_json()["name"] == "Multipart"


def test_api_template_error_shape(api, db) -> None:
    response = api.post("/api/v1/layouts", json={"name": "Broken", "html": BROKEN_LAYOUT})
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "template_error"
    assert error["details"][0]["line"] == 4
    assert set(error["details"][0]) == {"field", "line", "message"}
    assert layout_count(db) == 0


def test_api_refuses_ssti(api, db) -> None:
    for payload in SSTI_PAYLOADS:
        response = api.post("/api/v1/layouts", json={"name": "Evil", "html": payload})
        assert response.status_code == 422, payload
        assert response.get_json()["error"]["code"] == "template_error"
    assert layout_count(db) == 0


def test_api_bad_inputs(app, api, db) -> None:
    LayoutFactory(name="Taken")
    assert api.post("/api/v1/layouts", json={"name": "Taken", "html": SIMPLE_LAYOUT}).status_code == 409
    assert api.post("/api/v1/layouts", json={"name": "No html"}).status_code == 422
    assert api.post("/api/v1/layouts", json={"name": 5, "html": SIMPLE_LAYOUT}).status_code == 422
    assert api.post("/api/v1/layouts", data="not json", content_type="application/json").status_code == 422
    big = {"name": "Big", "file": (io.BytesIO(b"x" * (app.config["LAYOUT_MAX_BYTES"] + 1)), "big.html")}
    response = api.post("/api/v1/layouts", data=big, content_type="multipart/form-data")
    assert response.status_code == 422
    assert "limit" in response.get_json()["error"]["message"]
    latin = {"name": "Latin", "file": (io.BytesIO("Olá".encode("latin-1")), "latin.html")}
    response = api.post("/api/v1/layouts", data=latin, content_type="multipart/form-data")
    assert response.status_code == 422
    assert "UTF-8" in response.get_json()["error"]["message"]
    assert layout_count(db) == 1
    assert api.patch("/api/v1/layouts/999", json={"name": "x"}).status_code == 404


def test_api_delete_in_use_is_409(api, db) -> None:
    layout = LayoutFactory()
    CampaignFactory(layout=layout, status="draft")
    response = api.delete(f"/api/v1/layouts/{layout.id}")
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "invalid_state"
    assert layout_count(db) == 1


def test_api_preview(api) -> None:
    layout = LayoutFactory(html=STYLED_LAYOUT)
    subscriber = SubscriberFactory(name="Rui", attributes={"city": "Braga"})
    sample = api.post(f"/api/v1/layouts/{layout.id}/preview")
    assert sample.status_code == 200
    assert "Hi Jane Doe, from Lisbon" in sample.get_json()["html"]
    real = api.post(f"/api/v1/layouts/{layout.id}/preview", json={"subscriber_id": subscriber.id})
    assert '<p style="color: #ff0000;">Hi Rui, from Braga</p>' in real.get_json()["html"]
    assert api.post(f"/api/v1/layouts/{layout.id}/preview", json={"subscriber_id": 424242}).status_code == 404
    assert api.post(f"/api/v1/layouts/{layout.id}/preview", json={"subscriber_id": "1"}).status_code == 422


def test_preview_for_a_subscriber_whose_data_breaks_the_template(auth_client, api) -> None:
    """Valid with the sample (plan "pro"), but a real subscriber's empty plan divides by zero: a clear
    template error with its line, never a 500."""
    html = "<p>{{ subscriber.name }}</p>\n<p>{{ 10 // subscriber.attributes.plan|length }}</p>"
    layout = LayoutFactory(html=html)
    subscriber = SubscriberFactory(attributes={"plan": ""})
    response = api.post(f"/api/v1/layouts/{layout.id}/preview", json={"subscriber_id": subscriber.id})
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "template_error"
    assert error["details"][0]["line"] == 2
    frame = auth_client.get(f"/layouts/{layout.id}/preview?subscriber_id={subscriber.id}")
    assert frame.status_code == 200
    assert frame.headers["Content-Security-Policy"] == "sandbox"
    assert "cannot be previewed" in frame.get_data(as_text=True)


def test_missing_attribute_renders_empty_even_through_calls(db) -> None:
    layout = LayoutFactory(html="<p>[{{ subscriber.attributes.city.title() }}]</p>")
    subscriber = SubscriberFactory(attributes={})
    assert "<p>[]</p>" in services.render_preview(layout, subscriber.id)
    assert "<p>[Lisbon]</p>" in services.render_preview(layout)


def test_api_refuses_a_huge_body_before_reading_it(app, api, db) -> None:
    huge = b"x" * (2 * app.config["LAYOUT_MAX_BYTES"] + 2 * 1024 * 1024)
    response = api.post("/api/v1/layouts", data={"name": "Huge", "file": (io.BytesIO(huge), "huge.html")},
                        content_type="multipart/form-data")
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "request_entity_too_large"
    assert layout_count(db) == 0


def test_preview_unsaved_changes_into_the_sandboxed_frame(auth_client, db) -> None:
    page = auth_client.get("/layouts/new").get_data(as_text=True)
    assert 'formtarget="layout-preview"' in page
    assert re.search(r'<iframe[^>]*sandbox=""[^>]*name="layout-preview"', page)
    response = auth_client.post_form("/layouts/preview", {"name": "", "html": STYLED_LAYOUT})
    assert response.status_code == 200
    assert response.headers["Content-Security-Policy"] == "sandbox"
    assert '<p style="color: #ff0000;">Hi Jane Doe, from Lisbon</p>' in response.get_data(as_text=True)
    broken = auth_client.post_form("/layouts/preview", {"html": BROKEN_LAYOUT})
    assert broken.headers["Content-Security-Policy"] == "sandbox"
    assert "Line 4:" in broken.get_data(as_text=True)
    evil = auth_client.post_form("/layouts/preview", {"html": "{{ ''['__cla' ~ 'ss__'] }}"})
    assert "Not allowed by the template sandbox" in evil.get_data(as_text=True)
    assert auth_client.post("/layouts/preview", data={"html": "<p>x</p>"}).status_code == 400  # CSRF
    assert layout_count(db) == 0
