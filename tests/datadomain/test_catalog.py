"""Hand-checked codes for every Quan 2005 category, the hierarchies, age bands and thresholds."""

from __future__ import annotations

from datetime import date

import pytest

from datadomain import catalog
from datadomain.catalog import SubjectRecords, normalise_code

CAT = catalog.current()
AS_OF = date(2026, 6, 30)

# One code per category taken from Quan et al. 2005, Tables 1 and 2 (ICD-10 column).
CHARLSON_CODES = {
    "ami": "I21.4", "chf": "I50.0", "pvd": "I73.9", "cevd": "I63.9", "dementia": "F03", "copd": "J44.9",
    "rheumd": "M05.3", "pud": "K25.0", "mld": "K70.3", "diab": "E11.9", "diabwc": "E11.2", "hp": "G81.9",
    "rend": "N18.5", "canc": "C34.9", "msld": "K72.1", "metacanc": "C78.0", "aids": "B20.0",
}  # fmt: skip
ELIX_CODES = {
    "chf": "I50.9", "carit": "I48.0", "valv": "I35.0", "pcd": "I26.9", "pvd": "I70.2", "hypunc": "I10",
    "hypc": "I15.0", "para": "G82.2", "ond": "G20", "cpd": "J45.9", "diabunc": "E11.9", "diabc": "E11.4",
    "hypothy": "E03.9", "rf": "N18.3", "ld": "K74.6", "pud": "K25.7", "aids": "B22.0", "lymph": "C83.3",
    "metacanc": "C79.5", "solidtum": "C50.9", "rheumd": "M32.1", "coag": "D68.9", "obes": "E66.0",
    "wloss": "E43", "fed": "E87.1", "blane": "D50.0", "dane": "D51.0", "alcohol": "F10.2", "drug": "F11.2",
    "psycho": "F20.0", "depre": "F32.9",
}  # fmt: skip


def values(names: list[str], codes: list[str], born: date | None = None) -> dict[str, int]:
    records = SubjectRecords(birth_date=born, condition_codes=[normalise_code(c) for c in codes])
    return dict(zip(names, catalog.evaluate(CAT, CAT.require(names), records, AS_OF), strict=True))


def test_catalog_has_17_charlson_and_31_elixhauser_categories() -> None:
    names = CAT.names()
    assert sorted(n.split(".")[1] for n in names if n.startswith("charlson.")) == sorted(CHARLSON_CODES)
    assert sorted(n.split(".")[1] for n in names if n.startswith("elix.")) == sorted(ELIX_CODES)


@pytest.mark.parametrize(("category", "code"), sorted(CHARLSON_CODES.items()))
def test_charlson_category_counts_its_code_and_only_its_code(category: str, code: str) -> None:
    names = [n for n in CAT.names() if n.startswith("charlson.")]
    held = {name for name, value in values(names, [code]).items() if value}
    assert held == {f"charlson.{category}"}


@pytest.mark.parametrize(("category", "code"), sorted(ELIX_CODES.items()))
def test_elixhauser_category_counts_its_code_and_only_its_code(category: str, code: str) -> None:
    names = [n for n in CAT.names() if n.startswith("elix.")]
    held = {name for name, value in values(names, [code]).items() if value}
    assert held == {f"elix.{category}"}


@pytest.mark.parametrize(
    ("code", "categories"),
    [("I42.6", {"elix.chf", "elix.alcohol"}), ("K70.3", {"elix.ld", "elix.alcohol"}), ("F31.5", {"elix.psycho",
     "elix.depre"}), ("I13.1", {"elix.hypc", "elix.rf"}), ("I11.0", {"elix.hypc", "elix.chf"})],
)  # fmt: skip
def test_elixhauser_codes_listed_in_two_categories_count_in_both(code: str, categories: set[str]) -> None:
    names = [n for n in CAT.names() if n.startswith("elix.")]
    assert {name for name, value in values(names, [code]).items() if value} == categories


@pytest.mark.parametrize(
    ("codes", "expected"),
    [
        (["K70.3", "K72.1"], {"charlson.mld": 0, "charlson.msld": 1}),
        (["E11.9", "E11.2"], {"charlson.diab": 0, "charlson.diabwc": 1}),
        (["C34.9", "C78.0"], {"charlson.canc": 0, "charlson.metacanc": 1}),
        (["K70.3"], {"charlson.mld": 1, "charlson.msld": 0}),
        (["E11.9"], {"charlson.diab": 1, "charlson.diabwc": 0}),
    ],
)
def test_charlson_hierarchies(codes: list[str], expected: dict[str, int]) -> None:
    assert values(list(expected), codes) == expected


@pytest.mark.parametrize(
    ("codes", "expected"),
    [
        (["E11.9", "E11.4"], {"elix.diabunc": 0, "elix.diabc": 1}),
        (["I10", "I13.0"], {"elix.hypunc": 0, "elix.hypc": 1}),
        (["C50.9", "C79.5"], {"elix.solidtum": 0, "elix.metacanc": 1}),
        (["I10"], {"elix.hypunc": 1, "elix.hypc": 0}),
    ],
)
def test_elixhauser_hierarchies(codes: list[str], expected: dict[str, int]) -> None:
    assert values(list(expected), codes) == expected


@pytest.mark.parametrize(
    ("code", "feature"),
    [("E11.200x001", "charlson.diabwc"), ("e11.900X002", "charlson.diab"), ("I50.900x003", "charlson.chf"),
     ("K7030", "charlson.mld"), ("C78.000x001", "charlson.metacanc")],
)  # fmt: skip
def test_china_clinical_edition_extensions_match_their_icd10_prefix(code: str, feature: str) -> None:
    assert values([feature], [code]) == {feature: 1}


@pytest.mark.parametrize("code", ["C44.9", "E11", "I25.1", "K70.4x", "Z00.0", "I2"])
def test_codes_outside_a_category_do_not_count(code: str) -> None:
    assert values(["charlson.ami", "charlson.canc", "charlson.diab", "charlson.mld"], [code]) == {
        "charlson.ami": 0,
        "charlson.canc": 0,
        "charlson.diab": 0,
        "charlson.mld": 0,
    }


@pytest.mark.parametrize(
    ("born", "points"),
    [
        (date(1976, 7, 1), 0),  # 49 the day before the 50th birthday
        (date(1976, 6, 30), 1),  # 50 on the as-of date
        (date(1966, 7, 1), 1),
        (date(1966, 6, 30), 2),
        (date(1956, 6, 30), 3),
        (date(1946, 7, 1), 3),
        (date(1946, 6, 30), 4),
        (date(1920, 1, 1), 4),
        (date(2000, 1, 1), 0),
    ],
)
def test_acci_age_points_on_the_as_of_date(born: date, points: int) -> None:
    assert values(["age.acci_points"], [], born) == {"age.acci_points": points}


def test_age_in_years_handles_leap_day_birthdays() -> None:
    assert catalog.age_on(date(2000, 2, 29), date(2026, 2, 28)) == 25
    assert catalog.age_on(date(2000, 2, 29), date(2026, 3, 1)) == 26


def test_observation_thresholds_use_the_latest_value_in_the_lookback() -> None:
    names = ["obs.hba1c_ge_6_5", "obs.bmi_ge_30", "obs.sbp_ge_140", "obs.bmi_lt_18_5"]
    records = SubjectRecords(
        birth_date=None,
        observations=[
            ("4548-4", date(2025, 1, 1), 7.2),
            ("17856-6", date(2026, 1, 1), 6.4),  # latest HbA1c: below 6.5
            ("39156-5", date(2026, 5, 1), 30.0),  # exactly 30 counts
            ("85354-9", date(2024, 1, 1), 170),  # outside the 12-month lookback
        ],
    )
    assert catalog.evaluate(CAT, CAT.require(names), records, AS_OF) == [0, 1, 0, 0]


def test_hba1c_counts_at_exactly_6_5_and_not_after_24_months() -> None:
    feature = CAT.require(["obs.hba1c_ge_6_5"])
    recent = SubjectRecords(birth_date=None, observations=[("4548-4", date(2024, 7, 1), 6.5)])
    old = SubjectRecords(birth_date=None, observations=[("4548-4", date(2024, 6, 30), 9.0)])
    assert catalog.evaluate(CAT, feature, recent, AS_OF) == [1]
    assert catalog.evaluate(CAT, feature, old, AS_OF) == [0]


def test_inpatient_admissions_are_counted_in_the_last_12_months() -> None:
    records = SubjectRecords(
        birth_date=None,
        encounters=[
            ("IMP", date(2026, 6, 30)),
            ("IMP", date(2025, 7, 1)),
            ("IMP", date(2025, 6, 30)),  # 365 days before: outside
            ("AMB", date(2026, 1, 1)),
            ("EMER", date(2026, 1, 1)),
        ],
    )
    features = CAT.require(["enc.inpatient_12m", "enc.emergency_12m"])
    assert catalog.evaluate(CAT, features, records, AS_OF) == [2, 1]


def test_catalog_version_changes_when_a_file_changes(tmp_path: pytest.TempPathFactory) -> None:
    import shutil

    folder = tmp_path / "catalog"  # type: ignore[operator]
    shutil.copytree(catalog.HERE, folder, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    assert catalog.load(folder).version == CAT.version
    (folder / "general.yaml").write_text(
        (folder / "general.yaml").read_text().replace("threshold: 6.5", "threshold: 7")
    )
    assert catalog.load(folder).version != CAT.version


def test_unknown_feature_is_refused() -> None:
    with pytest.raises(KeyError):
        CAT.require(["charlson.nope"])


def test_counts_are_capped_at_the_bound_tiering_relies_on() -> None:
    from datetime import date

    from datadomain import catalog as catalog_module
    from datadomain.catalog import FEATURE_VALUE_MAX

    current = catalog_module.current()
    feature = current.features["enc.inpatient_12m"]
    records = catalog_module.SubjectRecords(
        birth_date=date(1960, 1, 1),
        condition_codes=[],
        encounters=[("IMP", date(2026, 6, 1))] * (FEATURE_VALUE_MAX + 5),
        observations=[],
    )
    assert catalog_module.evaluate(current, [feature], records, date(2026, 6, 30)) == [FEATURE_VALUE_MAX]
