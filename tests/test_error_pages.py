"""The error pages a user can meet (400, 403, 404, 500, an expired form): the product's own, in both
languages, with a way back, never Django's bare text or a stack trace."""

from __future__ import annotations

import pytest
from django.template.loader import render_to_string
from django.test import Client
from django.utils import translation

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(("language", "heading"), [("en", "Page not found"), ("zh-hans", "页面不存在")])
def test_an_unknown_page_answers_the_products_404_in_the_users_language(language: str, heading: str) -> None:
    response = Client(HTTP_ACCEPT_LANGUAGE=language).get("/portal/no-such-page/")
    assert response.status_code == 404
    body = response.content.decode()
    assert heading in body
    assert 'href="/"' in body
    assert "Traceback" not in body


def test_an_expired_form_answers_the_products_page_not_djangos() -> None:
    client = Client(enforce_csrf_checks=True, HTTP_ACCEPT_LANGUAGE="en")
    response = client.post("/portal/login/", {"username": "x", "password": "y"})
    assert response.status_code == 403
    assert "The form expired" in response.content.decode()
    assert "表单已过期" in Client(enforce_csrf_checks=True).post("/portal/login/", {}).content.decode()


@pytest.mark.parametrize("name", ["400.html", "403.html", "500.html"])
def test_the_other_error_pages_render_without_a_request(name: str) -> None:
    # Django renders 500.html with no context at all: nothing in it may need a request or the database.
    with translation.override("zh-hans"):
        html = render_to_string(name)
    assert 'class="error-page"' in html
    assert name[:3] in html
