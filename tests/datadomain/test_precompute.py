from __future__ import annotations

from collections.abc import Callable
from datetime import date
from io import StringIO
from typing import Any

import phe
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from datadomain import services
from datadomain.encryption import unpack
from datadomain.errors import DomainError
from datadomain.models import CustodianKey, EncryptedFeatureVector, FeatureValues, Patient
from datadomain.precompute import Shard, precompute
from securecompute.keys import generate_keypair, key_id, public_key_to_json
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


NAMES = ["charlson.chf", "charlson.copd", "age.acci_points"]


def stored() -> tuple[dict[int, tuple[int, list[str], str]], dict[int, tuple[int, dict[str, int]]]]:
    """What a run leaves, without the ciphertexts (fresh randomness each time): each vector's stamp, names
    and key, and each subject's plaintext values."""
    vectors = {
        row.patient_id: (row.records_stamp, list(row.features), row.key_id)
        for row in EncryptedFeatureVector.objects.all()
    }
    values = {row.patient_id: (row.records_stamp, row.values) for row in FeatureValues.objects.all()}
    return vectors, values


@pytest.mark.parametrize("count", [1, 3, 5])
def test_shards_together_write_exactly_what_one_full_run_writes(
    count: int, load: Callable[..., None], keypair: tuple[phe.PaillierPublicKey, phe.PaillierPrivateKey]
) -> None:
    public_key, _ = keypair
    population(load, size=12)
    full = precompute(public_key=public_key, feature_names=NAMES, as_of=AS_OF, processes=1, chunk_size=4)
    expected = stored()
    assert len(expected[0]) == len(expected[1]) == full.encrypted == 12
    EncryptedFeatureVector.objects.all().delete()
    FeatureValues.objects.all().delete()

    seen: set[int] = set()
    for index in range(count):
        shard = Shard(index, count)
        result = precompute(
            public_key=public_key, feature_names=NAMES, as_of=AS_OF, processes=1, chunk_size=2, shard=shard
        )
        written = set(EncryptedFeatureVector.objects.values_list("patient_id", flat=True)) - seen
        assert not written & seen
        assert result.encrypted == result.subjects == len(written)
        # The rule in SQL is the documented one: the subject key's first seven hex digits, modulo N.
        owned = {pk for pk, key in Patient.objects.values_list("pk", "subject_key") if shard.owns(key)}
        assert written == owned == set(shard.subjects().values_list("pk", flat=True))
        seen |= written
    assert stored() == expected


def test_a_shard_run_twice_redoes_nothing_and_limit_counts_within_the_shard(
    load: Callable[..., None], keypair: tuple[phe.PaillierPublicKey, phe.PaillierPrivateKey]
) -> None:
    public_key, _ = keypair
    population(load, size=8)
    shard = Shard(1, 2)
    members = sorted(shard.subjects().values_list("pk", flat=True))
    assert 0 < len(members) < 8  # both halves hold someone with these eight keys
    first = precompute(public_key=public_key, feature_names=NAMES, as_of=AS_OF, processes=1, limit=1, shard=shard)
    assert first.encrypted == 1
    assert list(EncryptedFeatureVector.objects.values_list("patient_id", flat=True)) == members[:1]
    precompute(public_key=public_key, feature_names=NAMES, as_of=AS_OF, processes=1, shard=shard)
    before = stored()
    again = precompute(public_key=public_key, feature_names=NAMES, as_of=AS_OF, processes=1, shard=shard)
    assert (again.subjects, again.encrypted, again.already_fresh) == (len(members), 0, len(members))
    assert stored() == before


@pytest.mark.parametrize("text", ["2/2", "3/2", "-1/2", "0/0", "1", "a/b", "1/2/3", "", "1/-2"])
def test_bad_shards_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="shard"):
        Shard.parse(text)
    with pytest.raises(CommandError, match="--shard"):
        call_command("precompute_features", "--shard", text, "--no-progress", stdout=StringIO())


def test_shard_objects_check_their_values() -> None:
    with pytest.raises(ValueError, match="K from 0 to N-1"):
        Shard(2, 2)
    with pytest.raises(ValueError, match="N >= 1"):
        Shard(0, 0)
    assert Shard.parse(" 1 / 4 ") == Shard(1, 4)
    assert Shard.parse("0/1") == Shard()


def test_precompute_command_takes_a_shard_with_its_size_as_the_progress_total(
    load: Callable[..., None],
    keypair: tuple[phe.PaillierPublicKey, phe.PaillierPrivateKey],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from datadomain.management.commands import precompute_features

    public_key, _ = keypair
    population(load, size=8)
    CustodianKey.objects.create(key_id=key_id(public_key), public_key_json=public_key_to_json(public_key))
    totals: list[int] = []

    class Bar:
        def __init__(self, *, total: int, **kwargs: Any) -> None:
            totals.append(total)
            self.done = 0

        def __enter__(self) -> Bar:
            return self

        def __exit__(self, *exc: object) -> None:
            assert self.done == totals[-1]  # the bar ends full

        def update(self, n: int) -> None:
            self.done += n

    monkeypatch.setattr(precompute_features, "tqdm", Bar)
    sizes = [Shard(k, 3).subjects().count() for k in range(3)]
    for k in range(3):
        out = StringIO()
        call_command(
            "precompute_features", "--shard", f"{k}/3", "--processes", "1", "--as-of", "2026-06-30", stdout=out
        )
        assert f"shard {k}/3: {sizes[k]} subjects, {sizes[k]} encrypted" in out.getvalue()
    assert totals == sizes
    assert sum(sizes) == 8 == EncryptedFeatureVector.objects.count()
    someone = next(k for k in range(3) if sizes[k])
    call_command(
        "precompute_features", "--shard", f"{someone}/3", "--limit", "1", "--processes", "1", stdout=StringIO()
    )
    assert totals[-1] == 1


def test_replace_retiring_is_refused_with_a_shard_before_any_work(
    load: Callable[..., None], keypair: tuple[phe.PaillierPublicKey, phe.PaillierPrivateKey]
) -> None:
    public_key, _ = keypair
    population(load, size=2)
    CustodianKey.objects.create(key_id=key_id(public_key), public_key_json=public_key_to_json(public_key))
    with pytest.raises(CommandError, match="run it once without --shard"):
        call_command("precompute_features", "--shard", "0/2", "--replace-retiring", "--no-progress", stdout=StringIO())
    assert not EncryptedFeatureVector.objects.exists()


def test_extraction_remembers_the_active_key_and_sees_it_change(
    load: Callable[..., None], keypair: tuple[phe.PaillierPublicKey, phe.PaillierPrivateKey]
) -> None:
    """``subject_vectors_active`` keeps the active key between calls; a rotation or retirement since is
    seen before anything is encrypted under the key it remembered."""
    public_key, _ = keypair
    keys = population(load, size=2)
    names = ["charlson.chf"]
    CustodianKey.objects.create(key_id=key_id(public_key), public_key_json=public_key_to_json(public_key))
    used, _, vectors = services.subject_vectors_active(subject_keys=keys, feature_names=names, as_of=AS_OF)
    assert used == key_id(public_key)
    assert len(vectors) == 2

    rotated, _ = generate_keypair(2048)
    CustodianKey.objects.update(status=CustodianKey.Status.RETIRING)
    CustodianKey.objects.create(key_id=key_id(rotated), public_key_json=public_key_to_json(rotated))
    used, given, vectors = services.subject_vectors_active(subject_keys=keys, feature_names=names, as_of=AS_OF)
    assert used == key_id(rotated)
    assert given == rotated
    assert all(vector.ciphertexts[0].public_key == rotated for vector in vectors.values())

    CustodianKey.objects.update(status=CustodianKey.Status.RETIRING)  # no active key: nothing is encrypted
    with pytest.raises(DomainError) as error:
        services.subject_vectors_active(subject_keys=keys, feature_names=names, as_of=AS_OF)
    assert error.value.code == "no_active_key"
