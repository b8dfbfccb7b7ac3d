"""The bureau admin's subject rights page and rating-manual approval in a real browser, at 1366 and 390 px,
in Chinese and English: Debian's chromium driven by Playwright against pytest-django's live server.

Staff sign in through the real form (password and a TOTP code). Each test asserts the property on the
rendered page and saves a screenshot under test-artifacts/.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import Group, User

from audit import roles
from datadomain import services as domain
from datadomain.selectors import subject_is_known
from tests.factories import UserFactory
from tests.portal.test_browser import ARTIFACTS, STRICT_CSP, browser  # noqa: F401 - the shared browser fixture
from tests.staff import authenticator, current_code
from tests.underwriting.conftest import ALICE_ID, ALICE_NAME, alice, ingest  # noqa: F401 - fixtures
from underwriting.models import RatingManual
from underwriting.services.manuals import manual_approve, manual_upload

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
PASSWORD = "a-long-test-password"
VIEWPORTS = {"desktop": {"width": 1366, "height": 900}, "mobile": {"width": 390, "height": 844}}
LANGUAGES = {"zh-hans": "zh-CN", "en": "en-US"}


@pytest.fixture(params=list(VIEWPORTS))
def viewport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=list(LANGUAGES))
def language(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def page(browser: Any, live_server: Any, settings: Any, viewport: str, language: str) -> Iterator[Any]:  # noqa: F811
    from config.settings.env import csp_directives

    settings.CONTENT_SECURITY_POLICY = {"DIRECTIVES": csp_directives(STRICT_CSP)}
    context = browser.new_context(viewport=VIEWPORTS[viewport], locale=LANGUAGES[language])
    context.set_default_timeout(15_000)
    tab = context.new_page()
    tab.base_url = live_server.url
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    yield tab
    context.close()
    assert errors == []


def staff_member(role: str, username: str) -> User:
    user = UserFactory(username=username, is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    return user  # type: ignore[no-any-return]


def sign_in(page: Any, user: User, path: str) -> None:
    page.goto(f"{page.base_url}/admin/login/?next={path}")
    page.fill("#id_username", user.username)
    page.fill("#id_password", PASSWORD)
    page.fill("#id_otp_token", current_code(authenticator(user)))
    page.click("input[type=submit]")
    page.wait_for_url(re.compile(re.escape(path) + "$"))


def screenshot(page: Any, name: str, viewport: str, language: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"admin-{name}-{viewport}-{language}.png"), full_page=True)


def no_sideways_scroll(page: Any) -> None:
    width = page.evaluate("document.documentElement.clientWidth")
    assert page.evaluate("document.documentElement.scrollWidth") <= width + 1


def is_red(colour: str) -> bool:
    red, green, blue = (int(part) for part in re.findall(r"\d+", colour)[:3])
    return red > 150 and green < 90 and blue < 90


def test_subject_rights_keeps_the_id_and_erasure_is_a_separate_red_confirmed_step(
    page: Any,
    alice: Any,  # noqa: F811 - the fixture imported above
    viewport: str,
    language: str,
) -> None:
    officer = staff_member(roles.PRIVACY_OFFICER, "pia")
    sign_in(page, officer, "/admin/subject-rights/")
    mistyped = ALICE_ID[:-1] + ("0" if ALICE_ID[-1] != "0" else "1")
    page.fill("#id_resident_id", mistyped)
    page.click("button[value=report]")
    page.wait_for_load_state()
    assert page.input_value("#id_resident_id") == mistyped  # kept, to be corrected
    alert = page.locator("#id_resident_id-errors[role=alert]")
    assert alert.is_visible()
    assert mistyped not in alert.inner_text()
    assert page.get_attribute("#id_resident_id", "aria-invalid") == "true"
    assert page.url.endswith("/admin/subject-rights/")  # the ID never in the address
    label = page.locator("label[for=id_resident_id]")
    assert label.is_visible()
    screenshot(page, "subject-rights-error", viewport, language)

    page.fill("#id_resident_id", ALICE_ID)
    everyday = page.locator(".subject-ops button").first.bounding_box()
    erase = page.locator("button[value=erase_review]")
    assert is_red(erase.evaluate("button => getComputedStyle(button).backgroundColor"))
    assert page.locator(".danger-zone").is_visible()  # apart from the everyday buttons
    assert erase.bounding_box()["y"] > everyday["y"] + everyday["height"]
    erase.click()
    page.wait_for_load_state()
    confirm = page.locator(".erase-confirm")
    assert confirm.is_visible()
    assert domain.mask_resident_id(ALICE_ID) in confirm.inner_text()  # names whom
    assert page.input_value("#id_resident_id") == ALICE_ID
    assert not page.is_checked("#id_confirm_erasure")
    final = page.locator("button[value=erase]")
    assert is_red(final.evaluate("button => getComputedStyle(button).backgroundColor"))
    no_sideways_scroll(page)
    screenshot(page, "subject-rights-erase-confirm", viewport, language)

    final.click()  # without the box ticked: refused, announced, nothing erased
    page.wait_for_load_state()
    assert page.locator(".messagelist li[role=alert]").is_visible()
    assert page.locator(".erase-confirm").is_visible()
    assert subject_is_known(domain.subject_key_for(ALICE_ID))
    page.check("#id_confirm_erasure")
    page.click("button[value=erase]")
    page.wait_for_load_state()
    assert page.locator(".messagelist li.success[role=status]").is_visible()
    assert page.input_value("#id_resident_id") == ""  # the subject is gone: the box is emptied
    assert not subject_is_known(domain.subject_key_for(ALICE_ID))
    assert ALICE_NAME not in page.content()
    screenshot(page, "subject-rights-erased", viewport, language)


MANUAL = """\
slug: heart-debits
version: {version}
title: Heart debits
owner: builtin
features:
  - {{name: charlson.chf, weight: {chf}}}
  - {{name: charlson.diab, weight: 1}}
tiers:
  - {{code: A, label: Preferred, max_score: 0, decision: accept}}
  - {{code: B, label: Standard, max_score: {b_max}, decision: accept}}
  - {{code: D, label: Decline, decision: decline}}
"""


def test_manual_approval_shows_tables_and_changes_and_needs_confirmation(
    page: Any, viewport: str, language: str
) -> None:
    author, reviewer = staff_member(roles.MODEL_REVIEWER, "rita"), staff_member(roles.MODEL_REVIEWER, "rex")
    manual_upload(text=MANUAL.format(version=1, chf=1, b_max=2), uploaded_by=author)
    manual_approve(slug="heart-debits", version=1, approved_by=reviewer)
    draft = manual_upload(text=MANUAL.format(version=2, chf=3, b_max=4), uploaded_by=author)
    path = f"/admin/underwriting/ratingmanual/{draft.pk}/approve/"
    sign_in(page, reviewer, path)

    weights = page.locator("#manual-weights")
    assert weights.is_visible()
    changed = page.locator("#manual-weights tr.diff-changed")
    assert changed.count() == 1
    assert "charlson.chf" in changed.inner_text()
    assert changed.evaluate("row => getComputedStyle(row).backgroundColor") not in ("rgba(0, 0, 0, 0)", "transparent")
    tiers = page.locator("#manual-tiers tr.diff-changed")
    assert tiers.count() == 2  # B ends at 4 instead of 2, so D starts at 5 instead of 3
    assert page.locator("#manual-tiers del").count() >= 2
    assert page.locator("input[name=_save]").count() == 0
    no_sideways_scroll(page)
    screenshot(page, "manual-review", viewport, language)

    page.click("input[name=approve]")  # not confirmed
    page.wait_for_load_state()
    assert page.locator("#confirm-errors[role=alert]").is_visible()
    assert RatingManual.objects.get(pk=draft.pk).status == "draft"
    page.check("#id_confirm")
    page.click("input[name=approve]")
    page.wait_for_url(re.compile(rf"/admin/underwriting/ratingmanual/{draft.pk}/change/$"))
    assert RatingManual.objects.get(pk=draft.pk).status == "approved"
    assert page.locator(".messagelist li.success").is_visible()
    for button in ("input[name=_save]", "input[name=_continue]", "a.deletelink"):
        assert page.locator(button).count() == 0  # an approved manual is a read-only record
    assert page.locator("#manual-weights").is_visible()
    screenshot(page, "manual-approved", viewport, language)


def test_the_author_sees_no_approval_form(page: Any, viewport: str, language: str) -> None:
    author, reviewer = staff_member(roles.MODEL_REVIEWER, "rita"), staff_member(roles.MODEL_REVIEWER, "rex")
    draft = manual_upload(text=MANUAL.format(version=1, chf=1, b_max=2), uploaded_by=author)
    path = f"/admin/underwriting/ratingmanual/{draft.pk}/approve/"
    sign_in(page, author, path)
    assert page.locator(".manual-approve .notice").is_visible()
    assert page.locator("#id_confirm").count() == 0
    assert reviewer.pk != author.pk
    screenshot(page, "manual-author", viewport, language)
