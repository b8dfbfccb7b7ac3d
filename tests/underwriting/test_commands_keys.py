from __future__ import annotations

import json
import stat
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from datadomain import custodian
from datadomain.models import CustodianKey
from securecompute.errors import WrongKekError
from securecompute.keys import key_id
from tests.governance.conftest import alice_decision, approved  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def key_dir(tmp_path: Path, settings: Any) -> Path:
    settings.CUSTODIAN_KEY_DIR = tmp_path / "keys"
    return settings.CUSTODIAN_KEY_DIR


def test_create_keypair_seals_the_private_key(key_dir: Path) -> None:
    call_command("create_keypair", "--bits", "2048", stdout=StringIO())
    key = CustodianKey.objects.get()
    sealed = Path(key.sealed_path)
    assert sealed.parent == key_dir
    assert stat.S_IMODE(sealed.stat().st_mode) == 0o600
    private_key = custodian._private_key(key.key_id)
    content = sealed.read_bytes()
    for factor in (private_key.p, private_key.q):
        assert str(factor).encode() not in content
        assert format(factor, "x").encode() not in content
    with pytest.raises(CommandError, match="already active"):
        call_command("create_keypair", "--bits", "2048", stdout=StringIO())


def test_create_keypair_refuses_short_keys() -> None:
    with pytest.raises(CommandError, match="2048"):
        call_command("create_keypair", "--bits", "1024", stdout=StringIO())


def test_rotation_keeps_the_old_key_until_nothing_uses_it() -> None:
    call_command("create_keypair", "--bits", "2048", stdout=StringIO())
    old = CustodianKey.objects.get()
    out = StringIO()
    approval = approved("key_rotation")
    call_command("rotate_keypair", "--approval", str(approval), "--by", "key-asker", "--bits", "2048", stdout=out)
    statuses = dict(CustodianKey.objects.values_list("key_id", "status"))
    assert statuses[old.key_id] == "retired"  # no stored vector used it
    assert not Path(old.sealed_path).exists()
    assert list(statuses.values()).count("active") == 1


def test_custodian_loads_the_sealed_key_it_made(settings: Any) -> None:
    key = custodian.keypair_create(bits=2048)
    custodian._private_key.cache_clear()
    assert key_id(custodian._private_key(key.key_id).public_key) == key.key_id
    custodian._private_key.cache_clear()
    settings.CUSTODIAN_KEK = "0123456789abcdef" * 4  # another KEK cannot open it
    with pytest.raises(WrongKekError):
        custodian._private_key(key.key_id)
    custodian._private_key.cache_clear()


@pytest.mark.usefixtures("alice_decision")
def test_explain_subject_prints_features_and_score() -> None:
    from underwriting.models import UnderwritingRequest

    out = StringIO()
    approval = approved("subject_explanation", target=str(UnderwritingRequest.objects.get().pk))
    call_command("explain_subject", "--approval", str(approval), "--by", "pri-asker", stdout=out)
    report = json.loads(out.getvalue())
    assert report["features"] == {
        "age.acci_points": {"value": 3, "points": 3},
        "charlson.chf": {"value": 1, "points": 1},
        "charlson.diabwc": {"value": 1, "points": 2},
    }
    assert report["score"] == 6
    assert report["tier"]["code"] == "D"


def test_rotation_then_reencryption_in_the_domain_moves_stored_vectors_to_the_new_key(alice: dict[str, str]) -> None:
    from datadomain.models import EncryptedFeatureVector

    call_command("create_keypair", "--bits", "2048", stdout=StringIO())
    old = CustodianKey.objects.get()
    call_command("precompute_features", "--no-progress", "--processes", "1", stdout=StringIO())
    assert set(EncryptedFeatureVector.objects.values_list("key_id", flat=True)) == {old.key_id}
    approval = approved("key_rotation")
    call_command(
        "rotate_keypair", "--approval", str(approval), "--by", "key-asker", "--bits", "2048",
        stdout=StringIO(), stderr=StringIO(),
    )  # fmt: skip
    call_command("retire_keys", stdout=StringIO())
    assert CustodianKey.objects.get(pk=old.pk).status == "retiring"  # its vectors are still in use
    call_command("precompute_features", "--no-progress", "--processes", "1", "--replace-retiring", stdout=StringIO())
    call_command("retire_keys", stdout=StringIO())
    new = CustodianKey.objects.get(status="active")
    assert set(EncryptedFeatureVector.objects.values_list("key_id", flat=True)) == {new.key_id}
    assert CustodianKey.objects.get(pk=old.pk).status == "retired"
