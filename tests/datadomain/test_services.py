from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import phe
import pytest

from datadomain import selectors, services
from datadomain.errors import DomainError
from datadomain.models import EncryptedFeatureVector
from tests.datadomain.conftest import AS_OF
from tests.datadomain.fhir import condition, encounter, observation, patient, resident_id

pytestmark = pytest.mark.django_db
BORN = date(1950, 3, 1)
RID = resident_id(BORN)
SHA = "a" * 64
T0 = datetime(2026, 1, 1, tzinfo=UTC)


# --- identity ----------------------------------------------------------------------------------------


def test_identity_check_matches_normalised_names(load: Callable[..., None]) -> None:
    load(patient("p1", BORN, rid=RID, name="欧阳 小明"))
    [check] = services.identity_check_many(applicants=[(RID.lower(), "欧阳小明 ")])
    assert check == services.IdentityCheck("matched", services.subject_key_for(RID), services.mask_resident_id(RID))


def test_identity_check_reports_mismatch_and_unknown(load: Callable[..., None]) -> None:
    load(patient("p1", BORN, rid=RID, name="王小明"))
    other = resident_id(date(1990, 1, 1))
    mismatch, unknown = services.identity_check_many(applicants=[(RID, "王小红"), (other, "王小明")])
    assert mismatch is not None
    assert mismatch.outcome == "mismatch"
    assert unknown is not None
    assert unknown.outcome == "unknown"


def test_identity_check_answers_nothing_for_a_malformed_id() -> None:
    assert services.identity_check_many(applicants=[("370214198001011230", "x")]) == [None]


# --- consent -------------------------------------------------------------------------------------------


def record(**overrides: object) -> int:
    """One item through consent_record_many; its error raised."""
    fields: dict[str, object] = {
        "reference": "C-1",
        "signed_at": T0,
        "expires_at": T0 + timedelta(days=30),
        "scope": ["underwriting", "claims"],
        "artifact_sha256": SHA,
    }
    evidence = services.ConsentEvidence(**{**fields, **overrides})  # type: ignore[arg-type]
    [recorded] = services.consent_record_many(insurer_slug="acme", evidence=[("k" * 64, evidence)])
    if isinstance(recorded, DomainError):
        raise recorded
    return recorded.consent_id


def is_valid(consent_id: int, *, at: datetime, purpose: str = "underwriting") -> bool:
    return consent_id not in services.consent_problems(consent_ids=[consent_id], purpose=purpose, at=at)


def test_consent_is_valid_within_its_dates_and_scope() -> None:
    consent_id = record()
    assert is_valid(consent_id, at=T0)
    assert is_valid(consent_id, purpose="claims", at=T0 + timedelta(days=1))
    assert not is_valid(consent_id, purpose="marketing", at=T0)
    assert not is_valid(consent_id, at=T0 - timedelta(seconds=1))
    assert not is_valid(consent_id, at=T0 + timedelta(days=30))


def test_rejects_withdrawn_consent_from_the_withdrawal_on() -> None:
    consent_id = record(expires_at=None)
    services.consent_withdraw(consent_id=consent_id, at=T0 + timedelta(days=2))
    assert is_valid(consent_id, at=T0 + timedelta(days=1))
    assert not is_valid(consent_id, at=T0 + timedelta(days=2))
    services.consent_withdraw(consent_id=consent_id, at=T0 + timedelta(days=9))  # the first withdrawal stands
    assert not is_valid(consent_id, at=T0 + timedelta(days=3))


def test_recording_the_same_consent_twice_is_idempotent_but_changed_evidence_is_refused() -> None:
    assert record() == record()
    with pytest.raises(DomainError):
        record(artifact_sha256="b" * 64)
    with pytest.raises(DomainError):
        record(reference="C-2", artifact_sha256="not-a-hash")
    with pytest.raises(DomainError):
        record(reference="C-3", signed_at=datetime(2026, 1, 1))


def test_a_consent_no_longer_stored_has_no_problem_to_report() -> None:
    # Its subject was erased: the caller finds no records either, and answers for that.
    assert services.consent_problems(consent_ids=[999_999], at=T0) == {}


# --- features ------------------------------------------------------------------------------------------


def test_subject_features_for_one_and_many_agree(load: Callable[..., None]) -> None:
    other = resident_id(date(1990, 6, 30))
    load(
        patient("p1", BORN, rid=RID),
        patient("p2", date(1990, 6, 30), rid=other),
        condition("c1", "p1", "E11.200x001"),
        condition("c2", "p1", "E11.9"),
        condition("c3", "p2", "I50.0", onset="2027-01-01"),  # after the as-of date
        encounter("e1", "p1", "2026-03-01"),
        encounter("e2", "p1", "2026-04-01", status="entered-in-error"),
        observation("o1", "p1", "4548-4", 6.8, "2026-01-01"),
    )
    names = ["charlson.diab", "charlson.diabwc", "charlson.chf", "age.acci_points", "enc.inpatient_12m",
             "obs.hba1c_ge_6_5"]  # fmt: skip
    keys = [services.subject_key_for(RID), services.subject_key_for(other), "unknown-key"]
    bulk = selectors.subjects_features(subject_keys=keys, feature_names=names, as_of=AS_OF)
    assert bulk[keys[0]] == {
        "charlson.diab": 0, "charlson.diabwc": 1, "charlson.chf": 0, "age.acci_points": 3, "enc.inpatient_12m": 1,
        "obs.hba1c_ge_6_5": 1,
    }  # fmt: skip
    assert bulk[keys[1]]["charlson.chf"] == 0
    assert bulk[keys[1]]["age.acci_points"] == 0
    assert "unknown-key" not in bulk
    assert selectors.subject_features(subject_key=keys[0], feature_names=names, as_of=AS_OF) == bulk[keys[0]]


def test_bulk_extraction_is_set_based(load: Callable[..., None], django_assert_max_num_queries: object) -> None:
    resources = []
    for i in range(30):
        born = date(1940 + i, 1, 1)
        resources += [patient(f"p{i}", born, rid=resident_id(born)), condition(f"c{i}", f"p{i}", "I21.0")]
        resources += [
            encounter(f"e{i}", f"p{i}", "2026-01-01"),
            observation(f"o{i}", f"p{i}", "39156-5", 31, "2026-01-01"),
        ]
    load(*resources)
    keys = [services.subject_key_for(resident_id(date(1940 + i, 1, 1))) for i in range(30)]
    with django_assert_max_num_queries(5):  # type: ignore[operator]
        result = selectors.subjects_features(
            subject_keys=keys, feature_names=selectors.catalog_feature_names(), as_of=AS_OF
        )
    assert len(result) == 30
    assert all(values["charlson.ami"] == 1 and values["enc.inpatient_12m"] == 1 for values in result.values())


def test_unknown_features_and_subjects_are_domain_errors() -> None:
    with pytest.raises(DomainError) as error:
        selectors.subject_features(subject_key="x", feature_names=["charlson.nope"], as_of=AS_OF)
    assert error.value.code == "invalid_input"
    with pytest.raises(DomainError) as error:
        selectors.subject_features(subject_key="x", feature_names=["charlson.chf"], as_of=AS_OF)
    assert error.value.code == "unknown_subject"


def test_catalog_names_and_version() -> None:
    names = selectors.catalog_feature_names()
    assert {"charlson.chf", "elix.chf", "age.acci_points", "enc.inpatient_12m", "obs.hba1c_ge_6_5"} <= set(names)
    assert selectors.catalog_version().startswith("2026.2+")


# --- encrypted features --------------------------------------------------------------------------------


def decrypt(private_key: phe.PaillierPrivateKey, numbers: list[phe.EncryptedNumber]) -> list[int]:
    return [private_key.decrypt(number) for number in numbers]


def vector(key: str, names: list[str], public_key: phe.PaillierPublicKey) -> list[phe.EncryptedNumber]:
    """One subject through encrypted_feature_vectors."""
    vectors = services.encrypted_feature_vectors(
        subject_keys=[key], feature_names=names, as_of=AS_OF, public_key=public_key
    )
    return vectors[key]


def test_encrypted_vector_decrypts_to_the_features_and_is_reused_while_fresh(
    load: Callable[..., None], keypair: tuple[phe.PaillierPublicKey, phe.PaillierPrivateKey]
) -> None:
    public_key, private_key = keypair
    load(patient("p1", BORN, rid=RID), condition("c1", "p1", "I50.0"))
    key = services.subject_key_for(RID)
    names = ["charlson.chf", "charlson.copd", "age.acci_points"]
    first = vector(key, names, public_key)
    assert decrypt(private_key, first) == [1, 0, 3]
    again = vector(key, names, public_key)
    assert [n.ciphertext(False) for n in again] == [n.ciphertext(False) for n in first]
    assert EncryptedFeatureVector.objects.count() == 1

    load(condition("c2", "p1", "J44.9"))  # new records invalidate the stored vector
    fresh = vector(key, names, public_key)
    assert decrypt(private_key, fresh) == [1, 1, 3]
    assert fresh[0].ciphertext(False) != first[0].ciphertext(False)


def test_encrypted_vector_adds_missing_features_to_a_fresh_row(
    load: Callable[..., None], keypair: tuple[phe.PaillierPublicKey, phe.PaillierPrivateKey]
) -> None:
    public_key, private_key = keypair
    load(patient("p1", BORN, rid=RID), condition("c1", "p1", "C78.0"))
    key = services.subject_key_for(RID)
    vector(key, ["charlson.chf"], public_key)
    both = vector(key, ["charlson.metacanc", "charlson.chf"], public_key)
    assert decrypt(private_key, both) == [1, 0]
    assert set(EncryptedFeatureVector.objects.get().features) == {"charlson.chf", "charlson.metacanc"}


def test_an_unknown_subject_has_no_encrypted_vector(
    keypair: tuple[phe.PaillierPublicKey, phe.PaillierPrivateKey],
) -> None:
    vectors = services.encrypted_feature_vectors(
        subject_keys=["x"], feature_names=["charlson.chf"], as_of=AS_OF, public_key=keypair[0]
    )
    assert vectors == {}
