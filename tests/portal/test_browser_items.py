"""What daily users tripped over (issue 16, items 1, 2 and 9), checked in the browser at a desktop width
(1366 px) and a phone width (390 px), in both languages, with a screenshot of each page under
test-artifacts/:

1. a rejection says what to do next: for the rate limit, the limits, the retry date and the override route;
   for an identity that could not be verified, what to check (without telling which check failed);
2. a batch shows its outcome broken down (with a tier, without one, in progress), offers the rows without a
   tier as their own download, and explains how to compute consent_sha256;
9. the API documentation (Swagger UI and ReDoc) renders from this server alone: every request the browser
   makes goes to the live server, none to the internet.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.utils import timezone
from django.utils.translation import gettext, override

from insurer_portal.batches import COLUMNS
from tenants.models import InsurerUser
from tests import fhir
from tests.portal.conftest import ALICE_ID, ALICE_NAME
from tests.portal.test_browser import ARTIFACTS, Pages, browser, pages, sign_in  # noqa: F401  # fixtures
from tests.underwriting.conftest import client_for, request_body
from underwriting.models import RejectReason, UnderwritingRequest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
WIDTHS = [1366, 390]
LANGUAGES = ["zh-hans", "en"]
# A well-formed resident ID nobody in the test records has.
STRANGER_ID = fhir.resident_id(date(1961, 7, 2), region="110105", sequence=318)


def words(language: str, settings: Any, retry: date | None = None) -> dict[str, str]:
    """What the pages say, from the translation catalog the server uses (so a wording change in the catalog
    does not break the test, and a string left untranslated shows up as English in the Chinese page)."""
    with override(language):
        limits = {
            "count": settings.UNDERWRITING_RATE_LIMIT_COUNT,
            "days": settings.UNDERWRITING_RATE_LIMIT_DAYS,
            "subject": settings.UNDERWRITING_SUBJECT_LIMIT_COUNT,
            "subject_days": settings.UNDERWRITING_SUBJECT_LIMIT_DAYS,
        }
        return {
            "next": gettext("What to do next:"),
            "limit": gettext(
                "Your company may make at most %(count)s requests about one applicant in %(days)s days, and the "
                "bureau allows at most %(subject)s about one person in %(subject_days)s days across all insurers."
            )
            % limits,
            "retry": gettext("Your company's limit allows a new request about this applicant from %(date)s.")
            % {"date": f"{retry:%Y-%m-%d}" if retry else ""},
            "override": gettext(
                "If a new request is justified sooner, ask the bureau's data-protection office for an override "
                "for this applicant."
            ),
            "check": str(RejectReason.NOT_VERIFIED.label),
            "submitted": gettext("%(count)s of %(total)s submitted") % {"count": 2, "total": 2},
            "with_tier": gettext("%(count)s with a tier") % {"count": 1},
            "without_tier": gettext("%(count)s without a tier (rejected, unrated or failed)") % {"count": 1},
            "download_without": gettext("Download the rows without a tier (CSV)"),
            "sha_help": gettext("How do I fill in consent_sha256?"),
        }


def at(seen: Pages, width: int, language: str) -> Any:
    page = seen.page
    page.set_viewport_size({"width": width, "height": 900})
    page.context.add_cookies([{"name": "django_language", "value": language, "url": page.base_url}])
    return page


def shot(page: Any, name: str, width: int, language: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"items-{name}-{width}-{language}.png"), full_page=True)


def assert_within_width(locator: Any, width: int) -> None:
    """Readable without scrolling sideways: the element lies inside the viewport's width."""
    box = locator.bounding_box()
    assert box is not None
    assert box["x"] >= 0
    assert box["x"] + box["width"] <= width + 1


def assert_inside(inner: Any, outer: Any) -> None:
    """Each of ``inner``'s elements lies inside ``outer``'s content box (nothing sticks out of its panel)."""
    edges = outer.evaluate(
        "e => { const r = e.getBoundingClientRect(), s = getComputedStyle(e);"
        " return [r.left + parseFloat(s.paddingLeft), r.right - parseFloat(s.paddingRight)]; }"
    )
    for index in range(inner.count()):
        box = inner.nth(index).bounding_box()
        assert box["x"] >= edges[0] - 1, (index, box, edges)
        assert box["x"] + box["width"] <= edges[1] + 1, (index, box, edges)


def text_of(locator: Any) -> str:
    return " ".join(str(locator.inner_text()).split())


# --- item 1: a rejection shows the next step ---------------------------------------------------------------


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("width", WIDTHS)
def test_a_rejection_shows_the_next_step(
    pages: Pages,  # noqa: F811
    underwriter: InsurerUser,
    alice: dict[str, str],
    approved_manuals: list[Any],
    custodian_key: Any,
    settings: Any,
    width: int,
    language: str,
) -> None:
    settings.UNDERWRITING_RATE_LIMIT_COUNT = 1
    api = client_for(underwriter.insurer)
    stranger = {"resident_id": STRANGER_ID, "name": "赵某"}
    for applicant, reference in ((alice, "LIM-1"), (alice, "LIM-2"), (stranger, "WHO-1")):
        response = api.post(
            "/api/v1/underwriting-requests", request_body(applicant, reference=reference), format="json"
        )
        assert response.status_code == 202
    first, limited, unverified = (
        UnderwritingRequest.objects.get(reference=reference) for reference in ("LIM-1", "LIM-2", "WHO-1")
    )
    assert (limited.reason, unverified.reason) == ("rate_limited", "not_verified")
    retry = timezone.localdate(first.created_at + timedelta(days=settings.UNDERWRITING_RATE_LIMIT_DAYS))
    said_to = words(language, settings, retry)
    if language == "en":  # the wording itself, once: limits, retry date, override route, what to check
        assert "at most 1 requests about one applicant in 30 days" in said_to["limit"]
        assert "check the resident ID, name and signed consent" in said_to["check"]
    else:  # every one translated: an English sentence in the Chinese page is what users reported
        english = words("en", settings, retry)
        assert [key for key, text in said_to.items() if text == english[key]] == []

    page = at(pages, width, language)
    sign_in(pages, "uw-ping")
    page.goto(f"{page.base_url}/portal/requests/{limited.pk}/")
    step = page.locator(".next-step")
    said = text_of(step)
    assert said.startswith(said_to["next"])
    for part in ("limit", "retry", "override"):
        assert said_to[part] in said, (part, said)
    assert f"{retry:%Y-%m-%d}" in said
    assert_within_width(step, width)
    shot(page, "rejection-rate-limited", width, language)

    page.goto(f"{page.base_url}/portal/requests/{unverified.pk}/")
    note = text_of(page.locator(".result-note"))
    assert said_to["check"] in note
    # One wording whichever check failed: the page must not tell an unknown ID from a wrong name.
    for telling in ("does not match", "unknown", "not found", "不匹配", "不存在"):
        assert telling not in note
    assert_within_width(page.locator(".result-note"), width)
    shot(page, "rejection-not-verified", width, language)
    pages.assert_no_personal_data(ALICE_ID, ALICE_NAME, STRANGER_ID, "赵某")


# --- item 2: a batch's outcome, the rows without a tier, consent_sha256 ------------------------------------


def batch_file(tmp_path: Path) -> Path:
    path = tmp_path / "applicants.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        writer.writerow(["ROW-TIER", ALICE_ID, ALICE_NAME, "charlson-acci", "BC-1", "2026-01-01", "", "c" * 64])
        writer.writerow(["ROW-REJECTED", STRANGER_ID, "赵某", "charlson-acci", "BC-2", "2026-01-01", "", "c" * 64])
        writer.writerow(
            ["ROW-INVALID", "110105194912310021", "某人", "charlson-acci", "BC-3", "2026-01-01", "", "c" * 64]
        )
    return path


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("width", WIDTHS)
def test_a_batch_shows_its_outcome_and_offers_the_rows_without_a_tier(
    pages: Pages,  # noqa: F811
    underwriter: InsurerUser,
    alice: dict[str, str],
    approved_manuals: list[Any],
    custodian_key: Any,
    tmp_path: Path,
    settings: Any,
    width: int,
    language: str,
) -> None:
    said_to = words(language, settings)
    page = at(pages, width, language)
    sign_in(pages, "uw-ping")
    page.goto(f"{page.base_url}/portal/batches/")

    help_box = page.locator("details", has=page.locator("summary", has_text=said_to["sha_help"]))
    assert not help_box.locator("code", has_text="sha256sum form.pdf").is_visible()
    help_box.locator("summary").click()
    for command in ("certutil -hashfile form.pdf SHA256", "shasum -a 256 form.pdf", "sha256sum form.pdf"):
        assert help_box.locator("code", has_text=command).is_visible()
    assert_within_width(help_box, width)
    shot(page, "batch-consent-sha256-help", width, language)

    page.set_input_files("#id_file", str(batch_file(tmp_path)))
    page.click("form.inline-form button[type=submit]")
    page.wait_for_url(re.compile(r"/portal/batches/\d+/$"))
    page.click("form[action$='/start/'] button")
    page.locator("#batch-progress .percent", has_text="100%").wait_for()
    counts = page.locator(".batch-counts")
    said = text_of(counts)
    for key in ("submitted", "with_tier", "without_tier"):
        assert said_to[key] in said, (key, said)
    assert_inside(counts.locator("li, .badge"), page.locator("#batch-progress .panel"))
    link = page.locator("a", has_text=said_to["download_without"])
    assert link.is_visible()
    assert_within_width(link, width)
    shot(page, "batch-outcome", width, language)

    with page.expect_download() as download_info:
        link.click()
    download = download_info.value
    assert download.suggested_filename.endswith("-without-tier.csv")
    rows = list(csv.reader(io.StringIO(Path(download.path()).read_text(encoding="utf-8-sig"))))
    assert sorted(row[1] for row in rows[1:]) == ["ROW-INVALID", "ROW-REJECTED"]
    content = "\n".join(",".join(row) for row in rows)
    for personal in (ALICE_ID, STRANGER_ID, ALICE_NAME, "赵某"):
        assert personal not in content
    pages.assert_no_personal_data(ALICE_ID, ALICE_NAME, STRANGER_ID)


# --- item 9: the API documentation renders offline ---------------------------------------------------------


DOCS = {
    # path: what shows the page has rendered the schema (an operation, and the webhooks)
    "/api/docs/": ("[id$='underwriting_requests_create']", "request.completed"),
    "/api/redoc/": ("[data-section-id='operation/underwriting_requests_create']", "Verifying the signature"),
}


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("path", list(DOCS))
def test_the_api_docs_render_from_this_server_alone(
    pages: Pages,  # noqa: F811
    path: str,
    width: int,
    language: str,
) -> None:
    page = at(pages, width, language)
    origin = urlsplit(page.base_url)
    requested: list[tuple[str, str]] = []

    def record(route: Any) -> None:
        """Every request the page makes; anything for another host is refused, so it fails fast offline."""
        request = route.request
        requested.append((request.resource_type, request.url))
        url = urlsplit(request.url)
        if url.scheme in {"data", "blob"} or (url.scheme, url.netloc) == (origin.scheme, origin.netloc):
            route.continue_()
        else:
            route.abort()

    page.route("**/*", record)
    page.goto(f"{page.base_url}{path}")
    operation, webhooks = DOCS[path]
    page.locator(operation).first.wait_for()
    page.get_by_text(webhooks).first.wait_for(state="attached")
    page.wait_for_load_state("networkidle")
    shot(page, path.strip("/").replace("/", "-"), width, language)

    foreign = [url for _, url in requested if urlsplit(url).netloc not in {"", origin.netloc}]
    assert foreign == []
    assert [url for kind, url in requested if kind == "font"] == []
    assert any(urlsplit(url).path == "/api/schema/" for _, url in requested)
    # A fetch the docs' Content-Security-Policy stops never reaches the network (nor the route above): the
    # browser reports it as a console error instead (drf-spectacular's own ReDoc page: Google Fonts; ReDoc's
    # sidebar: Redocly's logo), so none may appear either.
    assert pages.errors == []
    page.unroute("**/*")
