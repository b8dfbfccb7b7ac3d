"""The portal in a real browser: Debian's chromium driven by Playwright against pytest-django's live server.

Tasks run in-process (see conftest), so the page follows a request to its tier without workers, with or
without REDIS_URL. Each test saves a screenshot under test-artifacts/ and checks the pages it visited
for personal data (no full resident ID, no name after submission).
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django_otp.plugins.otp_totp.models import TOTPDevice

from config.settings.env import csp_directives
from insurer_portal.batches import COLUMNS
from tenants.models import InsurerUser
from tests.portal.conftest import ALICE_ID, ALICE_NAME, PASSWORD, code_for
from tests.services import in_ci
from tests.webhook_receiver import start_receiver

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing: apt-get install -y chromium"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    # Playwright's sync API runs an event loop in this thread; the ORM calls the tests make around it are
    # ordinary synchronous code.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright.sync_api import sync_playwright

    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
            yield chromium
            chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


class Pages:
    """Remembers every page the test saw (for the personal-data check) and the browser's console errors."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.seen: list[str] = []
        self.errors: list[str] = []
        page.on("console", lambda message: message.type == "error" and self.errors.append(message.text))
        page.on("pageerror", lambda error: self.errors.append(str(error)))

    def snapshot(self) -> None:
        self.seen.append(self.page.content())

    def assert_no_personal_data(self, *values: str) -> None:
        self.snapshot()
        for html in self.seen:
            for value in values:
                assert value not in html


STRICT_CSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'"


@pytest.fixture
def pages(browser: Any, live_server: Any, settings: Any) -> Iterator[Pages]:
    # The pages must work under a strict policy: no inline scripts, handlers or styles.
    settings.CONTENT_SECURITY_POLICY = {"DIRECTIVES": csp_directives(STRICT_CSP)}
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.base_url = live_server.url  # type: ignore[attr-defined]
    seen = Pages(page)
    yield seen
    context.close()
    assert seen.errors == [], seen.errors


def screenshot(pages: Pages, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    pages.page.screenshot(path=str(ARTIFACTS / f"portal-{name}.png"), full_page=True)


def sign_in(pages: Pages, username: str, device: TOTPDevice | None = None) -> None:
    page = pages.page
    page.goto(f"{page.base_url}/portal/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit].primary")
    if device is not None:
        page.wait_for_url(re.compile(r"/portal/login/verify/"))
        pages.snapshot()
        screenshot(pages, "sign-in-code")
        page.fill("#id_token", code_for(device))
        page.click("button[type=submit].primary")
    page.wait_for_url(re.compile(r"/portal/$"))


def test_sign_in_with_two_factor(pages: Pages, insurer_admin: InsurerUser) -> None:
    device = TOTPDevice.objects.get(user=insurer_admin.user)
    sign_in(pages, "admin-ping", device)
    assert pages.page.locator("nav.portal-nav").is_visible()
    assert pages.page.locator("a[href='/portal/admin/api-keys/']").is_visible()
    screenshot(pages, "dashboard-after-2fa")


def test_new_admin_enrols_an_authenticator_at_first_sign_in(pages: Pages, insurer: Any) -> None:
    import base64

    from django_otp.oath import totp

    from tests.portal.conftest import member

    member(insurer, "fresh-admin", InsurerUser.Role.ADMIN)
    page = pages.page
    page.goto(f"{page.base_url}/portal/")
    page.fill("#id_username", "fresh-admin")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit].primary")
    page.wait_for_url(re.compile(r"/portal/account/two-factor/"))
    assert page.locator(".qr svg").is_visible()
    screenshot(pages, "two-factor-enrolment")
    secret = base64.b32decode(page.locator("#totp-secret").inner_text().strip())
    page.fill("#id_token", f"{totp(secret):06d}")
    page.click("button[type=submit].primary")
    page.wait_for_url(re.compile(r"/portal/$"))
    assert page.locator("a[href='/portal/admin/users/']").is_visible()


def test_submit_a_request_and_see_its_tier(
    pages: Pages,
    underwriter: InsurerUser,
    alice: dict[str, str],
    approved_manuals: list[Any],
    custodian_key: Any,
    tmp_path: Path,
) -> None:
    sign_in(pages, "uw-ping")
    page = pages.page
    page.click("a[href='/portal/requests/new/']")
    page.fill("#id_reference", "WEB-1")
    page.type("#id_resident_id", ALICE_ID[:-1] + ("0" if ALICE_ID[-1] != "0" else "1"))
    assert "bad" in (page.get_attribute("#resident-id-check", "class") or "")
    page.fill("#id_resident_id", "")
    page.type("#id_resident_id", ALICE_ID)
    assert "ok" in (page.get_attribute("#resident-id-check", "class") or "")
    page.fill("#id_name", ALICE_NAME)
    page.select_option("#id_manual", "charlson-acci")
    page.fill("#id_consent_reference", "WEB-CONSENT-1")
    page.fill("#id_consent_signed_at", "2026-01-01T09:00")
    form = tmp_path / "consent.pdf"
    form.write_bytes(b"%PDF-1.4 signed")
    page.set_input_files("#id_consent_file", str(form))
    screenshot(pages, "request-form")
    page.click("button[type=submit].primary")
    page.wait_for_url(re.compile(r"/portal/requests/[0-9a-f-]{36}/$"))
    page.locator(".tier-big").wait_for()
    assert page.locator(".tier-big").inner_text().split()[-1] == "D"  # after the hidden word "Tier"
    screenshot(pages, "request-tier")
    page.click("a[href='/portal/']")
    assert page.locator("svg.chart-plot").count() == 2
    screenshot(pages, "dashboard-with-data")
    pages.assert_no_personal_data(ALICE_ID, ALICE_NAME)


def batch_csv(tmp_path: Path) -> Path:
    path = tmp_path / "applicants.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        writer.writerow(["BATCH-1", ALICE_ID, ALICE_NAME, "charlson-acci", "BC-1", "2026-01-01", "", "c" * 64])
        writer.writerow(["BATCH-2", "110105194912310021", "某人", "charlson-acci", "BC-2", "2026-01-01", "", "c" * 64])
    return path


def test_run_a_batch_with_an_error_row(
    pages: Pages,
    underwriter: InsurerUser,
    alice: dict[str, str],
    approved_manuals: list[Any],
    custodian_key: Any,
    tmp_path: Path,
) -> None:
    sign_in(pages, "uw-ping")
    page = pages.page
    page.click("a[href='/portal/batches/']")
    page.set_input_files("#id_file", str(batch_csv(tmp_path)))
    page.click("form.inline-form button[type=submit]")
    page.wait_for_url(re.compile(r"/portal/batches/\d+/$"))
    assert page.locator("tr.row-error").count() == 1
    screenshot(pages, "batch-preview")
    pages.snapshot()
    page.click("form[action$='/start/'] button")
    page.locator("#batch-progress .percent", has_text="100%").wait_for()
    assert page.locator("progress").get_attribute("value") == "100"
    assert page.locator("a[href$='results.xlsx']").is_visible()
    screenshot(pages, "batch-done")
    pages.assert_no_personal_data(ALICE_ID, ALICE_NAME)


def test_create_and_revoke_an_api_key(pages: Pages, insurer_admin: InsurerUser) -> None:
    sign_in(pages, "admin-ping", TOTPDevice.objects.get(user=insurer_admin.user))
    page = pages.page
    page.click("a[href='/portal/admin/api-keys/']")
    page.fill("#id_name", "core system")
    page.click("form.form-row button[type=submit]")
    key = page.locator("#new-key").input_value()
    assert key.startswith("uwk_")
    screenshot(pages, "api-key-created")
    page.goto(page.url)
    assert page.locator("#new-key").count() == 0  # shown once
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("button.danger")
    page.locator(".badge-bad").wait_for()
    screenshot(pages, "api-key-revoked")


def test_add_a_webhook_endpoint_and_send_a_test_event(pages: Pages, insurer_admin: InsurerUser) -> None:
    receiver = start_receiver()
    try:
        sign_in(pages, "admin-ping", TOTPDevice.objects.get(user=insurer_admin.user))
        page = pages.page
        page.click("a[href='/portal/admin/webhooks/']")
        page.fill("#id_url", receiver.url)
        page.click("form.form-row button[type=submit]")
        page.wait_for_url(re.compile(r"/portal/admin/webhooks/\d+/$"))
        page.click("form[action$='/test/'] button")
        page.locator(".message-success").nth(0).wait_for()
        assert len(receiver.received) == 1
        screenshot(pages, "webhook-endpoint")
    finally:
        receiver.stop()


def test_switch_language(pages: Pages, underwriter: InsurerUser) -> None:
    sign_in(pages, "uw-ping")
    page = pages.page
    assert page.locator("html").get_attribute("lang") == "zh-hans"
    page.select_option("#language-select", "en")
    page.click(".lang-switch button")
    page.wait_for_load_state()
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.locator("h1").first.inner_text().strip() == "Dashboard"
    screenshot(pages, "dashboard-english")
    page.set_viewport_size({"width": 820, "height": 1180})  # a tablet held upright
    page.click("a[href='/portal/requests/']")
    assert page.locator("form.filters").is_visible()
    screenshot(pages, "requests-tablet")
