"""What the insurer's staff meet every day, outside the browser: request times, downloads, forms, the
dashboard's figures, tier badges, manual titles and labels in the user's language, API errors in one
language. The same properties in a real browser are in test_browser_daily_use.py."""

from __future__ import annotations

import csv
import io
import itertools
import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone, translation
from hypothesis import given
from hypothesis import strategies as st
from openpyxl import load_workbook
from openpyxl.utils import get_column_letter
from rest_framework.test import APIClient

from insurer_portal.forms import RequestFilterForm, RequestSubmitForm
from insurer_portal.models import Batch
from insurer_portal.selectors import status_breakdown
from insurer_portal.templatetags.portal import tier_class, who
from tenants.models import Insurer, InsurerUser
from tests.portal.conftest import member
from tests.portal.test_views_batches import csv_file, rows
from tests.underwriting.conftest import client_for, request_body
from underwriting.charts import MAX_Y_TICKS, nice_ticks, tier_colour
from underwriting.downloads import MAX_COLUMN_WIDTH, MIN_COLUMN_WIDTH, display_width
from underwriting.manual_format import ManualFormatError, parse_manual
from underwriting.models import DECISION_LABELS, RatingManual, RequestStatus, UnderwritingRequest
from underwriting.reference import builtin_documents

pytestmark = pytest.mark.django_db
API = "/api/v1/underwriting-requests"


@pytest.fixture
def api(insurer: Insurer) -> APIClient:
    return client_for(insurer)


def test_a_request_rejected_at_admission_never_completes_before_it_was_created(
    api: APIClient, alice: dict[str, str], approved_manuals: list[RatingManual]
) -> None:
    # Rejected requests are inserted already terminal: created_at and completed_at come from one reading of
    # the clock (created_at used to be read again at the INSERT, microseconds after completed_at).
    for index in range(5):
        response = api.post(API, request_body(alice, reference=f"T-{index}", manual="no-such-manual"), format="json")
        assert response.json()["reason"] == "manual_not_approved"
    for row in UnderwritingRequest.objects.all():
        assert row.completed_at is not None
        assert row.completed_at >= row.created_at


def _batch_results(client: Client, run_on_commit: Callable[..., Any], language: str, suffix: str) -> bytes:
    client.post("/portal/batches/", {"file": csv_file(rows())})
    batch = Batch.objects.get()
    with run_on_commit():
        client.post(f"/portal/batches/{batch.pk}/start/")
    return client.get(f"/portal/batches/{batch.pk}/results.{suffix}", HTTP_ACCEPT_LANGUAGE=language).content


@pytest.mark.parametrize(
    ("language", "completed", "rejected_reason", "label"),
    [("zh-hans", "已完成", "数据局无记录", "拒保"), ("en", "completed", "no records", "Decline")],
)
def test_batch_results_say_status_reason_and_decision_in_the_users_language_beside_the_codes(
    uw_client: Client,
    alice: dict[str, str],
    approved_manuals: list[RatingManual],
    custodian_key: Any,
    run_on_commit: Callable[..., Any],
    language: str,
    completed: str,
    rejected_reason: str,
    label: str,
) -> None:
    text = _batch_results(uw_client, run_on_commit, language, "csv").decode("utf-8-sig")
    table = list(csv.DictReader(io.StringIO(text)))
    first = table[0]
    assert (first["status"], first["tier"], first["decision"]) == ("completed", "D", "decline")  # stable codes
    assert first["status_text"] == completed
    assert first["label"] == label
    declined = str(DECISION_LABELS["decline"])
    assert first["decision_text"] == declined if language == "en" else first["decision_text"] != ""
    assert all(row["status_text"] != row["status"] for row in table if row["status"] and language == "zh-hans")
    del rejected_reason


def test_batch_results_xlsx_has_column_widths_and_a_frozen_bold_header(
    uw_client: Client,
    alice: dict[str, str],
    approved_manuals: list[RatingManual],
    custodian_key: Any,
    run_on_commit: Callable[..., Any],
) -> None:
    content = _batch_results(uw_client, run_on_commit, "zh-hans", "xlsx")
    sheet = load_workbook(io.BytesIO(content)).active
    assert sheet.freeze_panes == "A2"
    assert all(cell.font.bold for cell in sheet[1])
    widths = {letter: dimension.width for letter, dimension in sheet.column_dimensions.items()}
    headers = [cell.value for cell in sheet[1]]
    assert len(widths) == len(headers)
    request_id = get_column_letter(headers.index("request_id") + 1)
    assert widths[request_id] >= 36  # a UUID fits
    assert all(MIN_COLUMN_WIDTH <= width <= MAX_COLUMN_WIDTH for width in widths.values())


def test_cjk_text_counts_double_width() -> None:
    assert display_width("拒保") == 4
    assert display_width("D-1") == 3
    assert display_width(None) == 0


def test_a_reversed_date_range_is_a_form_error_not_an_empty_list(uw_client: Client) -> None:
    page = uw_client.get(
        "/portal/requests/", {"created_from": "2026-03-10", "created_to": "2026-03-01"}, HTTP_ACCEPT_LANGUAGE="en"
    )
    html = page.content.decode()
    assert "The end date is before the start date." in html
    assert 'role="alert"' in html
    assert "No request matches these filters." not in html
    form = RequestFilterForm({"created_from": "2026-03-01", "created_to": "2026-03-01"}, tiers=[], manuals=[])
    assert form.is_valid()


def test_required_fields_are_marked_and_aria_required() -> None:
    form = RequestSubmitForm(manuals=[("charlson-acci", "x")])
    html = str(form["reference"].as_field_group())
    assert 'class="required"' in html
    assert 'aria-required="true"' in html
    assert "aria-required" not in str(form["consent_expires_at"])
    assert "aria-required" not in str(form["consent_scope"])  # the group's legend is marked instead


def test_dashboard_figures_add_up_to_the_total(
    uw_client: Client, underwriter: InsurerUser, approved_manuals: list[RatingManual]
) -> None:
    manual = approved_manuals[0]
    for index, status in enumerate(["completed", "rejected", "unrated", "failed", "extracting", "completed"]):
        UnderwritingRequest.objects.create(
            insurer=underwriter.insurer, reference=f"K-{index}", subject_key=f"{index:064x}",
            resident_id_masked="370214********123X", manual=manual, manual_slug=manual.slug,
            as_of=timezone.localdate(), status=status,
        )  # fmt: skip
    breakdown = status_breakdown(insurer_id=underwriter.insurer_id, since=timezone.now() - timedelta(days=1))
    assert breakdown.total == 6
    parts = [breakdown.completed, breakdown.rejected, breakdown.unrated, breakdown.failed, breakdown.in_progress]
    assert parts == [2, 1, 1, 1, 1]
    html = uw_client.get("/portal/").content.decode()
    assert html.count('data-kpi="part"') == 5


@pytest.mark.parametrize(
    ("language", "message", "field_error"),
    [
        ("en", "The request has invalid fields.", "This field is required."),
        ("zh-hans", "请求中有无效的字段。", "该字段是必填项。"),
    ],
)
def test_api_errors_speak_one_language(api: APIClient, language: str, message: str, field_error: str) -> None:
    body = request_body({"resident_id": "110105194912310021", "name": "某人"})
    del body["reference"]
    error = api.post(API, body, format="json", HTTP_ACCEPT_LANGUAGE=language).json()["error"]
    assert error["message"] == message
    assert error["fields"]["reference"] == [field_error]
    bad_id = request_body({"resident_id": "110105194912310022", "name": "某人"})
    error = api.post(API, bad_id, format="json", HTTP_ACCEPT_LANGUAGE=language).json()["error"]
    assert error["message"] == message
    [problem] = error["fields"]["applicant.resident_id"]
    assert (re.search("[A-Za-z]{3,}", problem) is None) is (language == "zh-hans"), problem


def test_manual_titles_and_tier_labels_follow_the_language() -> None:
    document = builtin_documents()["charlson-acci"]
    assert document.title_in("zh-hans").startswith("年龄校正")
    assert document.title_in("en") == document.title
    assert document.title_in("fr") == document.title  # no French: the en text
    assert [tier.label_in("zh-Hans") for tier in document.tiers] == ["优选体", "标准体", "次标准体", "拒保"]
    assert document.tier("C") is not None
    assert document.tier("Z") is None


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ("title: {zh-Hans: 测试}", "title (line 3): give the text in en too"),
        ("title: {en: Test, '中文': 测试}", "title (line 3): '中文' is not a language tag"),
        ("title: {en: Test, zh-Hans: ''}", "title.zh-Hans (line 3): must be a non-empty string"),
    ],
)
def test_a_translated_title_needs_en_and_valid_tags(change: str, problem: str) -> None:
    text = "slug: t-manual\nversion: 1\ntitle: Test\nowner: builtin\nfeatures:\n  - {name: charlson.chf, weight: 1}\n"
    text += "tiers:\n  - {code: A, label: {en: Good, zh-Hans: 好}, max_score: 0, decision: accept}\n"
    text += "  - {code: B, label: Bad, decision: decline}\n"
    assert parse_manual(text).tiers[0].label_in("zh-hans") == "好"
    with pytest.raises(ManualFormatError) as caught:
        parse_manual(text.replace("title: Test", change))
    assert any(found.startswith(problem) for found in caught.value.problems), caught.value.problems


def test_the_portal_header_names_a_user_called_like_their_role_once(insurer: Insurer) -> None:
    with translation.override("en"):
        assert who(member(insurer, "underwriter")) == "underwriter"
        assert who(member(insurer, "li-lei")) == "li-lei · underwriter"


def test_tier_badges_take_the_tier_mix_charts_colours() -> None:
    css = (Path(__file__).resolve().parents[2] / "static" / "css" / "app.css").read_text()
    for code in "ABCDE":
        assert f".{tier_class(code)} {{ background: {tier_colour(code)}; }}" in css
    assert tier_class("Z") == "tier-other"


@pytest.mark.parametrize(
    ("peak", "ticks"),
    [(0, [0, 1]), (1, [0, 1]), (3, [0, 1, 2, 3]), (7, [0, 2, 4, 6, 8]), (14, [0, 5, 10, 15]), (100, [0, 50, 100]),
     (101, [0, 50, 100, 150])],
)  # fmt: skip
def test_the_daily_chart_has_round_value_ticks(peak: int, ticks: list[int]) -> None:
    assert nice_ticks(peak) == ticks


@given(peak=st.integers(min_value=1, max_value=10**7))
def test_value_ticks_start_at_zero_cover_the_peak_in_equal_round_steps(peak: int) -> None:
    ticks = nice_ticks(peak)
    steps = {b - a for a, b in itertools.pairwise(ticks)}
    assert ticks[0] == 0
    assert ticks[-1] >= peak > ticks[-2]
    assert 2 <= len(ticks) <= MAX_Y_TICKS
    assert len(steps) == 1
    assert str(steps.pop()).strip("0") in {"1", "2", "5"}


@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_api_errors_with_limits_in_them_speak_the_requests_language_too(api: APIClient, language: str) -> None:
    """Messages that carry a number (the wait bound, a status list, batch and key limits) are translated
    with the number filled in, not left in English beside Chinese field errors."""
    chinese = language == "zh-hans"
    problems = [
        api.get(f"{API}/00000000-0000-0000-0000-000000000000?wait=abc", HTTP_ACCEPT_LANGUAGE=language).json()["error"][
            "fields"
        ]["wait"][0],
        api.get(f"{API}?status=nonsense", HTTP_ACCEPT_LANGUAGE=language).json()["error"]["fields"]["status"][0],
        api.post(f"{API}/batch", {"requests": []}, format="json", HTTP_ACCEPT_LANGUAGE=language).json()["error"][
            "fields"
        ]["requests"][0],
    ]
    for problem in problems:
        codes = "|".join(sorted([*RequestStatus.values, "API_BATCH_MAX_ITEMS", "requests"], key=len, reverse=True))
        words = re.sub(rf"\b({codes})\b", "", problem)  # codes stay codes in every language
        assert (re.search("[A-Za-z]{3,}", words) is None) is chinese, problem
    assert re.search(r"\b10\b", problems[0])  # the limits themselves are in the messages
    assert "received" in problems[1]
