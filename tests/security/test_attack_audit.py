"""Attacks on the audit log's tail: emptying it, refilling it, cutting it short, slipping rows into it.

Before: TRUNCATE went through (no row trigger fires on it) and so did any INSERT, chain values and a
backdated time included; the verifier linked whatever was pending before it verified, so a row planted a
moment earlier came out sealed; and the daily anchor was an unsigned file rewritten in place and checked
only when an operator named it. Each test below performs one attack and asserts what it got.

The attacker is, in turn: the tables' owner (who may switch the triggers off, as the PostgreSQL tests do
with ``ALTER TABLE ... DISABLE TRIGGER USER``, but cannot reach the anchors), anyone holding AUDIT_KEY
(who can compute valid chain hashes), and a zone's own database role.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import orjson
import psycopg2
import pytest
import time_machine
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone, translation

from audit import anchors, roles, services, tasks
from audit.models import AuditEntry
from tests.factories import UserFactory
from tests.security.conftest import Roles
from tests.staff import otp_login

POSTGRES = connection.vendor == "postgresql"
needs_postgres = pytest.mark.skipif(not POSTGRES, reason="the database guard (triggers) exists on PostgreSQL only")
pytestmark = pytest.mark.django_db
TABLE = "audit_auditentry"


@pytest.fixture(autouse=True)
def anchor_dir(settings: Any, tmp_path: Path) -> Path:
    settings.AUDIT_ANCHOR_DIR = tmp_path / "anchors"
    return Path(settings.AUDIT_ANCHOR_DIR)


@pytest.fixture(autouse=True)
def _english() -> Iterator[None]:
    """Services answer in the active language (the admin's); these tests read them in English."""
    with translation.override("en"):
        yield


@pytest.fixture
def history() -> list[AuditEntry]:
    """Five events, linked, and the hourly anchor of that head."""
    for index in range(5):
        services.audit_record(action="manual.approve", actor="reviewer", target_id=str(index), detail={"n": index})
    services.audit_chain_pending()
    services.audit_anchor_export()
    return list(AuditEntry.objects.order_by("chain_seq"))


def sql(statement: str, params: list[object] | None = None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement, params or [])


@contextmanager
def as_owner_without_triggers() -> Iterator[None]:
    """The tables' owner switches the guard off, as it may (inside the test's transaction)."""
    if POSTGRES:
        sql(f"ALTER TABLE {TABLE} DISABLE TRIGGER USER")
    yield
    if POSTGRES:
        sql(f"ALTER TABLE {TABLE} ENABLE TRIGGER USER")


def forge_chain(rows: list[dict[str, Any]]) -> None:
    """Refill the table with ``rows`` chained with AUDIT_KEY: a history that verifies link by link."""
    key, prev = services._key(), services.GENESIS
    for seq, row in enumerate(rows, start=1):
        entry = AuditEntry(pk=row["id"], at=row["at"], action=row["action"], actor=row["actor"], detail=row["detail"])
        digest = services.entry_hash(key, prev, entry, seq)
        sql(
            f"INSERT INTO {TABLE} (id, at, action, actor, target_type, target_id, detail, chain_seq, prev_hash, hash)"
            " VALUES (%s, %s, %s, %s, '', '', %s, %s, %s, %s)",
            [row["id"], row["at"], row["action"], row["actor"], json.dumps(row["detail"]), seq, prev, digest],
        )
        prev = digest


def verdict() -> str:
    """What ``manage.py verify_audit_chain`` says, '' when it exits 0."""
    try:
        call_command("verify_audit_chain", stdout=StringIO())
    except CommandError as exc:
        return str(exc)
    return ""


# --- emptying and refilling the table ------------------------------------------------------------


@needs_postgres
@pytest.mark.parametrize("statement", [f"TRUNCATE {TABLE}", f"TRUNCATE {TABLE} RESTART IDENTITY CASCADE"])
def test_truncating_the_audit_log_is_refused_at_the_database(history: list[AuditEntry], statement: str) -> None:
    with pytest.raises(DatabaseError, match="TRUNCATE refused"), transaction.atomic():
        sql(statement)
    assert AuditEntry.objects.count() == 5


@needs_postgres
def test_a_flush_of_every_table_is_refused_too(history: list[AuditEntry]) -> None:
    """The statement Django's ``flush`` sends: every table at once, the audit log among them."""
    tables = ", ".join(connection.ops.quote_name(name) for name in connection.introspection.table_names())
    with pytest.raises(DatabaseError, match="TRUNCATE refused"), transaction.atomic():
        sql(f"TRUNCATE {tables}")
    assert AuditEntry.objects.count() == 5


def test_emptying_and_refilling_the_log_with_the_hmac_key_is_caught_by_the_signed_anchor(
    history: list[AuditEntry],
) -> None:
    """The owner disables the triggers, empties the table and writes a shorter history without the
    embarrassing entry, chained with AUDIT_KEY so that every link verifies."""
    kept = [
        {"id": e.pk, "at": e.at, "action": e.action, "actor": e.actor, "detail": e.detail}
        for e in history
        if e.target_id != "2"
    ]
    with as_owner_without_triggers():
        sql(f"DELETE FROM {TABLE}")
        forge_chain(kept)
    assert services.audit_chain_verify(anchor_paths=[]).checked == 4  # every link of the forgery holds
    assert "deleted from its tail" in verdict()
    # Padding the forgery back to five entries does not help: the anchored head hash is not theirs.
    with as_owner_without_triggers():
        sql(f"DELETE FROM {TABLE}")
        forge_chain([*kept, {**kept[-1], "id": kept[-1]["id"] + 100}])
    assert "no longer has the hash anchor" in verdict()


def test_rewriting_an_entry_and_rechaining_after_it_is_caught_by_the_anchor(history: list[AuditEntry]) -> None:
    """A holder of AUDIT_KEY edits entry 3 and recomputes every hash from there: the links all hold."""
    rows = [{"id": e.pk, "at": e.at, "action": e.action, "actor": e.actor, "detail": e.detail} for e in history]
    rows[2]["actor"] = "someone-else"
    with as_owner_without_triggers():
        sql(f"DELETE FROM {TABLE}")
        forge_chain(rows)
    message = verdict()
    assert "broken at entry 5" in message
    assert "no longer has the hash anchor" in message


def test_a_forged_anchor_for_the_forged_head_is_refused(history: list[AuditEntry], anchor_dir: Path) -> None:
    """The attacker also writes an anchor for the forged head, and removes the genuine one (storage that
    lets them): signed with their own key it is refused, and without the genuine one the anchors are stale."""
    rows = [{"id": e.pk, "at": e.at, "action": e.action, "actor": e.actor, "detail": e.detail} for e in history[:3]]
    with as_owner_without_triggers():
        sql(f"DELETE FROM {TABLE}")
        forge_chain(rows)
    forged_head = AuditEntry.objects.get(chain_seq=3).hash or ""
    for path in anchor_dir.iterdir():
        path.unlink()
    theirs = Ed25519PrivateKey.generate()
    document = anchors.anchor_document(chain_seq=3, head_hash=forged_head, exported_at=timezone.now(), key=theirs)
    (anchor_dir / "audit-anchor-20261203T000000000000Z-3.json").write_bytes(document)
    assert "signed with a key that is not in AUDIT_ANCHOR_PUBLIC_KEYS" in verdict()

    # Re-signing under the genuine key id with their key: the signature does not match.
    ours = anchors.signing_key().public_key()
    payload = json.loads(document)
    payload["key_id"] = anchors.key_id(ours)
    (anchor_dir / "audit-anchor-20261203T000000000000Z-3.json").unlink()
    (anchor_dir / "audit-anchor-20261203T000000000001Z-3.json").write_text(json.dumps(payload))
    assert "signature that does not match" in verdict()

    # Without any anchor at all, the history is older than two anchor intervals: stale.
    (anchor_dir / "audit-anchor-20261203T000000000001Z-3.json").unlink()
    with time_machine.travel(timezone.now() + timedelta(hours=3)):
        assert "No signed anchor was written since" in verdict()


def test_an_anchor_is_never_overwritten_nor_written_through_a_link(history: list[AuditEntry], anchor_dir: Path) -> None:
    """Whoever can run the export (or plant a link where the next anchor goes) cannot replace an anchor."""
    (genuine,) = anchor_dir.iterdir()
    before = genuine.read_bytes()
    with pytest.raises(FileExistsError):
        anchors.write_once(anchor_dir, genuine.name, b"{}")
    target = anchor_dir.parent / "elsewhere.json"
    target.write_text("keep")
    (anchor_dir / "audit-anchor-link.json").symlink_to(target)
    with pytest.raises(FileExistsError):
        anchors.write_once(anchor_dir, "audit-anchor-link.json", b"{}")
    assert (genuine.read_bytes(), target.read_text()) == (before, "keep")
    assert oct(genuine.stat().st_mode & 0o777) == "0o444"
    assert "cannot be opened" in verdict()  # a link among the anchors is reported, never followed


def test_junk_in_the_anchor_directory_fails_verification_instead_of_being_trusted(
    history: list[AuditEntry], anchor_dir: Path
) -> None:
    os.mkfifo(anchor_dir / "audit-anchor-fifo.json")
    assert "is not a regular file" in verdict()  # and it did not hang reading a FIFO
    (anchor_dir / "audit-anchor-fifo.json").unlink()
    (anchor_dir / "audit-anchor-big.json").write_bytes(b" " * 100_000)
    assert "too large" in verdict()
    (anchor_dir / "audit-anchor-big.json").write_bytes(orjson.dumps({"chain_seq": -1, "hash": "x"}))
    assert "is not a valid anchor" in verdict()
    (anchor_dir / "audit-anchor-big.json").write_bytes(
        orjson.dumps({"format": 1, "chain_seq": 5, "hash": "f" * 64, "exported_at": "2026-12-03T00:00:00+00:00",
                      "key_id": "x", "signature": base64.b64encode(b"x" * 64).decode()})
    )  # fmt: skip
    assert "signed with a key" in verdict()


# --- cutting the tail ----------------------------------------------------------------------------


def test_deleting_the_tail_is_caught_by_the_latest_anchor_without_naming_it(history: list[AuditEntry]) -> None:
    """The old verifier checked an anchor only when an operator passed its file; now every anchor in
    AUDIT_ANCHOR_DIR is checked on every run."""
    with as_owner_without_triggers():
        sql(f"DELETE FROM {TABLE} WHERE chain_seq >= 4")
    assert services.audit_chain_verify(anchor_paths=[]).checked == 3
    assert "recorded the chain at position 5, but it now ends at 3" in verdict()


@needs_postgres
def test_deleting_the_tail_is_refused_with_the_triggers_on(history: list[AuditEntry]) -> None:
    with pytest.raises(DatabaseError, match="Cannot delete"), transaction.atomic():
        sql(f"DELETE FROM {TABLE} WHERE chain_seq >= 4")
    assert verdict() == ""


# --- slipping rows in ----------------------------------------------------------------------------


def test_verification_never_seals_a_row_planted_just_before_it(history: list[AuditEntry], settings: Any) -> None:
    """A row inserted straight into the table (no service, any story in it) stays unlinked through every
    verification: the command, the auditor's page and the beat task. The old verifier linked it first."""
    sql(
        f"INSERT INTO {TABLE} (at, action, actor, target_type, target_id, detail) VALUES (%s, %s, %s, '', '', %s)",
        [
            timezone.now() - timedelta(seconds=1),
            "manual.approve",
            "reviewer",
            json.dumps({"note": "approved long ago"}),
        ],
    )
    planted = AuditEntry.objects.get(detail__note="approved long ago")
    assert verdict() == ""
    with CaptureQueriesContext(connection) as queries:
        services.audit_chain_verify()
    writes = [q["sql"] for q in queries if q["sql"].split()[0].upper() in {"INSERT", "UPDATE", "DELETE", "TRUNCATE"}]
    assert writes == []
    auditor = UserFactory(username="verifying-auditor", is_staff=True)
    auditor.groups.add(Group.objects.get(name=roles.AUDITOR))
    page = otp_login(Client(headers={"accept-language": "en"}), auditor).get("/admin/audit/auditentry/verify/")
    assert page.status_code == 200
    assert "The audit chain is intact." in page.content.decode()
    assert tasks.verify_chain()["intact"]
    planted.refresh_from_db()
    assert (planted.chain_seq, planted.hash) == (None, None)
    # Left unlinked past the grace period (the chainer stopped), it is a failure, never a silent pass.
    settings.AUDIT_CHAIN_GRACE_SECONDS = 0
    assert f"not chained (oldest: id {planted.pk})" in verdict()


@needs_postgres
def test_a_row_inserted_with_its_own_chain_values_is_refused(history: list[AuditEntry]) -> None:
    """Taking the position the chainer needs next would stop it for good (chain_seq is unique)."""
    head = history[-1]
    with pytest.raises(DatabaseError, match="comes without chain fields"), transaction.atomic():
        sql(
            f"INSERT INTO {TABLE} (at, action, actor, target_type, target_id, detail, chain_seq, prev_hash, hash)"
            " VALUES (now(), 'manual.approve', 'x', '', '', '{}', %s, %s, %s)",
            [6, head.hash, "f" * 64],
        )
    services.audit_record(action="after")
    assert services.audit_chain_pending() == 1
    assert verdict() == ""


@needs_postgres
def test_a_backdated_row_is_stamped_with_the_database_clock(history: list[AuditEntry]) -> None:
    sql(
        f"INSERT INTO {TABLE} (at, action, actor, target_type, target_id, detail)"
        " VALUES ('2020-01-01T00:00:00Z', 'raw.backdated', 'x', '', '', '{}')"
    )
    AuditEntry(at=timezone.now() - timedelta(days=400), action="orm.backdated").save(force_insert=True)
    for action in ("raw.backdated", "orm.backdated"):
        assert timezone.now() - AuditEntry.objects.get(action=action).at < timedelta(minutes=5), action


def test_a_detail_the_fast_encoder_refuses_cannot_stop_the_chainer(history: list[AuditEntry]) -> None:
    """orjson refuses integers beyond 64 bits; one such row used to stop every row behind it."""
    services.audit_record(action="huge.number", detail={"n": 2**80})
    services.audit_record(action="after.it")
    assert services.audit_chain_pending() == 2
    assert AuditEntry.objects.get(action="after.it").chain_seq == 7
    assert verdict() == ""


@needs_postgres
def test_a_detail_nested_too_deep_to_decode_is_refused(history: list[AuditEntry]) -> None:
    """Python's json cannot decode 5000 levels: such a row would stop the chainer and the verifier."""
    deep = "[" * 5000 + "]" * 5000
    with pytest.raises(DatabaseError, match="nests at most 32 levels"), transaction.atomic():
        sql(
            f"INSERT INTO {TABLE} (at, action, actor, target_type, target_id, detail)"
            " VALUES (now(), 'x', '', '', '', %s)",
            [deep],
        )
    services.audit_record(action="shallow", detail={"a": [[[[{"b": 1}]]]]})
    assert services.audit_chain_pending() == 1


# --- a zone's own role, trying pgtrigger's way around the triggers -------------------------------


@pytest.mark.integration
@needs_postgres
def test_a_zone_role_cannot_switch_the_guard_off_with_pgtrigger_ignore(roles: Roles) -> None:
    """Every pgtrigger function skips itself when the session names it in ``pgtrigger.ignore``, which any
    role may SET. The guard that zones meet (INSERT, and the domain's chain UPDATE) is not one of them."""
    every_trigger = (
        "{"
        + ",".join(
            [
                "pgtrigger_audit_entry_no_delete_d47f9",
                "pgtrigger_audit_entry_no_truncate_59da6",
                "audit_entry_append_only",
            ]
        )
        + "}"
    )
    forged = (
        f"INSERT INTO {TABLE} (at, action, actor, target_type, target_id, detail, chain_seq, prev_hash, hash)"
        " VALUES ('2020-01-01T00:00:00Z', 'custodian.answer', 'custodian', '', '', '{}', 1, %s, %s)"
    )
    for zone in ("scoring", "custodian", "web", "domain"):
        with roles.session(zone) as conn, conn.cursor() as cursor:
            cursor.execute("SELECT set_config('pgtrigger.ignore', %s, false)", [every_trigger])
            with pytest.raises(psycopg2.Error, match="comes without chain fields"):
                cursor.execute(forged, [services.GENESIS, "f" * 64])
            conn.rollback()
    with roles.session("domain") as conn, conn.cursor() as cursor:
        cursor.execute("SELECT set_config('pgtrigger.ignore', %s, false)", [every_trigger])
        cursor.execute(
            f"INSERT INTO {TABLE} (at, action, actor, target_type, target_id, detail)"
            " VALUES (now(), 'x', '', '', '', '{}')"
        )
        link = f"UPDATE {TABLE} SET chain_seq = 1, prev_hash = %s, hash = %s WHERE action = 'x'"
        cursor.execute(link, [services.GENESIS, "a" * 64])  # the chainer's one write: allowed
        with pytest.raises(psycopg2.Error, match="only NULL chain fields may be set"):
            cursor.execute(f"UPDATE {TABLE} SET hash = %s WHERE action = 'x'", ["b" * 64])
        conn.rollback()
