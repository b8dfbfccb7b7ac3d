from __future__ import annotations

import hashlib
import hmac
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from datadomain import identity, services
from tests.datadomain.fhir import resident_id


def full_width(text: str) -> str:
    return "".join(chr(ord(ch) + 0xFEE0) for ch in text)


@pytest.mark.parametrize("value", ["11010519491231002X", "440524188001010014", "11010519491231002x"])
def test_accepts_published_examples_of_gb_11643(value: str) -> None:
    assert services.resident_id_is_valid(value)


def test_normalises_lower_case_x_and_full_width_digits() -> None:
    assert services.resident_id_normalise(" 11010519491231002x ") == "11010519491231002X"
    assert services.resident_id_normalise(full_width("11010519491231002X")) == "11010519491231002X"


@pytest.mark.parametrize(
    "value",
    [
        "110105194912310021",  # wrong check character
        "11010519491231002",  # 17 characters
        "1101051949123100211",  # 19 characters
        "110105194902300026",  # 30 February
        "110105299901010010",  # born in the future
        "11010519491231002Y",
        "",
    ],
)
def test_rejects_malformed_ids(value: str) -> None:
    assert not services.resident_id_is_valid(value)


@given(st.dates(min_value=date(1900, 1, 1), max_value=date(2020, 12, 31)), st.integers(0, 999))
def test_every_generated_id_is_valid_and_a_changed_digit_is_not(born: date, sequence: int) -> None:
    value = resident_id(born, sequence=sequence)
    assert identity.is_valid(value)
    assert identity.birth_date_of(value) == born
    changed = value[:16] + str((int(value[16]) + 1) % 10) + value[17]
    assert not identity.is_valid(changed)  # MOD 11-2 detects every single-digit error


def test_masks_birth_date_and_first_sequence_digit() -> None:
    assert services.mask_resident_id("37021419800101123x") == "370214********123X"


def test_subject_key_is_hmac_sha256_of_the_normalised_id(settings: pytest.FixtureRequest) -> None:
    settings.SUBJECT_PEPPER = "pepper"  # type: ignore[attr-defined]
    expected = hmac.new(b"pepper", b"11010519491231002X", hashlib.sha256).hexdigest()
    assert services.subject_key_for("11010519491231002x") == expected


def test_names_compare_without_width_case_or_spaces() -> None:
    assert identity.normalise_name(" 王 小明 ") == identity.normalise_name("王小明")
    assert identity.normalise_name(full_width("Alice") + "  Li") == identity.normalise_name("alice li")
