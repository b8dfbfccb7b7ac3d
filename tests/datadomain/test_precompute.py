from __future__ import annotations

from collections.abc import Callable
from datetime import date
from io import StringIO

import phe
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from datadomain import services
from datadomain.encryption import unpack
from datadomain.models import CustodianKey, EncryptedFeatureVector, FeatureValues
from datadomain.precompute import precompute
from securecompute.keys import key_id, public_key_to_json
from tests.datadomain.conftest import AS_OF
from tests.datadomain.fhir import condition, patient, resident_id

pytestmark = pytest.mark.django_db


def population(load: Callable[..., None], size: int = 6) -> list[str]:
    resources = []
    for i in range(size):
        born = date(1940 + 5 * i, 2, 2)
        resources += [
            patient(f"p{i}", born, rid=resident_id(born)),
            condition(f"c{i}", f"p{i}", "I50.0" if i % 2 else "J44.9"),
        ]
    load(*resources)
    return [services.subject_key_for(resident_id(date(1940 + 5 * i, 2, 2))) for i in range(size)]


def test_precompute_encrypts_every_subject_with_two_processes_and_requests_reuse_it(
    load: Callable[..., None], keypair: tuple[phe.PaillierPublicKey, phe.PaillierPrivateKey]
) -> None:
    public_key, private_key = keypair
    keys = population(load)
    names = ["charlson.chf", "charlson.copd", "age.acci_points"]
    result = precompute(public_key=public_key, feature_names=names, as_of=AS_OF, processes=2, chunk_size=4)
    assert (result.subjects, result.encrypted, result.already_fresh) == (6, 6, 0)
    stored = {row.patient.resource_id: row for row in EncryptedFeatureVector.objects.select_related("patient")}
    assert stored.keys() == {f"p{i}" for i in range(6)}
    assert all(row.key_id == key_id(public_key) for row in stored.values())

    [vector] = services.encrypted_feature_vectors(
        subject_keys=[keys[1]], feature_names=names, as_of=AS_OF, public_key=public_key
    ).values()
    assert [private_key.decrypt(n) for n in vector] == [1, 0, 4]  # born 1945: 81 years old
    kept = unpack(stored["p1"].features, stored["p1"].exponents, bytes(stored["p1"].ciphertexts))
    assert [n.ciphertext(False) for n in vector] == [kept[n][0] for n in names]

    again = precompute(public_key=public_key, feature_names=names, as_of=AS_OF, processes=2)
    assert (again.encrypted, again.already_fresh) == (0, 6)
    load(condition("c99", "p0", "I21.0"))  # only p0 is stale now
    assert precompute(public_key=public_key, feature_names=names, as_of=AS_OF, processes=1).encrypted == 1


def test_precompute_command_uses_the_active_custodian_key(
    load: Callable[..., None], keypair: tuple[phe.PaillierPublicKey, phe.PaillierPrivateKey]
) -> None:
    public_key, _ = keypair
    population(load, size=3)
    CustodianKey.objects.create(key_id=key_id(public_key), public_key_json=public_key_to_json(public_key))
    out = StringIO()
    call_command(
        "precompute_features", "--as-of", "2026-06-30", "--features", "charlson.*,age.acci_points",
        "--processes", "2", "--no-progress", stdout=out,
    )  # fmt: skip
    assert "3 subjects, 3 encrypted" in out.getvalue()
    assert len(EncryptedFeatureVector.objects.first().features) == 18  # type: ignore[union-attr]
    with pytest.raises(CommandError):
        call_command("precompute_features", "--features", "charlson.nope", "--no-progress", stdout=out)


def test_the_plaintext_values_stay_in_step_with_the_ciphertexts(
    load: Callable[..., None], keypair: tuple[phe.PaillierPublicKey, phe.PaillierPrivateKey]
) -> None:
    """The domain's authorisation uses the stored plaintexts for the tag only while they are the ones the
    ciphertexts encrypt: same records stamp, written together; a vector stored without them gets none
    (the slower tag path) until the precompute makes both again."""
    public_key, private_key = keypair
    keys = population(load, size=3)
    names = ["charlson.chf", "charlson.copd", "age.acci_points"]
    precompute(public_key=public_key, feature_names=names, as_of=AS_OF, processes=1)

    def vectors() -> dict[str, services.SubjectVector]:
        return services.subject_vectors(subject_keys=keys, feature_names=names, as_of=AS_OF, public_key=public_key)

    for vector in vectors().values():
        assert vector.values == [private_key.decrypt(number) for number in vector.ciphertexts]
    FeatureValues.objects.all().delete()
    assert {key: vector.values for key, vector in vectors().items()} == dict.fromkeys(keys)
    assert precompute(public_key=public_key, feature_names=names, as_of=AS_OF, processes=1).encrypted == 3
    load(condition("c98", "p1", "I50.0"))  # p1's records change: its stored values are stale with its vector
    fresh = vectors()
    for vector in fresh.values():
        assert vector.values == [private_key.decrypt(number) for number in vector.ciphertexts]
    EncryptedFeatureVector.objects.all().delete()  # cold: extracted at request time, stored with its values
    assert vectors()[keys[1]].values == fresh[keys[1]].values
    assert FeatureValues.objects.count() == 3
