"""Stream FHIR NDJSON files into the domain store in batches, with checkpoints and a quarantine.

Memory stays constant: a few batches of lines (``batch_size`` lines, at most ``BATCH_MAX_BYTES``) are
held at a time, and no line longer than ``INGEST_MAX_LINE_BYTES`` is ever held whole (see ``source``).
Each batch is one transaction that also advances the file's checkpoint, so after a crash the next run
resumes at the first uncommitted line, and re-running a finished file does nothing.

A damaged file (a truncated or corrupt gzip, a ``.gz`` that is not gzip, a read error) keeps every line
read before the break; the break is quarantined with a reason, listed in the summary, and the run goes
on with the next file.

A record whose subject Patient is not known yet (it came in an earlier file or batch than its Patient,
or from a hospital whose Patient file comes later) is held in the quarantine as ``dangling_subject``,
with the Patient id it waits for; at the end of every run, the held records whose Patient has arrived
are re-read (``Ingester.release_held``). Until then the subject's requests are refused, never answered
on partial records (``datadomain.linkage``).

With ``workers`` > 0, batches are parsed and validated in worker processes (pure Python, no database)
while the main process writes the previous batch, so parsing and the database server each keep a core
busy. Batches are still committed strictly in file order.
"""

from __future__ import annotations

import gc
import hashlib
import multiprocessing
import os
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from multiprocessing.pool import AsyncResult
from pathlib import Path
from typing import NamedTuple

from django.conf import settings
from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from datadomain import mapping
from datadomain.ingest import writer
from datadomain.ingest.parse import ConditionRow, EncounterRow, LineError, ObservationRow, Parser, PatientRow, Row
from datadomain.ingest.source import BREAKS, LineSource, Rejected, file_break
from datadomain.models import IngestBatch, IngestCheckpoint, PatientSource, QuarantinedLine

ANALYZE_AFTER_ROWS = 10_000
BATCH_MAX_BYTES = 32 << 20  # a batch ends after this many bytes of lines, whatever its number of lines
SOURCE_MAX_CHARS = 1000  # IngestCheckpoint.path and QuarantinedLine.source_path
CONFLICT = (
    "version_conflict",
    "a resource with this id and version was already ingested with different content: the stored one is kept",
)
HELD_REASON = "the subject Patient is not in the domain store yet: the record is re-read when it arrives"
RELINKED = (
    "relinked_patient",
    "this Patient id is linked to another resident ID: its records stay with that subject until staff resolve it",
)
DANGLING = "dangling_subject"
TYPES = ("Patient", "Condition", "Encounter", "Observation")
TABLES = {"Patient": writer.PATIENT, "Condition": writer.CONDITION, "Encounter": writer.ENCOUNTER,
          "Observation": writer.OBSERVATION}  # fmt: skip


class Reject(NamedTuple):
    """A line to quarantine: its number, why, and for a held record the Patient id it waits for."""

    number: int
    code: str
    reason: str
    subject_ref: str = ""


@dataclass
class Summary:
    inserted: Counter[str] = field(default_factory=Counter)
    updated: Counter[str] = field(default_factory=Counter)
    unchanged: Counter[str] = field(default_factory=Counter)
    quarantined: Counter[str] = field(default_factory=Counter)  # by reason code
    lines: int = 0
    skipped_lines: int = 0  # already committed by an earlier run
    released: int = 0  # held records re-read once their Patient was known
    files: int = 0
    seconds: float = 0.0
    broken: list[tuple[str, str, int]] = field(default_factory=list)  # (file, break code, line)

    @property
    def resources_per_second(self) -> float:
        return (self.lines / self.seconds) if self.seconds else 0.0

    def lines_text(self) -> list[str]:
        out = [f"{'type':<12} {'new':>10} {'updated':>10} {'unchanged':>10}"]
        for kind in TYPES:
            out.append(f"{kind:<12} {self.inserted[kind]:>10} {self.updated[kind]:>10} {self.unchanged[kind]:>10}")
        out.append(f"held records re-read now that their Patient is known: {self.released}")
        out.append(f"quarantined: {sum(self.quarantined.values())}")
        out.extend(f"  {code}: {count}" for code, count in sorted(self.quarantined.items()))
        out.append(
            f"files: {self.files}, lines read: {self.lines}, lines skipped (already ingested): {self.skipped_lines}"
        )
        out.append(f"seconds: {self.seconds:.1f}, resources/s: {self.resources_per_second:,.0f}")
        if self.broken:
            out.append(
                f"files cut short or unreadable: {len(self.broken)} (the lines before each break were ingested;"
                " the breaks are in the quarantine)"
            )
            out.extend(f"  {source}: {code} at line {number}" for source, code, number in self.broken)
        return out


@dataclass
class Work:
    """One batch of one file on its way through the pipeline."""

    source: str
    checkpoint_pk: int | None  # None: a file that could not even be opened (read again next run)
    lines: list[tuple[int, bytes]]
    last_line: int
    copy: bool
    bytes_read: int
    final: bool
    rejected: list[Rejected] = field(default_factory=list)  # refused while reading, never parsed


def _ready(item: tuple[Work, AsyncResult[ParsedBatch]]) -> tuple[Work, ParsedBatch]:
    return item[0], item[1].get()


@dataclass
class ParsedBatch:
    """One batch after validation: per table the rows to write (or their COPY text), the lines to
    quarantine, and how many in-batch duplicates were superseded. Picklable (crosses processes)."""

    source: str
    last_line: int
    tables: dict[str, writer.Payload]
    rejects: list[Reject]
    superseded: Counter[str]


def parse_batch(parser: Parser, source: str, lines: list[tuple[int, bytes]], last_line: int, copy: bool) -> ParsedBatch:
    """Validate ``lines``. The same resource twice in a batch keeps the newer version (the same version with
    other content is a conflict: the first is kept); the same resident ID under several Patient ids links
    them all to one subject (record linkage, see the writer). With ``copy``, rows are turned into PostgreSQL
    COPY text here."""
    rejects: list[Reject] = []
    superseded: Counter[str] = Counter()
    buckets: dict[str, dict[str, tuple[int, Row]]] = {kind: {} for kind in TYPES}
    for number, raw in lines:
        try:
            row = parser.parse(raw)
        except LineError as reject:
            rejects.append(Reject(number, reject.code, reject.reason))
            continue
        kind = _KINDS[type(row)]
        bucket = buckets[kind]
        seen = bucket.get(row.resource_id)
        if seen is not None:
            if (row.version_id, row.last_updated) == (seen[1].version_id, seen[1].last_updated) and row != seen[1]:
                rejects.append(Reject(number, *CONFLICT))
                continue
            superseded[kind] += 1
            if (row.version_id, row.last_updated) <= (seen[1].version_id, seen[1].last_updated):
                continue
        bucket[row.resource_id] = (number, row)
    tables = {
        kind: writer.Payload.of(
            TABLES[kind], [row for _, row in bucket.values()], [n for n, _ in bucket.values()], copy
        )
        for kind, bucket in buckets.items()
        if bucket
    }
    return ParsedBatch(source, last_line, tables, rejects, superseded)


_KINDS: dict[type, str] = {PatientRow: "Patient", ConditionRow: "Condition", EncounterRow: "Encounter",
                           ObservationRow: "Observation"}  # fmt: skip
_worker_parser: Parser | None = None


def _init_worker(pepper: bytes, today: date, local_systems: frozenset[str]) -> None:
    global _worker_parser
    _worker_parser = Parser(pepper=pepper, today=today, local_systems=local_systems)
    # A parser process only ever holds a few batches of short-lived, acyclic rows: the objects inherited
    # from the parent (Django, the catalog) need no scanning, and collecting every 700 new containers
    # would cost a tenth of the parse.
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def _parse_in_worker(source: str, lines: list[tuple[int, bytes]], last_line: int, copy: bool) -> ParsedBatch:
    assert _worker_parser is not None
    return parse_batch(_worker_parser, source, lines, last_line, copy)


def input_files(paths: Iterable[str | Path]) -> list[Path]:
    """Files named on the command line, and ``*.ndjson`` / ``*.ndjson.gz`` under named directories.
    Patient files come first so that the records of a bulk export find their subjects."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(p for p in path.rglob("*") if p.is_file() and p.name.endswith((".ndjson", ".ndjson.gz")))
        elif path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"no such file or directory: {path}")
    return sorted(set(found), key=lambda p: ("patient" not in p.name.lower(), str(p)))


def fingerprint(path: Path) -> str:
    with path.open("rb") as handle:
        head = hashlib.sha256(handle.read(1 << 20)).hexdigest()[:32]
    return f"{path.stat().st_size}:{head}"


def source_name(path: Path) -> str:
    """How a file is named in checkpoints and the quarantine: its absolute path, as text the database
    takes (a name that is not UTF-8 gets replacement characters) and that fits the columns."""
    name = os.fsencode(path.resolve()).decode("utf-8", errors="replace")
    if len(name) > SOURCE_MAX_CHARS:
        digest = hashlib.sha256(name.encode()).hexdigest()
        name = f"{name[: SOURCE_MAX_CHARS - len(digest) - 3]}...{digest}"
    return name


class Ingester:
    """Reads, validates and writes FHIR NDJSON; see the module docstring."""

    def __init__(
        self,
        *,
        batch_size: int = 10_000,
        restart: bool = False,
        workers: int = 0,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.pepper = str(settings.SUBJECT_PEPPER).encode()
        self.today = timezone.localdate()
        self.parser = Parser(pepper=self.pepper, today=self.today, local_systems=mapping.local_systems())
        self.batch_size = batch_size
        self.max_line_bytes = int(settings.INGEST_MAX_LINE_BYTES)
        self.restart = restart
        self.workers = workers
        self.on_progress = on_progress or (lambda _bytes, _lines: None)
        self.summary = Summary()

    def run(self, paths: Iterable[str | Path]) -> Summary:
        started = time.monotonic()
        files = input_files(paths)
        pool = None
        if self.workers > 0:
            context = multiprocessing.get_context("fork")
            pool = context.Pool(
                self.workers, initializer=_init_worker, initargs=(self.pepper, self.today, self.parser.local_systems)
            )
        try:
            # One pipeline across all files: the database never waits for a new file's first batch.
            inflight: deque[tuple[Work, AsyncResult[ParsedBatch]]] = deque()
            for path in files:
                for work in self._work(path):
                    if pool is None:
                        self._finish(work, parse_batch(self.parser, work.source, work.lines, work.last_line, work.copy))
                        continue
                    args = (work.source, work.lines, work.last_line, work.copy)
                    inflight.append((work, pool.apply_async(_parse_in_worker, args)))
                    # Keep every worker busy plus one batch ready, no more: memory stays bounded.
                    while len(inflight) > self.workers + 1:
                        self._finish(*_ready(inflight.popleft()))
            while inflight:
                self._finish(*_ready(inflight.popleft()))
        finally:
            if pool is not None:
                pool.terminate()
                pool.join()
        self.release_held()
        if connection.vendor == "postgresql" and sum(self.summary.inserted.values()) >= ANALYZE_AFTER_ROWS:
            # Fresh planner statistics after a bulk load (about a second per million rows), so that the
            # per-subject and per-chunk feature queries use their indexes before autovacuum catches up.
            with connection.cursor() as cursor:
                cursor.execute(f"ANALYZE {', '.join(table.name for table in TABLES.values())}")
        if self.summary.inserted["Condition"] or self.summary.updated["Condition"]:
            mapping.refresh()  # the queue of local codes and texts, with their records
        self.summary.seconds = time.monotonic() - started
        return self.summary

    def _work(self, path: Path) -> Iterator[Work]:
        """The batches of one file still to ingest; the last one is marked ``final``."""
        key = source_name(path)
        copy = connection.vendor == "postgresql"
        try:
            print_, size = fingerprint(path), path.stat().st_size
        except OSError:  # gone, or no permission: no checkpoint, so the next run tries again
            yield Work(key, None, [], 0, copy, 0, final=True, rejected=[file_break("unreadable_file", 0)])
            return
        checkpoint, _ = IngestCheckpoint.objects.get_or_create(path=key, defaults={"fingerprint": print_})
        if checkpoint.fingerprint != print_ or self.restart:
            checkpoint.fingerprint, checkpoint.lines_done, checkpoint.completed = print_, 0, False
            checkpoint.save(update_fields=["fingerprint", "lines_done", "completed", "updated_at"])
        if checkpoint.completed:  # the same file, finished before: nothing to read, but a break still stands
            self.summary.skipped_lines += checkpoint.lines_done
            self.summary.broken.extend((key, code, number) for code, number in _file_breaks(key)[:1])
            yield Work(key, checkpoint.pk, [], checkpoint.lines_done, copy, size, final=True)
            return
        if checkpoint.lines_done == 0:
            # Read from the start (a new file at this path, --restart, or one unreadable before): the breaks
            # recorded before no longer stand. Reading records them again if they do.
            _file_breaks(key).update(resolved_at=timezone.now())
        try:
            source = LineSource(path, max_line_bytes=self.max_line_bytes)
        except OSError:  # could not be opened after all (it could be fingerprinted a moment ago)
            yield Work(key, None, [], 0, copy, 0, final=True, rejected=[file_break("unreadable_file", 0)])
            return
        previous: Work | None = None
        position = 0
        with source:
            for lines, rejected, last_line in self._batches(source, checkpoint.lines_done):
                self.summary.lines += len(lines) + len(rejected)
                if previous is not None:
                    yield previous
                read, position = source.position() - position, source.position()
                previous = Work(key, checkpoint.pk, lines, last_line, copy, read, final=False, rejected=rejected)
        if previous is None:
            previous = Work(key, checkpoint.pk, [], checkpoint.lines_done, copy, 0, final=True)
        previous.final = True
        previous.bytes_read += size - position
        yield previous

    def _finish(self, work: Work, parsed: ParsedBatch) -> None:
        if work.lines or work.rejected:
            self.commit(parsed, work.lines, work.checkpoint_pk, work.rejected)
        self.summary.broken.extend((work.source, r.code, r.number) for r in work.rejected if r.code in BREAKS)
        if work.final and work.checkpoint_pk is not None:
            IngestCheckpoint.objects.filter(pk=work.checkpoint_pk).update(completed=True, updated_at=timezone.now())
            self.summary.files += 1
        self.on_progress(work.bytes_read, len(work.lines))

    def _batches(self, source: LineSource, skip: int) -> Iterator[tuple[list[tuple[int, bytes]], list[Rejected], int]]:
        """(lines to parse, lines refused while reading, number of the last line read) per batch."""
        batch: list[tuple[int, bytes]] = []
        rejected: list[Rejected] = []
        size = 0
        number = 0
        for item in source:
            if isinstance(item, Rejected):
                number = item.number
                if 0 < number <= skip:
                    self.summary.skipped_lines += 1
                    continue
                rejected.append(item)
                size += len(item.raw)
            else:
                number, line = item
                if number <= skip:
                    self.summary.skipped_lines += 1
                    continue
                if line[:1] == b"{" or line.strip():  # a blank line is skipped; the test avoids a copy
                    batch.append(item)
                    size += len(line)
            if len(batch) + len(rejected) >= self.batch_size or size >= BATCH_MAX_BYTES:
                yield batch, rejected, max(number, skip)
                batch, rejected, size = [], [], 0
        if batch or rejected or number > skip:
            yield batch, rejected, max(number, skip)

    def commit(
        self,
        parsed: ParsedBatch,
        lines: list[tuple[int, bytes]],
        checkpoint_pk: int | None,
        rejected: Iterable[Rejected] = (),
    ) -> None:
        """Write one batch, its quarantined lines and the checkpoint in one transaction."""
        with transaction.atomic():
            rejects = self.write(parsed) if lines else []
            raws = dict(lines)
            entries = [_quarantine(parsed.source, raws[reject.number], reject) for reject in rejects]
            self.summary.quarantined.update(reject.code for reject in rejects)
            breaks: list[QuarantinedLine] = []
            for line in rejected:
                self.summary.quarantined[line.code] += 1
                entry = _quarantine(parsed.source, line.raw, Reject(line.number, line.code, line.reason))
                (breaks if line.code in BREAKS else entries).append(entry)
            if entries:
                QuarantinedLine.objects.bulk_create(entries, ignore_conflicts=True)
            if breaks:
                # A break found again (a file read again) is open again, whatever became of it before.
                QuarantinedLine.objects.bulk_create(
                    breaks,
                    update_conflicts=True,
                    unique_fields=["source_path", "line_number"],
                    update_fields=["reason_code", "reason", "raw_line", "resolved_at"],
                )
            if checkpoint_pk is not None:
                IngestCheckpoint.objects.filter(pk=checkpoint_pk).update(
                    lines_done=parsed.last_line, updated_at=timezone.now()
                )

    def write(self, parsed: ParsedBatch) -> list[Reject]:
        """Write the valid rows (in the caller's transaction); return every line to quarantine."""
        rejects = list(parsed.rejects)
        self.summary.unchanged.update(parsed.superseded)
        batch_writer = writer.BatchWriter(IngestBatch.objects.create().pk)
        for kind in TYPES:  # patients first: records resolve their subject against them
            payload = parsed.tables.get(kind)
            if payload is None:
                continue
            written = batch_writer.write(TABLES[kind], payload)
            rejects.extend(Reject(number, DANGLING, HELD_REASON, reference) for number, reference in written.dangling)
            rejects.extend(Reject(number, *RELINKED) for number in written.relinked)
            rejects.extend(Reject(number, *CONFLICT) for number in written.conflicts)
            self.summary.inserted[kind] += written.inserted
            self.summary.updated[kind] += written.updated
            refused = len(written.dangling) + len(written.relinked) + len(written.conflicts)
            self.summary.unchanged[kind] += len(payload.lines) - refused - written.inserted - written.updated
        return rejects

    def release_held(self) -> int:
        """Re-read the held records (``dangling_subject`` lines) whose Patient is linked by now, in batches:
        from now on they count for their subject, and the batch stamps of the rows they add make the
        subject's stored vectors stale, so they are recomputed on next use (``datadomain.freshness``). A
        line that fails again keeps the new reason. Run at the end of every ingest and after a Patient
        line is re-processed; one index scan of the open held lines when there is nothing to do."""
        linked = QuarantinedLine.objects.filter(
            reason_code=DANGLING,
            resolved_at__isnull=True,
            subject_ref__in=PatientSource.objects.values("resource_id"),
        )
        last = 0
        while chunk := list(linked.filter(pk__gt=last).order_by("pk").values_list("pk", "raw_line")[: self.batch_size]):
            last = chunk[-1][0]
            # Numbered by their quarantine id: lines of several files are read as one batch.
            lines = [(pk, raw.encode("utf-8")) for pk, raw in chunk]
            parsed = parse_batch(self.parser, "", lines, 0, connection.vendor == "postgresql")
            with transaction.atomic():
                rejects = self.write(parsed)
                failed = {reject.number for reject in rejects}
                released = [pk for pk, _ in lines if pk not in failed]
                QuarantinedLine.objects.filter(pk__in=released).update(resolved_at=timezone.now())
                for reject in rejects:
                    QuarantinedLine.objects.filter(pk=reject.number).update(
                        reason_code=reject.code, reason=reject.reason[:300], subject_ref=reject.subject_ref
                    )
            self.summary.released += len(released)
        return self.summary.released


def _file_breaks(source: str) -> QuerySet[QuarantinedLine, tuple[str, int]]:
    """The open breaks recorded for a file (it was cut short, damaged or unreadable)."""
    return QuarantinedLine.objects.filter(
        source_path=source, reason_code__in=list(BREAKS), resolved_at__isnull=True
    ).values_list("reason_code", "line_number")


def _quarantine(source: str, raw: bytes, reject: Reject) -> QuarantinedLine:
    return QuarantinedLine(
        source_path=source,
        line_number=reject.number,
        reason_code=reject.code,
        reason=reject.reason[:300],
        subject_ref=reject.subject_ref,
        # PostgreSQL text cannot hold NUL; a line with one is binary garbage anyway.
        raw_line=raw.decode("utf-8", errors="replace").replace("\x00", "\ufffd").rstrip("\r\n"),
    )
