from __future__ import annotations

import pytest

from underwriting.manual_format import ManualFormatError, parse_manual
from underwriting.reference import builtin_documents, evaluate, tier_index

VALID = """\
slug: test-manual
version: 2
title: Test
owner: builtin
features:
  - {name: charlson.chf, weight: 2}
  - {name: elix.obes, weight: -4}
tiers:
  - {code: A, label: Preferred, max_score: 0, decision: accept}
  - {code: B, label: Rated, max_score: 5, decision: rate, table_rating: C}
  - {code: C, label: Decline, decision: decline}
"""


def test_parses_a_valid_manual() -> None:
    document = parse_manual(VALID)
    assert document.slug == "test-manual"
    assert document.version == 2
    assert document.weights == [2, -4]
    assert document.thresholds == [0, 5]
    assert document.tiers[1].table_rating == "C"


@pytest.mark.parametrize(
    ("mutation", "expected"),
    [
        (("version: 2", "version: two"), "version (line 2): must be an integer"),
        (("weight: -4", "weight: 1.5"), "features[1].weight (line 7): must be an integer"),
        (("max_score: 5", "max_score: -1"), "tiers[1].max_score (line 10): must be greater than the previous"),
        (("decision: rate", "decision: maybe"), "tiers[1].decision (line 10): must be one of"),
        (("elix.obes", "charlson.chf"), "features[1].name (line 7): 'charlson.chf' is listed twice"),
        (("label: Decline, decision", "label: Decline, max_score: 9, decision"),
         "tiers[2].max_score (line 11): the last tier takes every higher score"),
        (("slug: test-manual", "slug: Test Manual"), "slug (line 1): use 2-63 lower-case"),
        (("title: Test\n", ""), "title (line 1): is required"),
    ],
)  # fmt: skip
def test_errors_name_the_field_and_line(mutation: tuple[str, str], expected: str) -> None:
    with pytest.raises(ManualFormatError) as caught:
        parse_manual(VALID.replace(*mutation))
    assert any(problem.startswith(expected) for problem in caught.value.problems), caught.value.problems


def test_unknown_catalog_features_are_refused() -> None:
    with pytest.raises(
        ManualFormatError, match=r"features\[0\]\.name \(line 6\): 'charlson.chf' is not in the feature catalog"
    ):
        parse_manual(VALID, known_features={"elix.obes"})


def test_invalid_yaml_reports_its_line() -> None:
    with pytest.raises(ManualFormatError, match=r"document \(line 3\): not valid YAML"):
        parse_manual("slug: a\nversion: 1\n\ttitle: tab-indented\n")


def test_a_single_tier_is_refused() -> None:
    text = VALID.split("tiers:")[0] + "tiers:\n  - {code: A, label: All, decision: accept}\n"
    with pytest.raises(ManualFormatError, match="at least two tiers"):
        parse_manual(text)


@pytest.mark.parametrize(("score", "index"), [(-3, 0), (0, 0), (1, 1), (5, 1), (6, 2), (100, 2)])
def test_tier_is_the_first_whose_max_score_covers_the_score(score: int, index: int) -> None:
    assert tier_index([0, 5], score) == index


def test_builtin_manuals_match_their_published_weights() -> None:
    manuals = builtin_documents()
    assert set(manuals) == {"charlson-acci", "charlson-quan2011", "elixhauser-vw", "life-debits"}
    acci = {f.name.split(".")[1]: f.weight for f in manuals["charlson-acci"].features}
    # Charlson 1987: 1 point each; 2 for diabwc, hp, rend, canc; 3 for msld; 6 for metacanc, aids.
    assert acci == {
        "ami": 1, "chf": 1, "pvd": 1, "cevd": 1, "dementia": 1, "copd": 1, "rheumd": 1, "pud": 1, "mld": 1,
        "diab": 1, "diabwc": 2, "hp": 2, "rend": 2, "canc": 2, "msld": 3, "metacanc": 6, "aids": 6,
        "acci_points": 1,
    }  # fmt: skip
    quan = {f.name.split(".")[1]: f.weight for f in manuals["charlson-quan2011"].features if f.weight}
    # Quan 2011, Table 3.
    assert quan == {
        "chf": 2, "dementia": 2, "copd": 1, "rheumd": 1, "mld": 2, "diabwc": 1, "hp": 2, "rend": 1,
        "canc": 2, "msld": 4, "metacanc": 6, "aids": 4,
    }  # fmt: skip
    vw = {f.name.split(".")[1]: f.weight for f in manuals["elixhauser-vw"].features}
    assert len(vw) == 31
    # van Walraven 2009, Table 2 (non-zero weights).
    assert {k: v for k, v in vw.items() if v} == {
        "chf": 7, "carit": 5, "valv": -1, "pcd": 4, "pvd": 2, "para": 7, "ond": 6, "cpd": 3, "rf": 5, "ld": 11,
        "lymph": 9, "metacanc": 12, "solidtum": 4, "coag": 3, "obes": -4, "wloss": 6, "fed": 5, "blane": -2,
        "dane": -2, "drug": -7, "depre": -3,
    }  # fmt: skip


def test_charlson_acci_tiers_by_hand() -> None:
    acci = builtin_documents()["charlson-acci"]
    # 72 years old (3 age points) with CHF (1) and diabetes with complications (2): 6 -> D, decline.
    result = evaluate(acci, {"age.acci_points": 3, "charlson.chf": 1, "charlson.diabwc": 1})
    assert (result.score, result.tier.code, result.tier.decision) == (6, "D", "decline")
    # 55 years old (1) with COPD (1): 2 -> B, accept.
    result = evaluate(acci, {"age.acci_points": 1, "charlson.copd": 1})
    assert (result.score, result.tier.code) == (2, "B")
    # 45, healthy: 0 -> A; 65 with a solid tumour: 2 + 2 = 4 -> C, table B.
    assert evaluate(acci, {}).tier.code == "A"
    result = evaluate(acci, {"age.acci_points": 2, "charlson.canc": 1})
    assert (result.tier.code, result.tier.table_rating) == ("C", "B")
