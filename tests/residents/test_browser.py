"""The resident page in a real browser, at a phone's width (390 px) in both languages: sign in with the
code the message backend received (locmem in tests), approve one request, decline another, withdraw the
consent the approval made, download the access report; axe-core checks every resident page on the way.
Screenshots go to test-artifacts/. No page shows the full resident ID or the name."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tenants.models import Insurer
from tests.portal.test_accessibility import violations
from tests.portal.test_browser import ARTIFACTS, Pages, browser, pages  # noqa: F401  # fixtures
from tests.residents.conftest import ALICE_PHONE, codes_sent_to
from tests.underwriting.conftest import ALICE_ID, ALICE_NAME, client_for, request_body
from underwriting.models import UnderwritingRequest

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("approved_manuals", "held", "in_process_tasks"),
]

TEXT = {
    "zh-hans": {"approved": "您已同意这项申请。", "declined": "您已拒绝这项申请。", "withdrawn": "您的授权已撤回。"},
    "en": {
        "approved": "You approved the request.",
        "declined": "You declined the request.",
        "withdrawn": "Your consent was withdrawn.",
    },
}


def submit(insurer: Insurer, applicant: dict[str, str], reference: str) -> str:
    response = client_for(insurer).post(
        "/api/v1/underwriting-requests", request_body(applicant, reference=reference), format="json"
    )
    assert response.status_code == 202
    return str(response.json()["id"])


def shot(pages: Pages, name: str, language: str) -> None:  # noqa: F811
    ARTIFACTS.mkdir(exist_ok=True)
    pages.page.screenshot(path=str(ARTIFACTS / f"resident-{name}-390-{language}.png"), full_page=True)


@pytest.mark.parametrize("language", ["zh-hans", "en"])
def test_a_resident_signs_in_decides_withdraws_and_downloads_the_report_on_a_phone(
    pages: Pages,  # noqa: F811
    resident_mode: Insurer,
    alice_with_phone: dict[str, str],
    language: str,
) -> None:
    first = submit(resident_mode, alice_with_phone, "PHONE-1")
    second = submit(resident_mode, alice_with_phone, "PHONE-2")
    page = pages.page
    page.set_viewport_size({"width": 390, "height": 844})
    page.context.add_cookies([{"name": "django_language", "value": language, "url": page.base_url}])
    found: dict[str, list[dict[str, Any]]] = {}

    def check(name: str) -> None:
        assert page.locator("html").get_attribute("lang") == language
        # nothing wider than the phone: the page never scrolls sideways
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
        found[name] = violations(page)
        pages.snapshot()
        shot(pages, name, language)

    page.goto(f"{page.base_url}/residents/sign-in")
    check("sign-in")
    page.fill("#id_resident_id", "1234")
    page.click("button[type=submit].primary")
    assert page.locator("#id_resident_id").get_attribute("aria-invalid") == "true"
    check("sign-in-error")
    page.fill("#id_resident_id", ALICE_ID)
    page.click("button[type=submit].primary")
    page.wait_for_url(re.compile(r"/residents/sign-in/code$"))
    check("code")
    [code] = codes_sent_to(ALICE_PHONE)
    assert page.locator("#id_code").get_attribute("autocomplete") == "one-time-code"
    page.fill("#id_code", code)
    page.click("button[type=submit].primary")
    page.wait_for_url(re.compile(r"/residents/$"))
    assert page.locator("article.card button[value=approve]").count() == 2
    check("home-pending")

    page.locator(f"form[action='/residents/requests/{first}/decide'] button[value=approve]").click()
    page.wait_for_url(re.compile(r"/residents/$"))
    assert TEXT[language]["approved"] in page.locator("[role=status]").inner_text()
    page.locator(f"form[action='/residents/requests/{second}/decide'] button[value=decline]").click()
    page.wait_for_url(re.compile(r"/residents/$"))
    assert TEXT[language]["declined"] in page.locator("[role=status]").inner_text()
    assert page.locator("article.card button[value=approve]").count() == 0
    check("home-decided")
    assert UnderwritingRequest.objects.get(pk=first).status == "extracting"
    declined = UnderwritingRequest.objects.get(pk=second)
    assert (declined.status, declined.reason) == ("rejected", "consent_declined")

    page.locator("form[action='/residents/consents/withdraw'] button").click()
    page.wait_for_url(re.compile(r"/residents/$"))
    assert TEXT[language]["withdrawn"] in page.locator("[role=status]").inner_text()
    assert page.locator("form[action='/residents/consents/withdraw']").count() == 0
    check("home-withdrawn")

    with page.expect_download() as download_info:
        page.click("a[href='/residents/report.csv']")
    report = download_info.value.path().read_text(encoding="utf-8-sig")
    assert report.count(resident_mode.name) == 2
    assert ALICE_ID not in report
    assert ALICE_NAME not in report

    pages.assert_no_personal_data(ALICE_ID, ALICE_NAME)
    failing = {name: here for name, here in found.items() if here}
    assert failing == {}, json.dumps(failing, ensure_ascii=False, indent=1)
