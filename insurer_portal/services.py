from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from datetime import timedelta
from functools import cache
from typing import Any

import orjson
from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.models import Case, F, JSONField, QuerySet, UUIDField, Value, When
from django.utils import timezone
from django.utils.translation import gettext_noop
from django_otp.plugins.otp_totp.models import TOTPDevice

from audit.errors import AppError
from audit.services import audit_record
from config.celery import enqueue, enqueue_on_commit
from insurer_portal import batches
from insurer_portal.models import Batch, BatchRow
from tenants.models import ApiKey, Insurer, InsurerUser
from underwriting import selectors as uw_selectors
from underwriting.models import WebhookEndpoint
from underwriting.services.requests import (
    Applicant,
    ConsentEvidence,
    SubmitItem,
    SubmitOutcome,
    requests_submit_many,
    submit_item,
)
from underwriting.services.webhooks import PostResult, post_signed


class InsurerError(AppError):
    """A request about insurers that cannot be carried out (:class:`audit.errors.AppError`)."""


@transaction.atomic
def insurer_create(*, slug: str, name: str) -> Insurer:
    if Insurer.objects.filter(slug=slug).exists():
        raise InsurerError("insurer_exists", f"An insurer with slug '{slug}' already exists.")
    insurer = Insurer(slug=slug, name=name)
    try:
        insurer.full_clean()
    except ValidationError as exc:
        detail = "; ".join(f"{field}: {' '.join(errors)}" for field, errors in exc.message_dict.items())
        raise InsurerError("invalid_input", detail) from exc
    insurer.save()
    return insurer


@transaction.atomic
def insurer_ensure(*, slug: str, name: str) -> tuple[Insurer, bool]:
    """Return the insurer with ``slug``, creating it if needed (for idempotent seeding)."""
    existing = Insurer.objects.filter(slug=slug).first()
    if existing is not None:
        return existing, False
    return insurer_create(slug=slug, name=name), True


# Shown on the members form in the user's language (audit.errors.add_to_form).
USER_TAKEN = gettext_noop("This user name is taken.")
API_KEY_PREFIX = "uwk"
LAST_USED_RESOLUTION = timedelta(seconds=60)


def _hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@transaction.atomic
def api_key_create(*, insurer: Insurer, name: str = "") -> tuple[ApiKey, str]:
    """Create a key and return it with its only plaintext copy (shown once, stored as SHA-256).

    The secret has 256 bits of entropy, so a fast hash is enough: nothing can be brute-forced. An insurer
    has at most API_MAX_ACTIVE_KEYS unrevoked keys (more keys would multiply its API throttle): creations
    for one insurer queue on its row lock, so concurrent ones cannot both take the last place.
    """
    Insurer.objects.select_for_update().filter(pk=insurer.pk).first()
    active = ApiKey.objects.filter(insurer_id=insurer.pk, revoked_at__isnull=True).count()
    if active >= settings.API_MAX_ACTIVE_KEYS:
        raise InsurerError(
            "too_many_keys",
            f"This insurer already has {active} active API keys, the most allowed "
            f"(API_MAX_ACTIVE_KEYS={settings.API_MAX_ACTIVE_KEYS}); revoke one it no longer uses first.",
        )
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    plaintext = f"{API_KEY_PREFIX}_{prefix}_{secret}"
    key = ApiKey.objects.create(insurer=insurer, name=name, prefix=prefix, key_sha256=_hash_key(plaintext))
    _audit_key("api_key.create", key)
    return key, plaintext


def _audit_key(action: str, key: ApiKey) -> None:
    audit_record(
        action=action,
        actor=f"insurer:{key.insurer_id}",
        target_type="api_key",
        target_id=str(key.pk),
        detail={"prefix": key.prefix, "insurer_id": key.insurer_id},
    )


@transaction.atomic
def api_key_revoke(*, key: ApiKey) -> ApiKey:
    if ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now()):
        _audit_key("api_key.revoke", key)
    key.refresh_from_db()
    return key


def _key_query(prefix: str) -> QuerySet[ApiKey, tuple[Any, ...]]:
    """The key with ``prefix`` (unique) and its insurer, as one row of plain values: no ordering, no rows
    built by the ORM."""
    columns = ("id", "insurer_id", "key_sha256", "last_used_at", "revoked_at")
    return (
        ApiKey.objects.filter(prefix=prefix)
        .order_by()
        .values_list(*columns, "insurer__slug", "insurer__name", "insurer__is_active")[:1]
    )


@cache
def _key_statement() -> str:
    """:func:`_key_query`'s SQL, built once per process: every API call runs it, and building the query
    costs more CPU than running it. Its one parameter is the prefix."""
    sql, params = _key_query("-").query.sql_with_params()
    assert list(params) == ["-"], params
    return sql


def _key_row(prefix: str) -> tuple[Any, ...] | None:
    if connections[DEFAULT_DB_ALIAS].vendor != "postgresql":  # elsewhere values may need the ORM's converters
        return next(iter(_key_query(prefix)), None)
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute(_key_statement(), [prefix])
        row: tuple[Any, ...] | None = cursor.fetchone()
    return row


def api_key_authenticate(*, plaintext: str) -> ApiKey | None:
    """The active key matching ``plaintext``, with its last-used time refreshed (at most once a minute)."""
    parts = plaintext.split("_", 2)
    if len(parts) != 3 or parts[0] != API_KEY_PREFIX:
        return None
    found = _key_row(parts[1])
    if found is None or not hmac.compare_digest(found[2], _hash_key(plaintext)):
        return None
    pk, insurer_id, key_sha256, last_used_at, revoked_at, slug, name, insurer_active = found
    key = ApiKey(
        pk=pk,
        insurer_id=insurer_id,
        prefix=parts[1],
        key_sha256=key_sha256,
        last_used_at=last_used_at,
        revoked_at=revoked_at,
    )
    key._state.adding, key._state.db = False, DEFAULT_DB_ALIAS
    key.insurer = Insurer(pk=insurer_id, slug=slug, name=name, is_active=insurer_active)
    key.insurer._state.adding, key.insurer._state.db = False, DEFAULT_DB_ALIAS
    if not key.is_active:
        return None
    now = timezone.now()
    if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
        _audit_key("api_key.use", key)  # the first use in each minute, like last_used_at
    return key


# --- portal users and two-factor (the sign-in lock-out: insurer_portal.lockout) -------------------------


@transaction.atomic
def portal_user_create(
    *, insurer: Insurer, username: str, email: str, role: str, password: str | None = None
) -> InsurerUser:
    """A portal user of ``insurer``. Without a password the user sets one through the reset link."""
    if User.objects.filter(username__iexact=username).exists():
        raise InsurerError("user_exists", USER_TAKEN, fields={"username": [USER_TAKEN]})
    if role not in InsurerUser.Role.values:
        raise InsurerError("invalid_input", "Unknown role.")
    user = User.objects.create_user(username=username, email=email, password=password)
    if password is None:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return InsurerUser.objects.create(user=user, insurer=insurer, role=role)


@transaction.atomic
def portal_user_set_active(*, membership: InsurerUser, active: bool) -> None:
    User.objects.filter(pk=membership.user_id).update(is_active=active)


@transaction.atomic
def portal_user_set_role(*, membership: InsurerUser, role: str) -> None:
    """Change a member's role; a new admin is asked to enrol an authenticator at the next page."""
    if role not in InsurerUser.Role.values:
        raise InsurerError("invalid_input", "Unknown role.")
    InsurerUser.objects.filter(pk=membership.pk).update(role=role)


@transaction.atomic
def totp_device_start(*, user: User) -> TOTPDevice:
    """A new, unconfirmed authenticator for ``user`` (replacing an unconfirmed earlier one)."""
    TOTPDevice.objects.filter(user=user, confirmed=False).delete()
    return TOTPDevice.objects.create(user=user, name="authenticator", confirmed=False)


@transaction.atomic
def totp_device_confirm(*, device: TOTPDevice, token: str) -> bool:
    """Confirm the device with a first code from the app; other confirmed devices of the user go."""
    if not device.verify_token(token):
        return False
    TOTPDevice.objects.filter(user=device.user).exclude(pk=device.pk).delete()
    TOTPDevice.objects.filter(pk=device.pk).update(confirmed=True)
    device.confirmed = True
    return True


@transaction.atomic
def totp_device_remove(*, user: User) -> None:
    TOTPDevice.objects.filter(user=user).delete()


# --- webhooks -----------------------------------------------------------------------------------------


def webhook_test_send(*, endpoint: WebhookEndpoint) -> PostResult:
    """POST a signed ``test.ping`` event (no request data) so the insurer can check its receiver.

    The result's ``detail`` is for the bureau's logs only; show the insurer ``webhook_outcome_for_insurer``."""
    body = orjson.dumps({"id": str(uuid.uuid4()), "type": "test.ping", "created_at": timezone.now().isoformat()})
    return post_signed(endpoint, body)


@transaction.atomic
def webhook_endpoint_set_active(*, endpoint: WebhookEndpoint, active: bool) -> None:
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(is_active=active)


# --- batches ------------------------------------------------------------------------------------------


@transaction.atomic
def batch_create(*, insurer: Insurer, user: User | None, filename: str, content: bytes) -> Batch:
    """Read and check an uploaded file; keep its rows for preview (applicants sealed). Raises BatchFileError."""
    raw_rows = batches.read_rows(filename=filename, content=content)
    manuals = set(uw_selectors.manuals_for_insurer(insurer_slug=insurer.slug).values_list("slug", flat=True))
    seen: set[str] = set()
    parsed = [batches.ParsedRow(line=index + 2, values=values) for index, values in enumerate(raw_rows)]
    for row in parsed:
        batches.check_row(row, manuals=manuals, seen_references=seen)
    valid = [row for row in parsed if not row.errors]
    batch = Batch.objects.create(
        insurer=insurer, created_by=user, filename=filename[:200], total_rows=len(parsed), valid_rows=len(valid),
        sealed_rows=batches.seal(valid, insurer_id=insurer.pk) if valid else None,
    )  # fmt: skip
    BatchRow.objects.bulk_create(
        BatchRow(
            batch=batch,
            line=row.line,
            reference=row.values.get("reference", "")[:100],
            manual_slug=row.values.get("manual", "")[:63],
            resident_id_masked=_masked(row.values.get("resident_id", "")),
            errors=row.errors,
        )
        for row in parsed
    )
    return batch


def _masked(resident_id: str) -> str:
    from datadomain.services import mask_resident_id, resident_id_is_valid, resident_id_normalise

    if not resident_id_is_valid(resident_id):
        return ""
    return mask_resident_id(resident_id_normalise(resident_id))


RUN_BATCH = "insurer_portal.tasks.run_batch"  # by name: services do not import the task modules


@transaction.atomic
def batch_start(*, batch: Batch) -> bool:
    """Confirm a previewed batch: its valid rows are submitted by a task. False if already started."""
    started = Batch.objects.filter(pk=batch.pk, status=Batch.Status.PREVIEW, valid_rows__gt=0).update(
        status=Batch.Status.RUNNING, started_at=timezone.now()
    )
    if started:
        enqueue_on_commit(RUN_BATCH, batch.pk, what="batch run")
    return bool(started)


@transaction.atomic
def batch_cancel(*, batch: Batch) -> bool:
    return bool(
        Batch.objects.filter(pk=batch.pk, status=Batch.Status.PREVIEW).update(
            status=Batch.Status.CANCELLED, sealed_rows=None, finished_at=timezone.now()
        )
    )


# Rows submitted together: one submission chunk (a fixed number of queries) and one update of their rows.
# The first chunk is small, so the progress bar moves within a second of the start.
BATCH_RUN_CHUNK = 200
BATCH_FIRST_CHUNK = 20


def batch_run(*, batch_id: int) -> None:
    """Submit the valid rows through ``requests_submit_many``, the API's own path, a chunk at a time.
    Safe to run twice.

    Each row's idempotency key is derived from the batch and line, so a re-run after a crash finds the
    rows already submitted instead of submitting them again.
    """
    batch = Batch.objects.filter(pk=batch_id, status=Batch.Status.RUNNING).first()
    if batch is None or batch.sealed_rows is None:
        return
    insurer = batch.insurer
    rows = batches.unseal(bytes(batch.sealed_rows), insurer_id=insurer.pk)
    first = min(BATCH_FIRST_CHUNK, BATCH_RUN_CHUNK)
    for start in [0, *range(first, len(rows), BATCH_RUN_CHUNK)]:
        chunk = rows[start : start + (first if start == 0 else BATCH_RUN_CHUNK)]
        if not chunk:
            break
        outcomes = requests_submit_many(
            insurer_id=insurer.pk, insurer_slug=insurer.slug, items=[_batch_item(batch, row) for row in chunk]
        )
        _batch_rows_record(batch, chunk, outcomes)
    Batch.objects.filter(pk=batch.pk, status=Batch.Status.RUNNING).update(
        status=Batch.Status.DONE, sealed_rows=None, finished_at=timezone.now()
    )


def _batch_item(batch: Batch, row: batches.ParsedRow) -> SubmitItem:
    values = row.values
    return submit_item(
        reference=values["reference"],
        applicant=Applicant(resident_id=values["resident_id"], name=values["name"]),
        manual_slug=values["manual"],
        consent=ConsentEvidence(
            reference=values["consent_reference"],
            signed_at=batches.parse_moment(values["consent_signed_at"]),  # type: ignore[arg-type]
            expires_at=batches.parse_moment(values.get("consent_expires_at", "")),
            scope=["underwriting"],
            artifact_sha256=values["consent_sha256"].lower(),
        ),
        idempotency_key=f"portal-batch-{batch.pk}-{row.line}",
        sent=values,
    )


@transaction.atomic
def _batch_rows_record(batch: Batch, rows: list[batches.ParsedRow], outcomes: list[SubmitOutcome]) -> None:
    """Link each row to its request or note the service's refusal: one UPDATE each, whatever the count.

    Only rows not linked yet are linked, and only those count as submitted, so a re-run counts nothing twice."""
    requests = {row.line: o.request.pk for row, o in zip(rows, outcomes, strict=True) if o.request is not None}
    refused = {row.line: [o.error.code] for row, o in zip(rows, outcomes, strict=True) if o.error is not None}
    mine = BatchRow.objects.filter(batch=batch)
    if refused:
        whens = [When(line=line, then=Value(codes, output_field=JSONField())) for line, codes in refused.items()]
        mine.filter(line__in=list(refused)).update(errors=Case(*whens, output_field=JSONField()))
    if requests:
        whens = [When(line=line, then=Value(pk, output_field=UUIDField())) for line, pk in requests.items()]
        linked = mine.filter(line__in=list(requests), request__isnull=True).update(
            request_id=Case(*whens, output_field=UUIDField())
        )
        if linked:
            Batch.objects.filter(pk=batch.pk).update(submitted_rows=F("submitted_rows") + linked)


BATCH_STUCK_AFTER = timedelta(minutes=5)


def batches_sweep() -> int:
    """Re-enqueue confirmed batches whose task was lost (broker down at commit, worker killed).

    Safe even if the first run is only slow: rows already submitted are found by their idempotency keys.
    """
    stuck = Batch.objects.filter(
        status=Batch.Status.RUNNING,
        sealed_rows__isnull=False,
        started_at__lt=timezone.now() - BATCH_STUCK_AFTER,
    ).values_list("pk", flat=True)
    return sum(enqueue(RUN_BATCH, batch_id, what="batch run") for batch_id in stuck)
