"""Another insurer's objects answer 404 at every URL that names an object, in the portal and the API, for
reading and for every action: existence is not revealed, and nothing changes."""

from __future__ import annotations

from datetime import date

import pytest
from django.test import Client
from django.urls import URLPattern
from rest_framework.test import APIClient

from insurer_portal import urls as portal_urls
from insurer_portal.models import Batch
from insurer_portal.services import api_key_create
from tenants.models import ApiKey, Insurer, InsurerUser
from tests.portal.conftest import _portal_settings, insurer_admin, member, signed_in  # noqa: F401
from tests.underwriting.conftest import client_for, insurer, other_insurer  # noqa: F401
from underwriting.models import UnderwritingRequest, WebhookDelivery
from underwriting.services.webhooks import webhook_endpoint_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def victim_objects(insurer: Insurer) -> dict[str, int | str]:  # noqa: F811
    """One object of each kind, owned by ``insurer`` (the victim)."""
    request = UnderwritingRequest.objects.create(
        insurer=insurer, reference="SECRET-REF", subject_key="s" * 64, resident_id_masked="1101**********002X",
        manual_slug="charlson-acci", as_of=date(2026, 11, 23), status="completed",
    )  # fmt: skip
    endpoint, _ = webhook_endpoint_create(insurer_id=insurer.pk, url="https://127.0.0.1:9/victim-hooks")
    delivery = WebhookDelivery.objects.create(
        endpoint=endpoint, event_type="request.completed", request=request, payload={}
    )
    key, _ = api_key_create(insurer=insurer)
    colleague = member(insurer, "victim-colleague")
    batch = Batch.objects.create(insurer=insurer, filename="victims.csv", total_rows=1)
    return {
        "request_id": str(request.pk),
        "batch_id": batch.pk,
        "member_id": colleague.pk,
        "key_id": key.pk,
        "endpoint_id": endpoint.pk,
        "delivery_id": delivery.pk,
        "fmt": "csv",
    }


def object_urls(objects: dict[str, int | str]) -> list[str]:
    """Every portal URL that names an object (the password-reset link names a token, not an object)."""
    urls = []
    for pattern in portal_urls.urlpatterns:
        if isinstance(pattern, URLPattern) and pattern.pattern.converters and pattern.name != "password-reset-confirm":
            names = set(pattern.pattern.converters)
            assert names <= set(objects), f"no victim object for {pattern.pattern}"
            urls.append(_reverse(pattern, objects))
    return urls


def _reverse(pattern: URLPattern, objects: dict[str, int | str]) -> str:
    from django.urls import reverse

    kwargs = {name: objects[name] for name in pattern.pattern.converters}
    return reverse(f"portal:{pattern.name}", kwargs=kwargs)


def test_every_portal_object_url_is_404_for_another_insurers_admin(
    victim_objects: dict[str, int | str],
    other_insurer: Insurer,  # noqa: F811
) -> None:
    attacker = member(other_insurer, "attacker-admin", InsurerUser.Role.ADMIN)
    from django_otp.plugins.otp_totp.models import TOTPDevice

    TOTPDevice.objects.create(user=attacker.user, name="app", confirmed=True)
    client: Client = signed_in(attacker.user)
    urls = object_urls(victim_objects)
    assert len(urls) >= 14, urls
    for url in urls:
        # An action answers 405 to the method it does not take, whatever the id: that reveals nothing.
        answers = {client.get(url).status_code, client.post(url, {"role": "admin", "confirm": "1"}).status_code}
        assert 404 in answers, url
        assert answers <= {404, 405}, (url, answers)
    assert ApiKey.objects.get(pk=victim_objects["key_id"]).revoked_at is None
    assert InsurerUser.objects.get(pk=victim_objects["member_id"]).user.is_active
    assert Batch.objects.get(pk=victim_objects["batch_id"]).status == Batch.Status.PREVIEW


def test_api_hides_another_insurers_requests(
    victim_objects: dict[str, int | str],
    other_insurer: Insurer,  # noqa: F811
) -> None:
    api: APIClient = client_for(other_insurer)
    detail = api.get(f"/api/v1/underwriting-requests/{victim_objects['request_id']}")
    assert detail.status_code == 404
    assert detail.json()["error"]["code"] == "not_found"
    assert api.get("/api/v1/underwriting-requests", {"reference": "SECRET-REF"}).json()["results"] == []
    assert b"SECRET-REF" not in api.get("/api/v1/underwriting-requests").content


def test_unknown_and_foreign_ids_answer_alike(
    victim_objects: dict[str, int | str],
    other_insurer: Insurer,  # noqa: F811
) -> None:
    api: APIClient = client_for(other_insurer)
    foreign = api.get(f"/api/v1/underwriting-requests/{victim_objects['request_id']}")
    unknown = api.get("/api/v1/underwriting-requests/00000000-0000-4000-8000-000000000000")
    assert (foreign.status_code, foreign.json()) == (unknown.status_code, unknown.json())
