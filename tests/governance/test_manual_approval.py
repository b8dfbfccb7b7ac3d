"""Approving a rating manual in the admin: the reviewer reads its weights and tiers and what changed since the
previous approved version, and approves on the manual's own page with an explicit confirmation; never the
author, never in bulk. Read-only records offer no Save or Delete."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.contrib.messages import get_messages
from django.test import Client

from audit import roles
from audit.models import AuditEntry
from tests.governance.conftest import StaffFactory, signed_in
from underwriting.models import RatingManual
from underwriting.services.manuals import manual_approve, manual_upload

pytestmark = pytest.mark.django_db
MANUALS = "/admin/underwriting/ratingmanual/"

MANUAL = """\
slug: heart-debits
version: {version}
title: Heart debits
owner: builtin
features:
{features}
tiers:
{tiers}
"""
V1_FEATURES = """\
  - {name: charlson.ami, weight: 1}
  - {name: charlson.chf, weight: 1}
  - {name: charlson.diab, weight: 1}"""
V1_TIERS = """\
  - {code: A, label: Preferred, max_score: 0, decision: accept}
  - {code: B, label: Standard, max_score: 2, decision: accept}
  - {code: C, label: Substandard, max_score: 4, decision: rate, table_rating: B}
  - {code: D, label: Decline, decision: decline}"""
# v2: chf 1 -> 3, ami removed, HbA1c added; B ends at 3 (C starts at 4); C refers; D unchanged.
V2_FEATURES = """\
  - {name: charlson.chf, weight: 3}
  - {name: charlson.diab, weight: 1}
  - {name: obs.hba1c_ge_6_5, weight: 2}"""
V2_TIERS = """\
  - {code: A, label: Preferred, max_score: 0, decision: accept}
  - {code: B, label: Standard, max_score: 3, decision: accept}
  - {code: C, label: Substandard, max_score: 4, decision: refer, table_rating: B}
  - {code: D, label: Decline, decision: decline}"""


@pytest.fixture
def people(staff: StaffFactory) -> dict[str, User]:
    return {
        "author": staff(roles.MODEL_REVIEWER, "rita"),  # a reviewer who also wrote the draft
        "reviewer": staff(roles.MODEL_REVIEWER, "rex"),
        "auditor": staff(roles.AUDITOR, "aud"),
    }


@pytest.fixture
def draft(people: dict[str, User]) -> RatingManual:
    """heart-debits v1 approved (by rex), v2 uploaded by rita and awaiting approval."""
    first = manual_upload(
        text=MANUAL.format(version=1, features=V1_FEATURES, tiers=V1_TIERS), uploaded_by=people["author"]
    )
    manual_approve(slug=first.slug, version=1, approved_by=people["reviewer"])
    return manual_upload(
        text=MANUAL.format(version=2, features=V2_FEATURES, tiers=V2_TIERS), uploaded_by=people["author"]
    )


def page_of(draft: RatingManual) -> str:
    return f"{MANUALS}{draft.pk}/approve/"


def messages_of(response: Any) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def rows(html: str, table_id: str) -> list[tuple[str, list[str]]]:
    """(row class, cell texts) of a table's body."""
    table = re.search(rf'<table id="{table_id}">(.*?)</table>', html, re.S)
    assert table is not None, table_id
    body = table.group(1).split("<tbody>", 1)[1]
    found = []
    for attrs, cells in re.findall(r"<tr([^>]*)>(.*?)</tr>", body, re.S):
        classes = re.search(r'class="([^"]*)"', attrs)
        texts = [
            re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", cell)).strip()
            for cell in re.findall(r"<td[^>]*>(.*?)</td>", cells, re.S)
        ]
        found.append((classes.group(1) if classes else "", texts))
    return found


def test_the_approval_page_shows_weights_tiers_and_what_changed_since_the_previous_approved_version(
    people: dict[str, User], draft: RatingManual
) -> None:
    page = signed_in(people["reviewer"]).get(page_of(draft)).content.decode()
    assert "Compared with the previous approved version (v1): 5 changes" in page
    weights = rows(page, "manual-weights")
    assert weights == [
        ("diff-changed", ["Congestive heart failure", "charlson.chf", "1 3", "changed"]),
        ("", ["Diabetes without chronic complication", "charlson.diab", "1", ""]),
        ("diff-added", ["Latest HbA1c within 24 months is at least 6.5 %", "obs.hba1c_ge_6_5", "2", "added"]),
        ("diff-removed", ["Myocardial infarction", "charlson.ami", "1", "removed"]),
    ]
    tiers = rows(page, "manual-tiers")
    assert tiers == [
        ("", ["≤ 0", "A Preferred", "accept", "\u2013", ""]),
        ("diff-changed", ["1\u20132 1\u20133", "B Standard", "accept", "\u2013", "changed"]),  # threshold 2 -> 3
        ("diff-changed", ["3\u20134 4", "C Substandard", "rate refer", "B", "changed"]),  # range and decision
        ("", ["≥ 5", "D Decline", "decline", "\u2013", ""]),
    ]
    assert "<del" in page  # the old values are struck through, the new ones inserted
    assert 'name="confirm"' in page
    assert "parsed" not in page.lower()  # no raw JSON line


def test_a_first_version_is_shown_without_a_comparison(people: dict[str, User]) -> None:
    first = manual_upload(
        text=MANUAL.format(version=1, features=V1_FEATURES, tiers=V1_TIERS), uploaded_by=people["author"]
    )
    page = signed_in(people["reviewer"]).get(page_of(first)).content.decode()
    assert "there is no earlier version to compare with" in page
    assert [cells[2] for _, cells in rows(page, "manual-weights")] == ["1", "1", "1"]
    assert [cells[0] for _, cells in rows(page, "manual-tiers")] == ["≤ 0", "1\u20132", "3\u20134", "≥ 5"]


def test_approval_needs_the_explicit_confirmation(people: dict[str, User], draft: RatingManual) -> None:
    client = signed_in(people["reviewer"])
    refused = client.post(page_of(draft), {"document_sha256": draft.document_sha256})
    assert refused.status_code == 200
    assert "Tick the confirmation box to approve the manual." in refused.content.decode()
    assert 'role="alert"' in refused.content.decode()
    draft.refresh_from_db()
    assert draft.status == "draft"

    approved = client.post(page_of(draft), {"document_sha256": draft.document_sha256, "confirm": "on"})
    assert approved.status_code == 302
    assert approved["Location"] == f"{MANUALS}{draft.pk}/change/"
    assert "Approved heart-debits v2." in messages_of(approved)
    draft.refresh_from_db()
    assert (draft.status, draft.approved_by) == ("approved", people["reviewer"])
    assert AuditEntry.objects.filter(action="manual.approve", target_id=str(draft.pk), actor="rex").count() == 1


def test_the_author_cannot_approve_their_own_manual_on_its_page(people: dict[str, User], draft: RatingManual) -> None:
    client = signed_in(people["author"])
    page = client.get(page_of(draft)).content.decode()
    assert "You uploaded this version: another model reviewer must approve it." in page
    assert 'name="confirm"' not in page
    forced = client.post(page_of(draft), {"document_sha256": draft.document_sha256, "confirm": "on"})
    assert "You uploaded this version: another model reviewer must approve it." in messages_of(forced)
    draft.refresh_from_db()
    assert draft.status == "draft"
    assert not AuditEntry.objects.filter(action="manual.approve", target_id=str(draft.pk)).exists()


def test_only_model_reviewers_may_approve(people: dict[str, User], draft: RatingManual) -> None:
    auditor = signed_in(people["auditor"])
    page = auditor.get(page_of(draft))
    assert page.status_code == 200  # auditors read the review
    assert 'name="confirm"' not in page.content.decode()
    forced = auditor.post(page_of(draft), {"document_sha256": draft.document_sha256, "confirm": "on"})
    assert forced.status_code == 403
    draft.refresh_from_db()
    assert draft.status == "draft"


def test_a_page_read_for_another_document_approves_nothing(people: dict[str, User], draft: RatingManual) -> None:
    client = signed_in(people["reviewer"])
    stale = client.post(page_of(draft), {"document_sha256": "0" * 64, "confirm": "on"})
    assert "The document changed while you read it: review it again." in messages_of(stale)
    draft.refresh_from_db()
    assert draft.status == "draft"


def test_there_is_no_bulk_approval(people: dict[str, User], draft: RatingManual) -> None:
    client = signed_in(people["reviewer"])
    changelist = client.get(MANUALS).content.decode()
    assert "approve_selected" not in changelist
    assert f'href="{page_of(draft)}"' in changelist  # each draft links to its approval page
    client.post(MANUALS, {"action": "approve_selected", "_selected_action": [draft.pk]})
    draft.refresh_from_db()
    assert draft.status == "draft"


def test_the_manual_page_shows_the_tables_and_no_save_or_delete(people: dict[str, User], draft: RatingManual) -> None:
    page = signed_in(people["reviewer"]).get(f"{MANUALS}{draft.pk}/change/").content.decode()
    assert 'id="manual-weights"' in page
    assert f'href="{page_of(draft)}"' in page
    for button in ('name="_save"', 'name="_continue"', 'name="_addanother"', "deletelink"):
        assert button not in page


def no_save_buttons(client: Client, url: str) -> None:
    page = client.get(url)
    assert page.status_code == 200, url
    html = page.content.decode()
    for button in ('name="_save"', 'name="_continue"', 'name="_addanother"', 'name="_saveasnew"', "deletelink"):
        assert button not in html, (url, button)


def test_read_only_records_offer_no_save_or_delete_even_to_a_superuser(
    staff: StaffFactory, draft: RatingManual, alice_decision: str
) -> None:
    """Audit entries, manuals (draft and approved), requests, webhook deliveries and closed misuse flags."""
    from tests.factories import UserFactory
    from underwriting.models import MisuseFlag, UnderwritingRequest, WebhookDelivery, WebhookEndpoint

    root = signed_in(UserFactory(username="root", is_staff=True, is_superuser=True))
    approved = RatingManual.objects.get(slug="heart-debits", version=1)
    entry = AuditEntry.objects.order_by("id").first()
    assert entry is not None
    request = UnderwritingRequest.objects.get(pk=alice_decision)
    endpoint = WebhookEndpoint.objects.create(insurer=request.insurer, url="https://hooks.example.test/x")
    delivery = WebhookDelivery.objects.create(
        endpoint=endpoint, request=request, event_type="request.completed", payload={}
    )
    closed = MisuseFlag.objects.create(
        kind="burst", condition="burst:test", status=MisuseFlag.Status.CLOSED, count=5, threshold=3,
        window_start=request.created_at, window_end=request.created_at, window_seconds=60,
    )  # fmt: skip
    for url in (
        f"/admin/audit/auditentry/{entry.pk}/change/",
        f"{MANUALS}{draft.pk}/change/",
        f"{MANUALS}{approved.pk}/change/",
        f"/admin/underwriting/underwritingrequest/{alice_decision}/change/",
        f"/admin/underwriting/webhookdelivery/{delivery.pk}/change/",
        f"/admin/underwriting/misuseflag/{closed.pk}/change/",
    ):
        no_save_buttons(root, url)


def test_the_catalog_labels_are_all_named_for_translation_and_translated() -> None:
    from django.utils import translation

    from datadomain import catalog, selectors
    from datadomain.catalog.labels import LABELS

    assert {feature.label for feature in catalog.current().features.values()} == set(LABELS)
    with translation.override("zh-hans"):
        labels = selectors.catalog_feature_labels()
    assert labels["charlson.chf"] == "充血性心力衰竭"
    untranslated = [label for label in labels.values() if not re.search(r"[\u4e00-\u9fff]", label)]
    assert untranslated == []


def test_the_admin_index_and_lists_name_every_app_and_model_in_chinese(staff: StaffFactory) -> None:
    """No raw app label ("Otp_Totp") or English model name on the index; django-otp's pages in Chinese too."""
    from tests.factories import UserFactory
    from tests.staff import authenticator

    root = UserFactory(username="root", is_staff=True, is_superuser=True)
    client = signed_in(root)
    client.cookies["django_language"] = "zh-hans"
    index = client.get("/admin/", headers={"accept-language": "zh-hans"}).content.decode()
    captions = [
        re.sub(r"<[^>]+>", "", caption).strip() for caption in re.findall(r"<caption>(.*?)</caption>", index, re.S)
    ]
    names = [
        re.sub(r"<[^>]+>", "", name).strip()
        for name in re.findall(r'<th scope="row"[^>]*>\s*(<a[^>]*>.*?</a>)', index, re.S)
    ]
    assert "双因素认证" in captions
    for text in (*captions, *names):
        assert re.search(r"[\u4e00-\u9fff]", text), text
    assert "Otp_Totp" not in index
    assert "TOTP device" not in index
    device = authenticator(root)
    for url in ("/admin/otp_totp/totpdevice/", f"/admin/otp_totp/totpdevice/{device.pk}/change/"):
        page = client.get(url).content.decode()
        for english in (
            "TOTP device",
            "Otp_Totp",
            "Created at",
            "Last used at",
            "Identity",
            "Throttling",
            "Model name",
        ):
            assert english not in page, (url, english)


def test_the_review_shows_tier_labels_and_the_title_in_the_readers_language(
    people: dict[str, User], approved_manuals: list[RatingManual]
) -> None:
    from django.utils import translation

    manual = next(manual for manual in approved_manuals if manual.slug == "charlson-acci")
    client = signed_in(people["auditor"])
    with translation.override("zh-hans"):
        page = client.get(page_of(manual), headers={"accept-language": "zh-hans"}).content.decode()
    tiers = [cells[1] for _, cells in rows(page, "manual-tiers")]
    assert tiers == ["A 优选体", "B 标准体", "C 次标准体", "D 拒保"]
    assert "年龄校正 Charlson 合并症指数" in page
    assert "充血性心力衰竭" in page


def test_the_authenticator_admin_never_shows_a_staff_members_secret(staff: StaffFactory) -> None:
    """Even a superuser sees neither the TOTP key nor its QR code once a device exists."""
    from tests.factories import UserFactory
    from tests.staff import authenticator

    root = UserFactory(username="root", is_staff=True, is_superuser=True)
    client = signed_in(root)
    device = authenticator(root)
    page = client.get(f"/admin/otp_totp/totpdevice/{device.pk}/change/").content.decode()
    assert device.key not in page
    assert "qrcode" not in page
    assert client.get(f"/admin/otp_totp/totpdevice/{device.pk}/qrcode/").status_code == 403
    assert client.get(f"/admin/otp_totp/totpdevice/{device.pk}/config/").status_code == 403
