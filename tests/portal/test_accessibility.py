"""Accessibility of the portal's pages, checked by axe-core (vendored under tests/vendor/axe-core) in Debian's
chromium: every page an insurer's staff use, at a desktop width (1366 px) and a phone width (390 px), in
both languages. A serious or critical violation fails the test; each page is saved as a screenshot under
test-artifacts/.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from django_otp.plugins.otp_totp.models import TOTPDevice

from tenants.models import InsurerUser
from tests.portal.test_browser import ARTIFACTS, Pages, browser, pages, sign_in  # noqa: F401  # fixtures
from tests.underwriting.conftest import client_for, request_body

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
AXE = (Path(__file__).resolve().parents[1] / "vendor" / "axe-core" / "axe.min.js").read_text(encoding="utf-8")
# WCAG 2.1 A and AA, plus axe's best practices.
RULES = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]
BLOCKING = {"serious", "critical"}

PORTAL_PAGES = [
    ("dashboard", "/portal/"),
    ("requests", "/portal/requests/"),
    ("request-new", "/portal/requests/new/"),
    ("request-detail", None),  # the first request in the list
    ("batches", "/portal/batches/"),
    ("users", "/portal/admin/users/"),
    ("api-keys", "/portal/admin/api-keys/"),
    ("webhooks", "/portal/admin/webhooks/"),
    ("usage", "/portal/admin/usage/"),
    ("security", "/portal/account/security/"),
    ("home", "/"),
    ("not-found", "/portal/no-such-page/"),
]


def violations(page: Any) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(AXE)  # evaluated by the browser's debugger protocol: the page's CSP does not apply
    result = page.evaluate("rules => axe.run(document, {runOnly: {type: 'tag', values: rules}})", RULES)
    return [
        {"id": v["id"], "impact": v["impact"], "help": v["help"], "nodes": [n["target"] for n in v["nodes"]][:5]}
        for v in result["violations"]
        if v["impact"] in BLOCKING
    ]


@pytest.mark.parametrize("language", ["zh-hans", "en"])
@pytest.mark.parametrize("width", [1366, 390])
def test_portal_pages_have_no_serious_accessibility_violations(
    pages: Pages,  # noqa: F811
    insurer_admin: InsurerUser,
    alice: dict[str, str],
    approved_manuals: list[Any],
    custodian_key: Any,
    width: int,
    language: str,
) -> None:
    api = client_for(insurer_admin.insurer)
    api.post("/api/v1/underwriting-requests", request_body(alice, reference="A11Y-1"), format="json")
    page = pages.page
    page.set_viewport_size({"width": width, "height": 900})
    page.context.add_cookies([{"name": "django_language", "value": language, "url": page.base_url}])

    page.goto(f"{page.base_url}/portal/login/")
    found = {"login": violations(page)}
    sign_in(pages, "admin-ping", TOTPDevice.objects.get(user=insurer_admin.user))
    for name, path in PORTAL_PAGES:
        if path is None:
            page.goto(f"{page.base_url}/portal/requests/")
            page.locator("a[href*='/portal/requests/']:not([href$='/requests/']):not([href$='/new/'])").first.click()
            page.wait_for_url(re.compile(r"/portal/requests/[0-9a-f-]{36}/$"))
        else:
            page.goto(f"{page.base_url}{path}")
        assert page.locator("html").get_attribute("lang") == language
        found[name] = violations(page)
        if name == "not-found":  # the browser reports the page's own 404 as a failed load
            pages.errors[:] = [e for e in pages.errors if "status of 404" not in e]
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"a11y-{name}-{width}-{language}.png"), full_page=True)
    failing = {name: found_here for name, found_here in found.items() if found_here}
    assert failing == {}, json.dumps(failing, ensure_ascii=False, indent=1)
