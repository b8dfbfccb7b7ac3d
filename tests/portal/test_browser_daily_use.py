"""The portal as its daily users see it, in Debian's chromium at a desktop width (1366 px) and a phone width
(390 px), in both languages (issue 16, items 3 to 6 and the portal's part of 10):

- the request list keeps status, tier and decision on screen at any width (a card per request on a
  phone); the insurer admin's users and API-key pages are never wider than the screen;
- chart text is at least 12 px as rendered, the daily chart has round value ticks, and each chart has a
  title, a description and a table;
- tier badges take the tier-mix chart's colour of their tier, with the tier letter as text;
- tier labels and manual titles are in the page's language;
- required fields are marked, a stale server error goes once the live ID check takes over, a reversed
  date range is a form error, the dashboard's figures add up, the header names the user once, the
  breadcrumb ends at the page and the request detail shows its tier once.

Each test saves screenshots under test-artifacts/ (daily-<what>-<width>-<language>.png).
"""

from __future__ import annotations

import itertools
import re
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from tenants.models import Insurer, InsurerUser
from tests.portal.conftest import member
from tests.portal.test_browser import ARTIFACTS, Pages, browser, pages, sign_in  # noqa: F401  # fixtures
from underwriting.charts import tier_colour
from underwriting.models import RatingManual, UnderwritingRequest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
WIDTHS = [1366, 390]
LANGUAGES = ["zh-hans", "en"]
ENGLISH_TIER_LABELS = ["Preferred", "Substandard", "Decline", "Standard"]
TIERS = {
    "A": ("accept", "Preferred"),
    "B": ("accept", "Standard"),
    "C": ("rate", "Substandard"),
    "D": ("decline", "Decline"),
}


def _request(insurer: Insurer, manual: RatingManual, index: int, status: str, **fields: Any) -> UnderwritingRequest:
    created = timezone.now() - timedelta(days=index % 12, minutes=index)
    terminal = status in {"completed", "rejected", "unrated", "failed"}
    return UnderwritingRequest.objects.create(
        insurer=insurer,
        reference=f"DAILY-{index:03d}",
        subject_key=f"{index:064x}",
        resident_id_masked="370214********123X",
        manual=manual,
        manual_slug=manual.slug,
        as_of=timezone.localdate(created),
        status=status,
        created_at=created,
        completed_at=created + timedelta(seconds=3) if terminal else None,
        **fields,
    )


@pytest.fixture
def daily(insurer: Insurer, approved_manuals: list[RatingManual]) -> dict[str, Any]:
    """A month of requests: every tier A to D, rejections, an unrated one, a failed one, one in progress."""
    acci = next(manual for manual in approved_manuals if manual.slug == "charlson-acci")
    made: dict[str, UnderwritingRequest] = {}
    index = 0
    for code, (decision, label) in TIERS.items():
        for _ in range(3 if code == "B" else 2):
            index += 1
            made[code] = _request(
                insurer, acci, index, "completed", tier_code=code, tier_label=label, decision=decision
            )
    for status, reason in [("rejected", "rate_limited"), ("rejected", "not_verified"), ("unrated", ""),
                           ("failed", ""), ("extracting", "")]:  # fmt: skip
        index += 1
        made[status] = _request(insurer, acci, index, status, reason=reason)
    return {"manual": acci, "requests": made, "total": index}


def _open(seen: Pages, membership: InsurerUser, width: int, language: str) -> Any:
    page = seen.page
    page.set_viewport_size({"width": width, "height": 900})
    page.context.add_cookies([{"name": "django_language", "value": language, "url": page.base_url}])
    device = TOTPDevice.objects.filter(user=membership.user, confirmed=True).first()
    sign_in(seen, membership.user.username, device)
    return page


def _shot(page: Any, what: str, width: int, language: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"daily-{what}-{width}-{language}.png"), full_page=True)


def _fits_the_screen(page: Any, width: int) -> None:
    assert page.evaluate("() => document.documentElement.scrollWidth") <= width


def _inside_viewport(locator: Any, width: int) -> None:
    box = locator.bounding_box()
    assert box is not None, "not rendered"
    assert locator.is_visible()
    assert box["x"] >= 0, box
    assert box["x"] + box["width"] <= width + 0.5, box


def _rgb(hex_colour: str) -> str:
    value = hex_colour.lstrip("#")
    red, green, blue = (int(value[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgb({red}, {green}, {blue})"


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("width", WIDTHS)
def test_the_request_list_shows_status_tier_and_decision_at_any_width(
    pages: Pages,  # noqa: F811
    insurer_admin: InsurerUser,
    daily: dict[str, Any],
    width: int,
    language: str,
) -> None:
    page = _open(pages, insurer_admin, width, language)
    page.goto(f"{page.base_url}/portal/requests/")
    rows = page.locator("table.cards-narrow tbody tr")
    assert rows.count() == daily["total"]
    for index in range(rows.count()):
        row = rows.nth(index)
        row.scroll_into_view_if_needed()
        for cell in ("td.cell-status", "td.cell-tier", "td.cell-decision"):
            _inside_viewport(row.locator(cell), width)
    _fits_the_screen(page, width)
    # Item 5: each tier badge wears its tier's colour, the one the tier-mix chart uses, and says its letter.
    badges = page.locator("td.cell-tier .tier")
    assert badges.count() == 9
    for index in range(badges.count()):
        badge = badges.nth(index)
        code = badge.inner_text().strip()[-1]
        assert code in TIERS
        assert badge.evaluate("node => getComputedStyle(node).backgroundColor") == _rgb(tier_colour(code))
        assert badge.evaluate("node => getComputedStyle(node).color") == "rgb(255, 255, 255)"
    colours = {badges.nth(i).evaluate("n => getComputedStyle(n).backgroundColor") for i in range(badges.count())}
    assert len(colours) == 4  # A, B, C and D: four colours
    # Item 6: the tier's label in the page's language.
    text = page.locator("main").inner_text()
    if language == "zh-hans":
        assert "优选体" in text
        assert "次标准体" in text
        assert not any(re.search(rf"\b{label}\b", text) for label in ENGLISH_TIER_LABELS), text
    else:
        assert "Preferred" in text
        assert "优选体" not in text
    _shot(page, "requests", width, language)


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("width", WIDTHS)
def test_the_insurer_admin_pages_are_never_wider_than_the_screen(
    pages: Pages,  # noqa: F811
    insurer_admin: InsurerUser,
    insurer: Insurer,
    width: int,
    language: str,
) -> None:
    member(insurer, "a-colleague-with-a-rather-long-user-name")
    page = _open(pages, insurer_admin, width, language)
    page.goto(f"{page.base_url}/portal/admin/api-keys/")
    page.fill("#id_name", "claims-system-of-the-northern-region")
    page.click("form.form-row button[type=submit]")
    page.locator("#new-key").wait_for()
    for path, what, action in [
        ("/portal/admin/users/", "users", "td form.role-form select"),
        ("/portal/admin/api-keys/", "api-keys", "td button.danger"),
    ]:
        page.goto(f"{page.base_url}{path}")
        _fits_the_screen(page, width)
        first = page.locator(action).first
        first.scroll_into_view_if_needed()
        _inside_viewport(first, width)
        _shot(page, what, width, language)


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("width", WIDTHS)
def test_the_dashboard_charts_are_readable_and_its_figures_add_up(
    pages: Pages,  # noqa: F811
    insurer_admin: InsurerUser,
    daily: dict[str, Any],
    width: int,
    language: str,
) -> None:
    page = _open(pages, insurer_admin, width, language)
    _fits_the_screen(page, width)
    texts = page.locator("svg.chart-plot text, svg.chart-axis text")
    assert texts.count() > 10
    sizes = texts.evaluate_all(
        "nodes => nodes.map(n => [parseFloat(getComputedStyle(n).fontSize), n.getBoundingClientRect().height])"
    )
    # Rendered size, not the SVG's own units: nothing scales the text down on a narrow screen.
    assert all(font >= 12 and height >= 11 for font, height in sizes), sizes
    # The daily chart's value axis: 0 and round steps up to the top, more than just 0 and the maximum.
    values = [int(value) for value in page.locator("svg.chart-axis text").all_text_contents()]
    assert len(values) >= 3
    assert values[0] == 0
    steps = {b - a for a, b in itertools.pairwise(values)}
    assert len(steps) == 1
    assert steps.pop() in {1, 2, 5, 10, 20, 50}
    # Titles and descriptions named by aria-labelledby, and a table for each chart.
    for chart in page.locator("svg.chart-plot").all():
        ids = (chart.get_attribute("aria-labelledby") or "").split()
        assert len(ids) == 2
        assert all(page.locator(f"#{name}").text_content().strip() for name in ids)
    page.locator("details.chart-table summary").click()
    assert page.locator("details.chart-table table tbody tr").count() == 30
    assert page.locator("table.compact tbody tr").count() == 1  # the tier mix as numbers
    # Item 5: the tier-mix chart and the badges use the same colour for a tier.
    for code in TIERS:
        assert page.locator(f"svg.chart-plot rect[fill='{tier_colour(code)}']").count() == 1
    # Item 10: the figures add up to the total.
    total = int(page.locator("[data-kpi=total] strong").inner_text())
    parts = [int(text) for text in page.locator("[data-kpi=part] strong").all_inner_texts()]
    assert total == daily["total"] == sum(parts)
    _shot(page, "dashboard", width, language)


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("width", WIDTHS)
def test_the_request_detail_shows_its_tier_once_in_the_users_language(
    pages: Pages,  # noqa: F811
    insurer: Insurer,
    daily: dict[str, Any],
    width: int,
    language: str,
) -> None:
    # The demo's user is called "underwriter" and is one: the header names it once.
    named_after_role = member(insurer, "underwriter")
    page = _open(pages, named_after_role, width, language)
    who = page.locator(".account .who").text_content().strip()
    assert who.count("underwriter") + who.count("核保员") == 1, who
    completed = daily["requests"]["A"]
    page.goto(f"{page.base_url}/portal/requests/{completed.pk}/")
    assert page.locator(".tier-big").count() == 1
    assert page.locator("h1 .tier").count() == 0
    assert " · " not in page.locator(".status-panel").inner_text()  # no "A · Preferred" beside the big "A"
    crumbs = page.locator("nav.crumbs li")
    assert crumbs.count() == 2
    assert crumbs.last.get_attribute("aria-current") == "page"
    assert crumbs.last.inner_text().strip() == completed.reference
    label = page.locator(".tier-result").inner_text().strip()
    main = page.locator("main").inner_text()
    if language == "zh-hans":
        assert label == "优选体"
        assert "年龄校正 Charlson 合并症指数" in main
        assert "Age-adjusted" not in main
    else:
        assert label == "Preferred"
        assert "Age-adjusted Charlson comorbidity index" in main
    _inside_viewport(page.locator(".tier-big"), width)
    _fits_the_screen(page, width)
    _shot(page, "request-detail", width, language)

    page.goto(f"{page.base_url}/portal/requests/new/")
    options = " ".join(page.locator("#id_manual option").all_inner_texts())
    if language == "zh-hans":
        assert "年龄校正" in options
        assert "Age-adjusted" not in options
        assert "Life debit" not in options
    else:
        assert "Age-adjusted" in options


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("width", WIDTHS)
def test_the_forms_mark_required_fields_and_keep_their_errors_current(
    pages: Pages,  # noqa: F811
    underwriter: InsurerUser,
    daily: dict[str, Any],
    width: int,
    language: str,
) -> None:
    page = _open(pages, underwriter, width, language)
    page.goto(f"{page.base_url}/portal/requests/new/")
    for field in ("reference", "resident_id", "name", "manual", "consent_reference", "consent_signed_at"):
        assert page.get_attribute(f"#id_{field}", "aria-required") == "true", field
        marker = page.locator(f"label[for=id_{field}]").evaluate("node => getComputedStyle(node, '::after').content")
        assert "*" in marker, (field, marker)
    assert page.get_attribute("#id_consent_expires_at", "aria-required") is None
    page.click("button[type=submit].primary")
    page.wait_for_load_state()
    assert page.locator("#id_resident_id_error").is_visible()
    _shot(page, "request-form-errors", width, language)
    page.type("#id_resident_id", "11010519491231002X")
    # The live check speaks now; the "required" error from the submission has gone.
    assert page.locator("#id_resident_id_error").count() == 0
    assert "id_resident_id_error" not in (page.get_attribute("#id_resident_id", "aria-describedby") or "")
    assert page.locator("#resident-id-check").inner_text().strip()

    page.goto(f"{page.base_url}/portal/requests/?created_from=2026-03-10&created_to=2026-03-01")
    alert = page.locator(".form-error[role=alert]")
    assert alert.is_visible()
    assert page.locator("#id_created_to_error").is_visible()
    assert page.locator("table.cards-narrow").count() == 0
    _fits_the_screen(page, width)
    _shot(page, "reversed-dates", width, language)
