"""Insurer admin pages: users, API keys, webhooks with test event and retry, usage; roles and isolation."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.test import Client

from insurer_portal.services import api_key_create
from tenants.models import ApiKey, Insurer, InsurerUser
from tests.webhook_receiver import Receiver
from underwriting.models import UnderwritingRequest, WebhookDelivery, WebhookEndpoint

pytestmark = pytest.mark.django_db
ADMIN_PAGES = ["/portal/admin/users/", "/portal/admin/api-keys/", "/portal/admin/webhooks/", "/portal/admin/usage/"]


def test_underwriters_do_not_see_admin_pages(uw_client: Client) -> None:
    for path in ADMIN_PAGES:
        assert uw_client.get(path).status_code == 404


def test_admin_pages_render(admin_client: Client) -> None:
    for path in ADMIN_PAGES:
        assert admin_client.get(path).status_code == 200


def test_admin_adds_a_user_who_gets_a_password_link(admin_client: Client, insurer: Insurer) -> None:
    response = admin_client.post(
        "/portal/admin/users/", {"username": "newbie", "email": "newbie@example.com", "role": "underwriter"}
    )
    assert response.status_code == 302
    member = InsurerUser.objects.get(user__username="newbie")
    assert member.insurer == insurer
    assert member.role == "underwriter"
    assert len(mail.outbox) == 1
    assert "/portal/password-reset/" in mail.outbox[0].body
    admin_client.post(f"/portal/admin/users/{member.pk}/toggle/")
    member.user.refresh_from_db()
    assert not member.user.is_active


def test_a_taken_user_name_is_a_form_error_in_the_users_language(admin_client: Client, insurer: Insurer) -> None:
    data = {"username": "twice", "email": "twice@example.com", "role": "underwriter"}
    admin_client.post("/portal/admin/users/", data)
    response = admin_client.post("/portal/admin/users/", data, HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert response.status_code == 200
    assert response.context["form"].errors["username"] == ["此用户名已被使用。"]


def test_api_key_is_shown_once_then_revoked(admin_client: Client, insurer: Insurer) -> None:
    page = admin_client.post("/portal/admin/api-keys/", {"name": "core system"}, follow=True).content.decode()
    key = ApiKey.objects.get(insurer=insurer)
    assert f"uwk_{key.prefix}_" in page
    assert f"uwk_{key.prefix}_" not in admin_client.get("/portal/admin/api-keys/").content.decode().replace(
        f"uwk_{key.prefix}_…", ""
    )
    admin_client.post(f"/portal/admin/api-keys/{key.pk}/revoke/")
    key.refresh_from_db()
    assert key.revoked_at is not None


def test_webhook_endpoint_test_event_and_retry(
    admin_client: Client, insurer: Insurer, receiver: Receiver, settings: Any
) -> None:
    response = admin_client.post("/portal/admin/webhooks/", {"url": receiver.url})
    endpoint = WebhookEndpoint.objects.get(insurer=insurer)
    assert response["Location"] == f"/portal/admin/webhooks/{endpoint.pk}/"
    page = admin_client.post(f"/portal/admin/webhooks/{endpoint.pk}/test/", follow=True, HTTP_ACCEPT_LANGUAGE="en")
    assert "Test event delivered (HTTP 204)." in page.content.decode()
    assert b'"test.ping"' in receiver.received[0].body
    request = UnderwritingRequest.objects.create(
        insurer=insurer, reference="R-1", subject_key="s" * 64, resident_id_masked="370214********123X",
        manual_slug="charlson-acci", as_of=date(2026, 11, 23), status="rejected", reason="consent_invalid",
    )  # fmt: skip
    delivery = WebhookDelivery.objects.create(
        endpoint=endpoint, event_type="request.rejected", request=request, payload={"type": "request.rejected"},
        status=WebhookDelivery.Status.FAILED, attempts=8,
    )  # fmt: skip
    log = admin_client.get(f"/portal/admin/webhooks/{endpoint.pk}/").content.decode()
    assert "R-1" in log
    assert "request.rejected" in log
    admin_client.post(f"/portal/admin/deliveries/{delivery.pk}/retry/")
    delivery.refresh_from_db()
    assert delivery.status == WebhookDelivery.Status.PENDING  # queued again (runs after commit)


def test_another_insurers_admin_objects_are_not_found(admin_client: Client, other_insurer: Insurer) -> None:
    key, _ = api_key_create(insurer=other_insurer)
    endpoint = WebhookEndpoint.objects.create(insurer=other_insurer, url="https://example.com/h", secret_encrypted="x")
    other = InsurerUser.objects.create(user=User.objects.create_user("o2"), insurer=other_insurer)
    assert admin_client.post(f"/portal/admin/api-keys/{key.pk}/revoke/").status_code == 404
    assert admin_client.get(f"/portal/admin/webhooks/{endpoint.pk}/").status_code == 404
    assert admin_client.post(f"/portal/admin/webhooks/{endpoint.pk}/test/").status_code == 404
    assert admin_client.post(f"/portal/admin/users/{other.pk}/toggle/").status_code == 404
    key.refresh_from_db()
    assert key.revoked_at is None


def test_pages_switch_to_english(uw_client: Client) -> None:
    chinese = uw_client.get("/portal/").content.decode()
    assert "仪表板" in chinese or 'lang="zh-hans"' in chinese
    response = uw_client.post("/i18n/setlang/", {"language": "en", "next": "/portal/"})
    assert response.status_code == 302
    english = uw_client.get("/portal/").content.decode()
    assert 'lang="en"' in english
    assert "Dashboard" in english


def test_admin_changes_a_role_and_the_new_admin_must_enrol(
    admin_client: Client, underwriter: InsurerUser, settings: Any
) -> None:
    from tests.portal.conftest import signed_in

    uw = signed_in(underwriter.user)
    admin_client.post(f"/portal/admin/users/{underwriter.pk}/role/", {"role": "admin"})
    underwriter.refresh_from_db()
    assert underwriter.role == InsurerUser.Role.ADMIN
    assert uw.get("/portal/")["Location"].startswith("/portal/account/two-factor/")
