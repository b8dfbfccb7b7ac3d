"""The custodian keys page: the active key, each key's status, re-encryption progress, and retirement of
an old key only once no ciphertext uses it. The admin never opens a private key: the custodian does."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.core.management import call_command
from django.test import Client

from audit import roles
from audit.approvals import approval_decide, approval_request
from audit.models import Approval, AuditEntry
from datadomain import custodian, keyring, selectors
from datadomain import services as domain
from datadomain.models import CustodianKey, EncryptedFeatureVector
from tests import fhir
from tests.governance.conftest import ALICE_ID, StaffFactory, signed_in

pytestmark = pytest.mark.django_db
KEYS = "/admin/datadomain/custodiankey/"
BOB_ID = fhir.resident_id(date(1971, 8, 2), sequence=135)
FEATURES = ["charlson.chf", "age.acci_points"]


@pytest.fixture
def rotated(
    staff: StaffFactory,
    ingest: Callable[[list[dict[str, Any]]], None],
    in_process_tasks: None,
    django_capture_on_commit_callbacks: Any,
) -> tuple[CustodianKey, CustodianKey]:
    """Two subjects with stored vectors under the first key, then a four-eyes rotation to a second key."""
    ingest(
        [
            fhir.patient("pat-a", ALICE_ID, "甲", date(1950, 3, 14)),
            fhir.patient("pat-b", BOB_ID, "乙", date(1971, 8, 2)),
        ]
    )
    old = custodian.keypair_create(bits=2048)
    call_command("precompute_features", "--no-progress", "--processes", "1", stdout=StringIO())
    kim, lee = staff(roles.KEY_OFFICER, "kim"), staff(roles.KEY_OFFICER, "lee")
    approval = approval_request(kind=Approval.Kind.KEY_ROTATION, requested_by=kim)
    approval_decide(approval_id=approval.pk, decided_by=lee, approve=True)
    with django_capture_on_commit_callbacks(execute=True):
        domain.key_rotation_execute(approval_id=approval.pk, executed_by=kim)
    return old, CustodianKey.objects.get(status="active")


def messages_of(response: Any) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def retire(client: Client, key: CustodianKey) -> list[str]:
    return messages_of(client.post(KEYS, {"action": "retire", "_selected_action": [key.pk]}))


def test_progress_counts_vectors_on_the_active_key_and_on_older_ones(
    rotated: tuple[CustodianKey, CustodianKey], staff: StaffFactory
) -> None:
    old, new = rotated
    progress = selectors.reencryption_progress()
    assert (progress.active_key_id, progress.on_active, progress.on_old, progress.percent_done) == (new.key_id, 0, 2, 0)
    domain.encrypted_feature_vectors(
        subject_keys=[domain.subject_key_for(ALICE_ID)], feature_names=FEATURES, as_of=date(2026, 6, 30),
        public_key=keyring.public_key(new.key_id),
    )  # fmt: skip
    progress = selectors.reencryption_progress()
    assert (progress.on_active, progress.on_old, progress.percent_done) == (1, 2, 33)
    assert {(key.key_id, key.status, key.vectors) for key in progress.keys} == {
        (new.key_id, "active", 1),
        (old.key_id, "retiring", 2),
    }
    page = signed_in(staff(roles.KEY_OFFICER, "kit")).get(KEYS).content.decode()
    assert f'<code id="active-key">{new.key_id}</code>' in page
    assert "under the active key: 1; still under an older key: 2 (33% re-encrypted)" in page


def test_an_old_key_is_not_retired_while_ciphertexts_use_it(
    rotated: tuple[CustodianKey, CustodianKey], staff: StaffFactory, in_process_tasks: None
) -> None:
    old, new = rotated
    client = signed_in(staff(roles.KEY_OFFICER, "kit"))
    refused = retire(client, old)
    assert any("2 encrypted feature vectors still use this key" in message for message in refused), refused
    assert CustodianKey.objects.get(pk=old.pk).status == "retiring"
    assert Path(old.sealed_path).exists()
    assert any("active key cannot be retired" in message for message in retire(client, new))
    assert not AuditEntry.objects.filter(action="custodian.key_retire").exists()

    domain.vectors_drop_retiring()  # what `precompute_features --replace-retiring` does at the end
    assert not EncryptedFeatureVector.objects.filter(key_id=old.key_id).exists()
    retire(client, old)
    assert CustodianKey.objects.get(pk=old.pk).status == "retired"
    assert not Path(old.sealed_path).exists()
    assert AuditEntry.objects.get(action="custodian.key_retire").actor == "kit"
    assert any("already retired" in message for message in retire(client, old))


def test_rotation_through_the_admin_needs_a_second_key_officer(
    staff: StaffFactory, in_process_tasks: None, django_capture_on_commit_callbacks: Any
) -> None:
    first = custodian.keypair_create(bits=2048)
    kim, lee = staff(roles.KEY_OFFICER, "kim"), staff(roles.KEY_OFFICER, "lee")
    as_kim, as_lee = signed_in(kim), signed_in(lee)
    as_kim.post(KEYS + "rotation/ask/", {"reason": "yearly rotation"})
    approval = Approval.objects.get()
    assert "four_eyes" not in str(approval.status)
    response = as_kim.post("/admin/audit/approval/", {"action": "approve", "_selected_action": [approval.pk]})
    assert any("Someone other than the requester" in message for message in messages_of(response))
    assert any(
        "has not been approved" in message
        for message in messages_of(as_kim.post(f"{KEYS}rotation/{approval.pk}/carry-out/"))
    )
    assert CustodianKey.objects.get().pk == first.pk

    as_lee.post("/admin/audit/approval/", {"action": "approve", "_selected_action": [approval.pk]})
    page = as_kim.get(KEYS).content.decode()
    assert f"rotation/{approval.pk}/carry-out/" in page
    with django_capture_on_commit_callbacks(execute=True):
        as_kim.post(f"{KEYS}rotation/{approval.pk}/carry-out/")
    with django_capture_on_commit_callbacks(execute=True):
        again = as_lee.post(f"{KEYS}rotation/{approval.pk}/carry-out/")
    assert any("already been carried out" in message for message in messages_of(again))
    assert CustodianKey.objects.count() == 2
    assert CustodianKey.objects.get(pk=first.pk).status == "retiring"
    rotate = AuditEntry.objects.get(action="custodian.key_rotate")
    assert (rotate.actor, rotate.detail["approval"]) == ("kim", approval.pk)
    execute = AuditEntry.objects.get(action="approval.execute")
    assert (execute.detail["requested_by"], execute.detail["approved_by"]) == ("kim", "lee")
