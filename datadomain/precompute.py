"""Bulk precompute of encrypted feature vectors, using every core for the Paillier encryption.

The parent process does all database work, set-based per chunk of patients: records stamps of the
chunk, which stored vectors are still fresh, features of the stale ones (a few queries). Worker
processes only encrypt (no database, no Django state): they receive the modulus once and integer
vectors, and return ciphertexts. Each chunk is then upserted in one statement, with the plaintext values
the ciphertexts were made from (``FeatureValues``, read by the data domain alone) in a second.

Several machines share the work with a ``Shard`` each: every subject belongs to exactly one of N shards,
chosen by its subject key, so N runs against one database cover every subject once between them.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from multiprocessing.pool import AsyncResult
from typing import Any

import phe
from django.db import connection, connections, transaction
from django.db.models import F, QuerySet, Value
from django.db.models.functions import StrIndex, Substr

from datadomain import catalog
from datadomain.encryption import Stored, encrypt_vector, key_fingerprint, pack, to_pair, unpack
from datadomain.extraction import features_for_patients
from datadomain.freshness import records_stamps
from datadomain.models import EncryptedFeatureVector, FeatureValues, Patient

_worker_key: phe.PaillierPublicKey | None = None


def _init_worker(n: int) -> None:
    global _worker_key
    _worker_key = phe.PaillierPublicKey(n)


def _encrypt(job: tuple[int, list[int]]) -> tuple[int, list[tuple[int, int]]]:
    patient_id, values = job
    assert _worker_key is not None
    return patient_id, [to_pair(number) for number in encrypt_vector(_worker_key, values)]


@dataclass
class PrecomputeResult:
    subjects: int = 0
    encrypted: int = 0
    already_fresh: int = 0


# Hex digits in the order of their value from 1: a digit's position is its value. '0' is not found, so
# it counts 0, and so would any other character: every key, even a malformed one, is in exactly one share.
_HEX_DIGITS = "123456789abcdef"
# Seven hex digits (28 bits) stay within PostgreSQL's 32-bit integer, so the expression needs no casts;
# the bias of 2**28 mod N over 2**28 subjects is below one in a million for N up to 256.
_SHARD_DIGITS = 7


@dataclass(frozen=True)
class Shard:
    """Share ``index`` of ``count``: the subjects whose subject key, read as hex, has its first seven
    digits equal to ``index`` modulo ``count``. The subject key is an HMAC of the resident ID, so shards are
    even in size and the same on every machine and in every run, whatever order subjects were loaded in."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index}/{self.count}: needs N >= 1 and K from 0 to N-1")

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"K/N"``, as given on the command line."""
        index, slash, count = text.partition("/")
        if not slash or not index.strip().isdigit() or not count.strip().isdigit():
            raise ValueError(f"shard {text!r}: expected K/N, two whole numbers such as 0/4")
        return cls(int(index), int(count))

    def owns(self, subject_key: str) -> bool:
        """The same rule as ``subjects`` (which runs it in the database), for one lower-case hex key."""
        return int(subject_key[:_SHARD_DIGITS], 16) % self.count == self.index

    def subjects(self) -> QuerySet[Patient]:
        """The shard's patients. The digits are read in SQL (substring and position, the same on
        PostgreSQL and SQLite), so each chunk's query and the count stay in the database."""
        if self.count == 1:
            return Patient.objects.all()
        digits = [StrIndex(Value(_HEX_DIGITS), Substr(F("subject_key"), i, 1)) for i in range(1, _SHARD_DIGITS + 1)]
        value: Any = digits[0]
        for digit in digits[1:]:
            value = value * 16 + digit
        return Patient.objects.alias(shard=value % self.count).filter(shard=self.index)


def _chunks(chunk_size: int, limit: int | None, shard: Shard) -> Iterator[list[int]]:
    last, remaining = 0, limit if limit is not None else -1
    subjects = shard.subjects()
    while remaining:
        size = chunk_size if remaining < 0 else min(chunk_size, remaining)
        ids = list(subjects.filter(pk__gt=last).order_by("pk").values_list("pk", flat=True)[:size])
        if not ids:
            return
        yield ids
        last, remaining = ids[-1], remaining - len(ids) if remaining > 0 else -1


@dataclass
class _Chunk:
    ids: list[int]
    stamps: dict[int, int]
    existing: dict[int, tuple[int, Stored]]
    encrypted: AsyncResult[list[tuple[int, list[tuple[int, int]]]]] | None
    # The plaintexts being encrypted, and the values stored at each patient's current stamp.
    values: dict[int, list[int]]
    existing_values: dict[int, dict[str, int]]


def precompute(
    *,
    public_key: phe.PaillierPublicKey,
    feature_names: Sequence[str],
    as_of: date,
    processes: int = 2,
    chunk_size: int = 200,
    limit: int | None = None,
    shard: Shard = Shard(),
    on_progress: Callable[[int], None] | None = None,
) -> PrecomputeResult:
    """Make sure every patient of ``shard`` (all by default; or the shard's first ``limit`` by id) has a
    fresh vector of ``feature_names`` under ``public_key`` on ``as_of``. While the workers encrypt one
    chunk, this process stores the previous one and extracts the next."""
    current = catalog.current()
    current.require(feature_names)
    job = _Job(list(feature_names), current, key_fingerprint(public_key), as_of)
    result = PrecomputeResult()
    if not connection.in_atomic_block:
        # Forked workers never use the database; closing first means they do not even inherit a socket.
        connections.close_all()
    context = multiprocessing.get_context("fork")
    with context.Pool(processes, initializer=_init_worker, initargs=(public_key.n,)) as pool:
        pending: _Chunk | None = None
        for ids in _chunks(chunk_size, limit, shard):
            chunk = job.prepare(ids, pool, result)
            if pending is not None:
                job.store(pending, result, on_progress)
            pending = chunk
        if pending is not None:
            job.store(pending, result, on_progress)
    return result


@dataclass
class _Job:
    names: list[str]
    catalog: catalog.Catalog
    key_id: str
    as_of: date

    def prepare(self, ids: list[int], pool: Any, result: PrecomputeResult) -> _Chunk:
        """Find the stale vectors of a chunk, extract their features and hand them to the workers."""
        stamps = records_stamps(ids)
        existing = {
            patient_id: (stamp, unpack(names, exponents, bytes(blob)))
            for patient_id, stamp, names, exponents, blob in EncryptedFeatureVector.objects.filter(
                patient_id__in=ids, catalog_version=self.catalog.version, key_id=self.key_id, as_of=self.as_of
            ).values_list("patient_id", "records_stamp", "features", "exponents", "ciphertexts")
        }
        values = {
            patient_id: dict(stored)
            for patient_id, stamp, stored in FeatureValues.objects.filter(
                patient_id__in=ids, catalog_version=self.catalog.version, as_of=self.as_of
            ).values_list("patient_id", "records_stamp", "values")
            if stamp == stamps[patient_id]
        }
        # A vector without its plaintext values at the same stamp (stored before the domain kept them) is
        # made again with them: the request path then needs no exponentiation for its tag.
        stale = [
            pk
            for pk in ids
            if pk not in existing
            or existing[pk][0] != stamps[pk]
            or any(n not in existing[pk][1] or n not in values.get(pk, {}) for n in self.names)
        ]
        result.subjects += len(ids)
        result.already_fresh += len(ids) - len(stale)
        vectors = features_for_patients(stale, self.names, self.as_of, self.catalog) if stale else {}
        encrypted = pool.map_async(_encrypt, list(vectors.items()), chunksize=4) if vectors else None
        return _Chunk(ids, stamps, existing, encrypted, vectors, values)

    def store(self, chunk: _Chunk, result: PrecomputeResult, on_progress: Callable[[int], None] | None) -> None:
        rows, plain = [], []
        for patient_id, stored in chunk.encrypted.get() if chunk.encrypted is not None else []:
            kept = chunk.existing.get(patient_id)
            merged = dict(kept[1]) if kept is not None and kept[0] == chunk.stamps[patient_id] else {}
            merged.update(zip(self.names, stored, strict=True))
            known = chunk.existing_values.get(patient_id, {}) if merged.keys() - set(self.names) else {}
            plain.append(
                FeatureValues(
                    patient_id=patient_id,
                    catalog_version=self.catalog.version,
                    as_of=self.as_of,
                    records_stamp=chunk.stamps[patient_id],
                    values={**known, **dict(zip(self.names, map(int, chunk.values[patient_id]), strict=True))},
                )
            )
            names, exponents, blob = pack(merged)
            rows.append(
                EncryptedFeatureVector(
                    patient_id=patient_id,
                    catalog_version=self.catalog.version,
                    key_id=self.key_id,
                    as_of=self.as_of,
                    records_stamp=chunk.stamps[patient_id],
                    features=names,
                    exponents=exponents,
                    ciphertexts=blob,
                )
            )
        with transaction.atomic():  # the ciphertexts and their plaintexts together, never one without the other
            EncryptedFeatureVector.objects.bulk_create(
                rows,
                update_conflicts=True,
                unique_fields=["patient", "catalog_version", "key_id", "as_of"],
                update_fields=["records_stamp", "features", "exponents", "ciphertexts", "computed_at"],
            )
            FeatureValues.objects.bulk_create(
                plain,
                update_conflicts=True,
                unique_fields=["patient", "catalog_version", "as_of"],
                update_fields=["records_stamp", "values", "computed_at"],
            )
        result.encrypted += len(rows)
        if on_progress is not None:
            on_progress(len(chunk.ids))
