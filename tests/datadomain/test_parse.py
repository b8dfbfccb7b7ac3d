"""The parser never crashes: every line is either a row or a LineError with a reason code."""

from __future__ import annotations

from datetime import date

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datadomain.ingest.parse import LineError, Parser
from tests.datadomain.fhir import condition, encounter, observation, patient

PARSER = Parser(pepper=b"pepper", today=date(2026, 6, 30))
VALID = [
    patient("p1", date(1980, 1, 1)),
    condition("c1", "p1", "E11.200x001"),
    encounter("e1", "p1", "2026-01-01T08:00:00+08:00"),
    observation("o1", "p1", "85354-9", 150, "2026-01-01"),
]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=12), children, max_size=3),
    max_leaves=8,
)


def outcome(line: bytes) -> str:
    try:
        return type(PARSER.parse(line)).__name__
    except LineError as error:
        rejection = error
    assert rejection.reason
    return rejection.code


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_are_rows_or_rejections(line: bytes) -> None:
    outcome(line)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(VALID),
    st.sampled_from(
        [
            "id",
            "subject",
            "code",
            "meta",
            "identifier",
            "birthDate",
            "period",
            "component",
            "valueQuantity",
            "effectiveDateTime",
            "onsetDateTime",
            "class",
            "name",
        ]
    ),
    json_values,
)
def test_any_element_replaced_by_any_json_is_a_row_or_a_rejection(resource: dict, key: str, value: object) -> None:  # type: ignore[type-arg]
    outcome(orjson.dumps({**resource, key: value}))


def test_valid_resources_parse() -> None:
    assert [outcome(orjson.dumps(r)) for r in VALID] == ["PatientRow", "ConditionRow", "EncounterRow", "ObservationRow"]


def test_nul_characters_and_huge_versions_are_refused() -> None:
    assert outcome(orjson.dumps({**VALID[0], "name": [{"text": "王\u0000"}]})) == "invalid_value"
    assert outcome(orjson.dumps({**VALID[1], "meta": {"versionId": str(2**63)}})) == "invalid_value"
    assert outcome(orjson.dumps({**VALID[1], "meta": {"lastUpdated": "0001-01-01T00:00:00+08:00"}})) == "invalid_date"


def test_remembered_values_give_the_same_rows_and_the_memos_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from datadomain.ingest import parse

    monkeypatch.setattr(parse, "MEMO_SIZE", 4)
    parser = Parser(pepper=b"pepper", today=date(2026, 6, 30))
    days = [f"2020-01-{day:02d}" for day in range(1, 21)]
    lines = [orjson.dumps({**condition(f"c{day}", "p1", "I50.9"), "onsetDateTime": day}) for day in days]
    first = [parser.parse(line) for line in lines]
    again = [parser.parse(line) for line in lines]
    assert first == again == [PARSER.parse(line) for line in lines]
    assert len(parser._dates) <= 4
    assert len(parser._instants) <= 4
    # A value refused once is refused again (refusals are never remembered).
    future = orjson.dumps({**condition("cx", "p1", "I50.9"), "onsetDateTime": "2027-01-01"})
    for _ in range(2):
        with pytest.raises(LineError):
            parser.parse(future)
