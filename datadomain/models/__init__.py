"""The data domain's tables: identity, raw records, quarantine, consent and encrypted features.

Raw-record models never leave this app: an import-linter contract forbids ``insurer_portal`` and
``underwriting`` from importing this package. Other apps use ``datadomain.services`` and
``datadomain.selectors``, which return dataclasses.
"""

from datadomain.models.consent import Consent
from datadomain.models.features import EncryptedFeatureVector, FeatureValues
from datadomain.models.identity import Patient, PatientSource
from datadomain.models.ingest import IngestBatch, IngestCheckpoint, QuarantinedLine
from datadomain.models.keys import ComparisonGrant, CustodianKey
from datadomain.models.mapping import CodeMapping, UnmappedCode
from datadomain.models.records import Condition, Encounter, Observation

__all__ = [
    "CodeMapping",
    "ComparisonGrant",
    "Condition",
    "Consent",
    "CustodianKey",
    "Encounter",
    "EncryptedFeatureVector",
    "FeatureValues",
    "IngestBatch",
    "IngestCheckpoint",
    "Observation",
    "Patient",
    "PatientSource",
    "QuarantinedLine",
    "UnmappedCode",
]
