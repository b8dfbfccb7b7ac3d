"""Set-based feature extraction: a handful of queries for a whole batch of subjects.

For a batch of patient ids this runs one query per record type (conditions, encounters, observations)
plus one for birth dates, groups the rows in memory by patient and evaluates the catalog. The cost is
independent of how many subjects are in the batch; callers chunk very large batches.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date, timedelta

from datadomain import catalog as catalog_module
from datadomain import mapping
from datadomain.catalog import Catalog, Feature, SubjectRecords
from datadomain.models import Condition, Encounter, Observation, Patient

VALID_ENCOUNTER_EXCLUDED = ("entered-in-error", "cancelled", "planned")
VALID_OBSERVATION = ("final", "amended", "corrected")


def _lookback(features: Sequence[Feature], kind: str) -> int | None:
    """The longest lookback of the requested features of ``kind`` (None: none requested, 0: unlimited)."""
    days = [f.lookback_days or 0 for f in features if f.kind == kind]
    if not days:
        return None
    return 0 if 0 in days else max(days)


def records_for(patient_ids: Sequence[int], features: Sequence[Feature], as_of: date) -> dict[int, SubjectRecords]:
    """Each patient's counting records up to ``as_of``, loading only what ``features`` need."""
    codes: dict[int, list[str]] = defaultdict(list)
    encounters: dict[int, list[tuple[str, date]]] = defaultdict(list)
    observations: dict[int, list[tuple[str, date, float]]] = defaultdict(list)
    if any(f.kind == "condition" for f in features):
        # Which statuses count is a catalog rule (catalog.yaml `reading`), so changing it makes a new version.
        not_counting = catalog_module.current().not_counting_verification
        rows = (
            Condition.objects.filter(patient_id__in=patient_ids)
            .exclude(verification_status__in=not_counting)
            .exclude(onset_date__gt=as_of)
            .values_list("patient_id", "code", "local_source", "local_code")
            .distinct()
        )
        local: list[tuple[int, tuple[str, str]]] = []
        for patient_id, code, local_source, local_code in rows:
            if code:
                codes[patient_id].extend(code.split())  # every ICD-10-family code of the Condition
            else:
                local.append((patient_id, (local_source, local_code)))
        if local:  # local codes and diagnosis texts, through the source's mapping table (datadomain.mapping)
            mapped = mapping.active_map(key for _, key in local)
            for patient_id, key in local:
                codes[patient_id].extend(mapped.get(key, ()))
    lookback = _lookback(features, "encounter_count")
    if lookback is not None:
        query = Encounter.objects.filter(patient_id__in=patient_ids, period_start__lte=as_of).exclude(
            status__in=VALID_ENCOUNTER_EXCLUDED
        )
        if lookback:
            query = query.filter(period_start__gt=as_of - timedelta(days=lookback))
        for patient_id, cls, start in query.values_list("patient_id", "class_code", "period_start"):
            encounters[patient_id].append((cls, start))
    lookback = _lookback(features, "observation_threshold")
    if lookback is not None:
        loinc = sorted({code for f in features for code in f.loinc})
        obs = Observation.objects.filter(
            patient_id__in=patient_ids, code__in=loinc, status__in=VALID_OBSERVATION, effective_date__lte=as_of
        )
        if lookback:
            obs = obs.filter(effective_date__gt=as_of - timedelta(days=lookback))
        for patient_id, code, day, value in obs.values_list("patient_id", "code", "effective_date", "value"):
            observations[patient_id].append((code, day, value))
    births = dict(Patient.objects.filter(pk__in=patient_ids).values_list("pk", "birth_date"))
    return {
        pk: SubjectRecords(
            birth_date=births[pk],
            condition_codes=codes.get(pk, ()),
            encounters=encounters.get(pk, ()),
            observations=sorted(observations.get(pk, ()), key=lambda item: item[1]),
        )
        for pk in patient_ids
        if pk in births
    }


def features_for_patients(
    patient_ids: Sequence[int], feature_names: Sequence[str], as_of: date, catalog: Catalog | None = None
) -> dict[int, list[int]]:
    """Feature vectors (in ``feature_names`` order) of the given patients; unknown ids are left out."""
    catalog = catalog or catalog_module.current()
    features = catalog.require(feature_names)
    records = records_for(patient_ids, features, as_of)
    return {pk: catalog_module.evaluate(catalog, features, rec, as_of) for pk, rec in records.items()}
