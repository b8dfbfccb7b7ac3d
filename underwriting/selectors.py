from __future__ import annotations

import math
import uuid
from collections import defaultdict
from collections.abc import Callable, Collection, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache, lru_cache
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Count, F, Q, QuerySet
from django.db.models.functions import TruncDate
from django.db.models.query import ModelIterable, ValuesListIterable
from django.utils import timezone

from datadomain import selectors as domain
from underwriting.manual_format import ManualDocument, parse_manual
from underwriting.models import FlagKind, MisuseFlag, RatingManual, RejectReason, RequestStatus, UnderwritingRequest

# --- queries built once per process ----------------------------------------------------------------


@dataclass(frozen=True)
class _Statement:
    sql: str
    slots: tuple[int | None, ...]  # per parameter: the argument it takes, or None for a constant
    constants: tuple[Any, ...]
    model: Any  # the model of model rows, None for plain rows
    names: tuple[str, ...]  # model rows: the fields in column order
    converters: tuple[tuple[int, tuple[Any, ...], Any], ...]  # the ORM's, per column that has some


_statements: dict[Hashable, _Statement | None] = {}


def _probe(value: Any, index: int) -> Any:
    """A value of ``value``'s type that no query holds as a constant, to find where argument ``index`` goes."""
    if isinstance(value, bool):
        raise TypeError("a boolean cannot be told from a constant")
    if isinstance(value, int):
        return -(10**15) - index
    if isinstance(value, str):
        return f"\x1fprobe-{index}\x1f"
    if isinstance(value, uuid.UUID):
        return uuid.UUID(int=10**30 + index)
    if isinstance(value, datetime):
        return datetime(1901, 1, 1, 0, 0, index, tzinfo=UTC)
    raise TypeError(f"no probe for {type(value).__name__}")


def _prepare(build: Callable[..., QuerySet[Any, Any]], args: Sequence[Any]) -> _Statement | None:
    """``build(*args)``'s SQL with the arguments' places found by probing, and the converters its columns
    need; None when its rows need more of the ORM (related rows, annotations on model rows) or an argument
    was not found exactly once."""
    probes = [_probe(arg, index) for index, arg in enumerate(args)]
    queryset = build(*probes)
    compiler = queryset.query.get_compiler(queryset.db)
    sql, params = compiler.as_sql()
    slots: list[int | None] = []
    for param in params:
        found = [i for i, probe in enumerate(probes) if type(param) is type(probe) and param == probe]
        slots.append(found[0] if found else None)
    if sorted(slot for slot in slots if slot is not None) != list(range(len(args))):
        return None
    converters = tuple(
        (index, tuple(functions), expression)
        for index, (functions, expression) in compiler.get_converters(
            [column for column, _, _ in compiler.select]
        ).items()
    )
    model, names = None, ()
    if queryset._iterable_class is ModelIterable:
        if compiler.annotation_col_map or (compiler.klass_info or {}).get("related_klass_infos"):
            return None
        model, names = queryset.model, tuple(column.target.attname for column, _, _ in compiler.select)
    elif queryset._iterable_class is not ValuesListIterable:
        return None
    constants = tuple(None if slot is not None else param for slot, param in zip(slots, params, strict=True))
    return _Statement(str(sql), tuple(slots), constants, model, names, converters)


def _converted(
    row: tuple[Any, ...], converters: Sequence[tuple[int, Sequence[Any], Any]], connection: Any
) -> tuple[Any, ...]:
    values = list(row)
    for index, functions, expression in converters:
        for function in functions:
            values[index] = function(values[index], expression, connection)
    return tuple(values)


def prepared_rows(key: Hashable, build: Callable[..., QuerySet[Any, Any]], *args: Any) -> list[Any]:
    """``list(build(*args))``, where ``build`` makes a model or ``values_list`` query from scalar arguments
    (ints, strings, UUIDs, aware date-times) that each become one parameter, as they are: ``build`` must
    neither compute with them (a computed value is not found, and the ORM is used each time) nor branch on
    them (the branch taken for the probe values would be taken for every value). On PostgreSQL the SQL is
    built once per process under ``key`` (one key per query shape) and only run after that, its rows
    converted as the ORM would: for the small reads of every API call, building a query costs more CPU than
    running it. Elsewhere it is the ORM's query each time."""
    connection = connections[DEFAULT_DB_ALIAS]
    if connection.vendor != "postgresql":
        return list(build(*args))
    if key not in _statements:
        _statements[key] = _prepare(build, args)
    statement = _statements[key]
    if statement is None:
        return list(build(*args))
    pairs = zip(statement.slots, statement.constants, strict=True)
    params = [args[slot] if slot is not None else constant for slot, constant in pairs]
    with connection.cursor() as cursor:
        cursor.execute(statement.sql, params)
        rows: list[Any] = cursor.fetchall()
    if statement.converters:
        rows = [_converted(row, statement.converters, connection) for row in rows]
    if statement.model is None:
        return rows
    return [statement.model.from_db(DEFAULT_DB_ALIAS, statement.names, row) for row in rows]


def known_feature_names() -> set[str]:
    return set(domain.catalog_feature_names())


def manual_for_use(*, slug: str, insurer_slug: str) -> RatingManual | None:
    """The newest approved version of ``slug`` that this insurer may use (built-in or its own)."""
    return (
        RatingManual.objects.filter(slug=slug, status=RatingManual.Status.APPROVED)
        .filter(Q(owner="builtin") | Q(owner=insurer_slug))
        .order_by("-version")
        .defer("document", "parsed")  # manual_document() parses the text once per process
        .first()
    )


def manuals_for_use(*, slugs: Collection[str], insurer_slug: str) -> dict[str, RatingManual]:
    """:func:`manual_for_use` for several slugs in one query: slug -> newest approved version it may use."""
    if len(set(slugs)) == 1:  # a single submission's: the same statement each time
        [slug] = set(slugs)
        rows: Iterable[RatingManual] = prepared_rows("manuals_for_use:1", _one_manual_query, slug, insurer_slug)
    else:
        rows = _manuals_query(*set(slugs), insurer_slug=insurer_slug)
    newest: dict[str, RatingManual] = {}
    for manual in rows:
        newest.setdefault(manual.slug, manual)
    return newest


def _manuals_query(*slugs: str, insurer_slug: str) -> QuerySet[RatingManual]:
    return (
        RatingManual.objects.filter(slug__in=slugs, status=RatingManual.Status.APPROVED)
        .filter(Q(owner="builtin") | Q(owner=insurer_slug))
        .order_by("slug", "-version")
        .defer("document", "parsed")
    )


def _one_manual_query(slug: str, insurer_slug: str) -> QuerySet[RatingManual]:
    return _manuals_query(slug, insurer_slug=insurer_slug)


def manuals_for_insurer(*, insurer_slug: str) -> QuerySet[RatingManual]:
    return RatingManual.objects.filter(status=RatingManual.Status.APPROVED).filter(
        Q(owner="builtin") | Q(owner=insurer_slug)
    )


def manual_document(manual: RatingManual) -> ManualDocument:
    """The parsed document, cached by its hash; a manual loaded without its text is read by key once."""
    if "document" in manual.get_deferred_fields():
        return _parsed_by_key(manual.pk, manual.document_sha256)
    return _parsed(manual.document_sha256, manual.document)


def manual_title(manual: RatingManual, *, language: str | None) -> str:
    """The manual's title in ``language`` (a Django language code), else its ``en`` title."""
    return manual_document(manual).title_in(language)


def request_tier_label(request: UnderwritingRequest, *, language: str | None) -> str:
    """The request's tier label in ``language``, from the manual version it used; the label stored on the
    request (the manual's ``en`` text) when that version has none in the language."""
    if request.manual_id is None or not request.tier_code:
        return request.tier_label
    tier = manual_document(request.manual).tier(request.tier_code)  # type: ignore[arg-type]
    return tier.label_in(language) if tier is not None else request.tier_label


@lru_cache(maxsize=256)
def manual_document_by_id(pk: int) -> ManualDocument:
    """The parsed document of an approved manual, cached by id: approved versions are immutable (the
    services refuse changes), and only approved versions are ever attached to a request."""
    sha256, text = (
        RatingManual.objects.filter(pk=pk, status=RatingManual.Status.APPROVED)
        .values_list("document_sha256", "document")
        .get()
    )
    return _parsed(sha256, text)


@lru_cache(maxsize=256)
def _parsed_by_key(pk: int, sha256: str) -> ManualDocument:
    text = RatingManual.objects.filter(pk=pk, document_sha256=sha256).values_list("document", flat=True).get()
    return _parsed(sha256, text)


@lru_cache(maxsize=256)
def _parsed(sha256: str, text: str) -> ManualDocument:
    # Approved documents never change, so the hash is a safe cache key.
    return parse_manual(text)


def requests_for_insurer(
    *,
    insurer_id: int,
    status: str | None = None,
    reference: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
) -> QuerySet[UnderwritingRequest]:
    queryset = (
        UnderwritingRequest.objects.filter(insurer_id=insurer_id).select_related("manual").defer(*LARGE_REQUEST_FIELDS)
    )
    if status:
        queryset = queryset.filter(status=status)
    if reference:
        queryset = queryset.filter(reference=reference)
    if created_after:
        queryset = queryset.filter(created_at__gte=created_after)
    if created_before:
        queryset = queryset.filter(created_at__lt=created_before)
    return queryset


def request_for_insurer(*, insurer_id: int, request_id: uuid.UUID | str) -> UnderwritingRequest | None:
    """The request if it belongs to this insurer; None otherwise (callers answer 404, never 403)."""
    try:
        key = uuid.UUID(str(request_id))
    except ValueError:
        return None
    return (
        UnderwritingRequest.objects.filter(pk=key, insurer_id=insurer_id)
        .select_related("manual")
        .defer(*LARGE_REQUEST_FIELDS)
        .first()
    )


def request_for_api(*, insurer_id: int, request_id: uuid.UUID | str) -> UnderwritingRequest | None:
    """:func:`request_for_insurer` for the API's answer (underwriting.serializers), which needs nothing of
    the manual but its version: one query by primary key, the version read as ``manual_version``, no row of
    the manual built and no ordering. Building a joined, deferred, ordered query costs more CPU than
    running it, and a ``?wait`` call reads the request twice."""
    try:
        key = uuid.UUID(str(request_id))
    except ValueError:
        return None
    if connections[DEFAULT_DB_ALIAS].vendor != "postgresql":  # elsewhere values may need the ORM's converters
        rows = list(_api_query(key, insurer_id))
        return rows[0] if rows else None
    sql, by_id, names = _api_statement()
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute(sql, [key if is_id else insurer_id for is_id in by_id])
        row = cursor.fetchone()
    if row is None:
        return None
    found = UnderwritingRequest.from_db(DEFAULT_DB_ALIAS, names, row[:-1])
    found.manual_version = row[-1]  # type: ignore[attr-defined]
    return found


# What the API's answer reads of a request (underwriting.serializers), and whether it is terminal.
API_REQUEST_FIELDS = (
    "id", "reference", "status", "reason", "resident_id_masked", "manual_slug", "tier_code", "tier_label",
    "decision", "table_rating", "created_at", "completed_at",
)  # fmt: skip


def _api_query(key: uuid.UUID, insurer_id: int) -> QuerySet[UnderwritingRequest]:
    return (
        UnderwritingRequest.objects.filter(pk=key, insurer_id=insurer_id)
        .only(*API_REQUEST_FIELDS)
        .annotate(manual_version=F("manual__version"))
        .order_by()[:1]
    )


@cache
def _api_statement() -> tuple[str, list[bool], list[str]]:
    """:func:`_api_query`'s SQL (PostgreSQL), built once per process; which of its two parameters is the
    request id (the other is the insurer id); the request's fields in the order its columns come (the
    manual's version last). Building the query costs more CPU than running it, and ``?wait`` runs it twice."""
    probe = uuid.UUID(int=0)
    compiler = _api_query(probe, -1).query.get_compiler(DEFAULT_DB_ALIAS)
    sql, params = compiler.as_sql()
    assert sorted(map(str, params)) == sorted([str(probe), "-1"]), params
    names = [column.target.attname for column, _, _ in compiler.select[:-1]]
    assert sorted(names) == sorted(API_REQUEST_FIELDS), names
    return str(sql), [param == probe for param in params], names


# Columns an insurer-facing read never needs: the manual's text.
LARGE_REQUEST_FIELDS = ("manual__document", "manual__parsed")


def stuck_requests(*, older_than: datetime) -> QuerySet[UnderwritingRequest]:
    return UnderwritingRequest.objects.filter(
        status__in=[RequestStatus.EXTRACTING, RequestStatus.SCORING, RequestStatus.TIERING],
        updated_at__lt=older_than,
    )


REGULATOR_CSV_COLUMNS = [
    "id", "reference", "insurer", "manual", "manual_version", "status", "reason", "tier", "decision",
    "table_rating", "created_at", "completed_at",
]  # fmt: skip


def requests_regulator_rows(queryset: QuerySet[UnderwritingRequest]) -> Iterator[list[str]]:
    """Rows of the regulator's request export: outcomes only, never a subject key or masked ID."""
    yield REGULATOR_CSV_COLUMNS
    rows = queryset.select_related("insurer", "manual").order_by("created_at", "id")
    for request in rows.iterator(chunk_size=2000):
        yield [
            str(request.pk), request.reference, request.insurer.slug, request.manual_slug,
            str(request.manual.version) if request.manual else "", request.status, request.reason,
            request.tier_code, request.decision, request.table_rating, request.created_at.isoformat(),
            request.completed_at.isoformat() if request.completed_at else "",
        ]  # fmt: skip


# --- statistics (the insurer's dashboard for one insurer, the bureau's for all) -------------------


def _scoped(insurer_id: int | None) -> QuerySet[UnderwritingRequest]:
    queryset = UnderwritingRequest.objects.all()
    return queryset if insurer_id is None else queryset.filter(insurer_id=insurer_id)


def tier_mix_per_manual(*, since: datetime, insurer_id: int | None = None) -> dict[str, dict[str, int]]:
    rows = (
        _scoped(insurer_id)
        .filter(status=RequestStatus.COMPLETED, created_at__gte=since)
        .values("manual_slug", "tier_code")
        .annotate(n=Count("id"))
        .order_by()
    )
    mix: dict[str, dict[str, int]] = defaultdict(dict)
    for row in rows:
        mix[row["manual_slug"]][row["tier_code"]] = row["n"]
    return {slug: dict(sorted(tiers.items())) for slug, tiers in sorted(mix.items())}


LATENCY_SAMPLE = 5000


def latency_percentiles(*, since: datetime, insurer_id: int | None = None) -> dict[str, float] | None:
    """p50/p90/p99 of submit-to-result time (seconds) over the newest completed requests (nearest rank)."""
    pairs = (
        _scoped(insurer_id)
        .filter(status=RequestStatus.COMPLETED, created_at__gte=since, completed_at__isnull=False)
        .order_by("-created_at")
        .values_list("created_at", "completed_at")[:LATENCY_SAMPLE]
    )
    durations = sorted((done - start).total_seconds() for start, done in pairs if done is not None)
    if not durations:
        return None

    def rank(p: float) -> float:
        return durations[max(math.ceil(p / 100 * len(durations)) - 1, 0)]

    return {"p50": rank(50), "p90": rank(90), "p99": rank(99)}


def requests_per_day_by_insurer(
    *, days: int = 30, today: date | None = None
) -> tuple[list[date], dict[str, list[int]]]:
    """Each day of the last ``days`` (Asia/Shanghai) and, per insurer (by name), its requests on that day."""
    return _per_day(UnderwritingRequest.objects.all(), "created_at", "insurer__name", days=days, today=today)


def requests_per_day(*, insurer_id: int, days: int = 30, today: date | None = None) -> tuple[list[date], list[int]]:
    """Each of the last ``days`` days (Asia/Shanghai) and one insurer's requests on that day."""
    calendar, series = _per_day(_scoped(insurer_id), "created_at", "insurer_id", days=days, today=today)
    return calendar, series.get(str(insurer_id), [0] * days)


def _per_day(
    rows: QuerySet[Any],
    at: str,
    group: str,
    *,
    days: int,
    today: date | None,
    label: Callable[[Any], str] = str,
) -> tuple[list[date], dict[str, list[int]]]:
    """The last ``days`` calendar days (Asia/Shanghai) and, per ``label(group value)``, the rows whose
    ``at`` falls on each day, counted in one grouped query."""
    first = (today or timezone.localdate()) - timedelta(days=days - 1)
    start = timezone.make_aware(datetime.combine(first, datetime.min.time()))
    grouped = (
        rows.filter(**{f"{at}__gte": start})
        .annotate(day=TruncDate(at, tzinfo=timezone.get_current_timezone()))
        .values(group, "day")
        .annotate(n=Count("id"))
        .order_by()
    )
    series: dict[str, list[int]] = {}
    for row in sorted(grouped, key=lambda row: str(row[group])):
        counts = series.setdefault(label(row[group]), [0] * days)
        counts[(row["day"] - first).days] += row["n"]
    return [first + timedelta(days=i) for i in range(days)], series


# --- misuse flags ----------------------------------------------------------------------------------


def flags_per_day_by_kind(*, days: int = 30, today: date | None = None) -> tuple[list[date], dict[str, list[int]]]:
    """Each day of the last ``days`` and, per flag kind (its label), the flags raised that day."""
    labels = dict(FlagKind.choices)
    return _per_day(
        MisuseFlag.objects.all(), "raised_at", "kind", days=days, today=today,
        label=lambda kind: str(labels.get(kind, kind)),
    )  # fmt: skip


def open_flags_by_kind() -> list[tuple[str, str, int]]:
    """(kind, label, count) of the flags not yet closed, for every kind (zero included)."""
    counts = dict(
        MisuseFlag.objects.exclude(status=MisuseFlag.Status.CLOSED)
        .values_list("kind")
        .annotate(n=Count("id"))
        .order_by()
    )
    return [(str(kind), str(label), int(counts.get(kind, 0))) for kind, label in FlagKind.choices]


# Refusals that come before the limits and say nothing about the person: they do not count against them.
UNCOUNTED_REASONS = (RejectReason.RATE_LIMITED, RejectReason.MANUAL_NOT_APPROVED)


def requests_counted_against_limits() -> QuerySet[UnderwritingRequest]:
    """The requests the per-subject and per-(insurer, subject) limits count: every one but the refusals
    made before the limits were checked (UNCOUNTED_REASONS)."""
    return UnderwritingRequest.objects.exclude(status=RequestStatus.REJECTED, reason__in=UNCOUNTED_REASONS)
