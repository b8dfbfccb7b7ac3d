"""Every form the portal and the bureau admin render carries a CSRF token, and posting to it without one
is refused (403) before any view runs."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import URLPattern, URLResolver

from insurer_portal import urls as portal_urls
from tenants.models import InsurerUser
from tests.portal.conftest import _portal_settings, insurer_admin, member, signed_in  # noqa: F401
from tests.staff import otp_login
from tests.underwriting.conftest import insurer  # noqa: F401

pytestmark = pytest.mark.django_db


class Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []
        self._current: dict[str, Any] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "form":
            self._current = {"method": values.get("method", "get").lower(), "action": values.get("action", ""),
                             "csrf": False}  # fmt: skip
            self.forms.append(self._current)
        elif tag == "input" and self._current is not None and values.get("name") == "csrfmiddlewaretoken":
            self._current["csrf"] = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._current = None


def plain_portal_paths() -> list[str]:
    """Portal pages that take no URL arguments."""
    paths = []
    for pattern in portal_urls.urlpatterns:
        if isinstance(pattern, URLPattern) and not pattern.pattern.converters and "<" not in str(pattern.pattern):
            paths.append("/portal/" + str(pattern.pattern))
        elif isinstance(pattern, URLResolver):
            continue
    return paths


def post_forms(client: Client, path: str) -> list[tuple[str, dict[str, Any]]]:
    response = client.get(path)
    if response.status_code != 200 or "text/html" not in response.get("Content-Type", ""):
        return []
    parser = Forms()
    parser.feed(response.content.decode())
    return [(path, form) for form in parser.forms if form["method"] == "post"]


def assert_protected(strict: Client, forms: list[tuple[str, dict[str, Any]]]) -> None:
    for page, form in forms:
        assert form["csrf"], f"form posting to {form['action'] or page} on {page} has no CSRF token"
        response = strict.post(form["action"] or page, {})
        assert response.status_code == 403, (page, form["action"], response.status_code)


def test_every_portal_form_needs_a_csrf_token(insurer_admin: InsurerUser) -> None:  # noqa: F811
    client = signed_in(insurer_admin.user)
    strict = Client(enforce_csrf_checks=True)
    strict.cookies = client.cookies
    forms = [form for path in plain_portal_paths() for form in post_forms(client, path)]
    forms += post_forms(Client(), "/portal/login/") + post_forms(Client(), "/portal/password-reset/")
    assert len(forms) >= 8, forms
    assert_protected(strict, forms)


# The admin's model form for webhook endpoints (models.URLField) warns about the https default of Django 6.0.
@pytest.mark.filterwarnings("ignore::django.utils.deprecation.RemovedInDjango60Warning")
def test_every_admin_form_needs_a_csrf_token(db: None) -> None:
    User.objects.create_superuser("root", "root@example.com", "a-long-admin-password")
    client = otp_login(Client(), User.objects.get(username="root"))
    strict = Client(enforce_csrf_checks=True)
    strict.cookies = client.cookies
    index = client.get("/admin/")
    assert index.status_code == 200
    links = sorted({href for href in _hrefs(index.content.decode()) if href.startswith("/admin/") and "add/" in href})
    forms = post_forms(Client(), "/admin/login/") + post_forms(client, "/admin/password_change/")
    for link in links:
        forms += post_forms(client, link)
    assert len(forms) >= 5, forms
    assert_protected(strict, forms)


def _hrefs(html: str) -> list[str]:
    class Links(HTMLParser):
        found: list[str] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            if tag == "a":
                self.found += [value or "" for name, value in attrs if name == "href"]

    parser = Links()
    parser.found = []
    parser.feed(html)
    return parser.found
