"""Bureau admin: the consent policy is set through an audited service; confirmations are read-only."""

from __future__ import annotations

import pytest

from audit.models import AuditEntry
from tenants.models import Insurer
from underwriting.admin_consent import ConsentConfirmationAdmin
from underwriting.models import ConsentConfirmation, ConsentMode, ConsentPolicy
from underwriting.services.confirmations import consent_policy_set

pytestmark = pytest.mark.django_db


def test_setting_a_policy_is_audited(insurer: Insurer) -> None:
    consent_policy_set(insurer_id=insurer.pk, mode=ConsentMode.RESIDENT, confirmation_hours=48, actor="officer")
    policy = ConsentPolicy.objects.get(insurer=insurer)
    assert (policy.mode, policy.confirmation_hours, policy.updated_by) == ("resident", 48, "officer")
    entry = AuditEntry.objects.filter(action="consent.policy_set").latest("id")
    assert entry.detail == {"mode": "resident", "confirmation_hours": 48}


def test_confirmations_show_the_pseudonymous_key_only() -> None:
    assert "subject_key" in ConsentConfirmationAdmin.exclude
    assert "subject_ref" in ConsentConfirmationAdmin.readonly_fields
    assert ConsentConfirmation._meta.get_field("reachable")
