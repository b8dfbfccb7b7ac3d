from __future__ import annotations

from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError

from tests.factories import UserFactory
from underwriting.errors import UnderwritingError
from underwriting.models import RatingManual
from underwriting.reference import BUILTIN_DIR
from underwriting.services.manuals import manual_approve, manual_retire, manual_upload

pytestmark = pytest.mark.django_db
ACCI = (BUILTIN_DIR / "charlson-acci.yaml").read_text()


def test_author_cannot_approve_their_own_manual(author: Any) -> None:
    manual_upload(text=ACCI, uploaded_by=author)
    with pytest.raises(UnderwritingError) as caught:
        manual_approve(slug="charlson-acci", version=1, approved_by=author)
    assert caught.value.code == "four_eyes"
    assert RatingManual.objects.get().status == "draft"


def test_database_also_refuses_self_approval(author: Any) -> None:
    manual = manual_upload(text=ACCI, uploaded_by=author)
    with pytest.raises(IntegrityError):
        RatingManual.objects.filter(pk=manual.pk).update(status="approved", approved_by=author)


def test_approved_versions_are_immutable_and_new_versions_are_separate(author: Any, reviewer: Any) -> None:
    manual_upload(text=ACCI, uploaded_by=author)
    manual_approve(slug="charlson-acci", version=1, approved_by=reviewer)
    with pytest.raises(UnderwritingError) as caught:
        manual_upload(text=ACCI.replace("Preferred", "Best"), uploaded_by=author)
    assert caught.value.code == "manual_version_exists"
    with pytest.raises(UnderwritingError):
        manual_approve(slug="charlson-acci", version=1, approved_by=reviewer)
    manual_upload(text=ACCI.replace("version: 1", "version: 2"), uploaded_by=author)
    assert list(RatingManual.objects.values_list("version", "status")) == [(2, "draft"), (1, "approved")]


def test_upload_refuses_features_missing_from_the_catalog(author: Any) -> None:
    with pytest.raises(UnderwritingError) as caught:
        manual_upload(text=ACCI.replace("charlson.pud", "charlson.gout"), uploaded_by=author)
    assert caught.value.code == "invalid_manual"
    assert "'charlson.gout' is not in the feature catalog" in caught.value.fields["document"][0]


def test_retired_versions_are_no_longer_offered(author: Any, reviewer: Any) -> None:
    from underwriting.selectors import manual_for_use

    manual_upload(text=ACCI, uploaded_by=author)
    manual_approve(slug="charlson-acci", version=1, approved_by=reviewer)
    assert manual_for_use(slug="charlson-acci", insurer_slug="x") is not None
    manual_retire(slug="charlson-acci", version=1)
    assert manual_for_use(slug="charlson-acci", insurer_slug="x") is None


def test_insurer_owned_manuals_are_private_to_their_owner(author: Any, reviewer: Any) -> None:
    from underwriting.selectors import manual_for_use

    own = ACCI.replace("slug: charlson-acci", "slug: ping-special").replace("owner: builtin", "owner: ping-life")
    manual_upload(text=own, uploaded_by=author)
    manual_approve(slug="ping-special", version=1, approved_by=reviewer)
    assert manual_for_use(slug="ping-special", insurer_slug="ping-life") is not None
    assert manual_for_use(slug="ping-special", insurer_slug="other-life") is None


def test_load_and_approve_commands(author: Any, reviewer: Any, tmp_path: Path) -> None:
    out = StringIO()
    call_command("load_manual", str(BUILTIN_DIR / "life-debits.yaml"), "--by", author.username, stdout=out)
    assert "life-debits v1" in out.getvalue()
    with pytest.raises(CommandError, match="someone other than its author"):
        call_command("approve_manual", "life-debits", "1", "--by", author.username, stdout=StringIO())
    call_command("approve_manual", "life-debits", "1", "--by", reviewer.username, stdout=out)
    assert RatingManual.objects.get(slug="life-debits").status == "approved"
    broken = tmp_path / "broken.yaml"
    broken.write_text(ACCI.replace("weight: 6", "weight: six"))
    with pytest.raises(CommandError, match=r"features\[15\]\.weight \(line \d+\): must be an integer"):
        call_command("load_manual", str(broken), "--by", author.username, stdout=StringIO())


def test_create_api_key_prints_the_key_alone_on_its_last_line(insurer: Any) -> None:
    from insurer_portal.services import api_key_authenticate

    out = StringIO()
    call_command("create_api_key", insurer.slug, stdout=out)
    key = out.getvalue().strip().splitlines()[-1]
    assert key.startswith("uwk_")
    assert " " not in key
    authenticated = api_key_authenticate(plaintext=key)
    assert authenticated is not None
    assert authenticated.insurer == insurer


def test_an_insurer_user_cannot_author_or_approve_a_bureau_manual(author: Any, tmp_path: Path) -> None:
    underwriter = UserFactory(username="insurer-underwriter")  # portal users are never staff
    with pytest.raises(UnderwritingError, match="not a staff account") as refused:
        manual_upload(text=ACCI, uploaded_by=underwriter)
    assert refused.value.code == "author_not_staff"
    with pytest.raises(CommandError, match="not a staff account"):
        call_command("load_manual", str(BUILTIN_DIR / "life-debits.yaml"), "--by", underwriter.username)
    assert not RatingManual.objects.exists()
    manual_upload(text=ACCI, uploaded_by=author)
    with pytest.raises(UnderwritingError, match="not a staff account"):
        manual_approve(slug="charlson-acci", version=1, approved_by=underwriter)
    assert RatingManual.objects.get().status == RatingManual.Status.DRAFT
