"""FHIR R4 bulk NDJSON ingest: ``parse`` (validation), ``writer`` (batched upserts), ``runner`` (files,
checkpoints, quarantine). The management command ``ingest_fhir`` is a thin front end over ``runner``."""
