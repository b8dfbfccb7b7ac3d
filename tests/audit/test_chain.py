"""The audit log is append-only and hash-chained: every way of tampering with the table is caught."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
import time_machine
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction
from django.utils import timezone, translation

from audit import anchors, services
from audit.models import AppendOnlyError, AuditEntry

pytestmark = pytest.mark.django_db
POSTGRES = connection.vendor == "postgresql"


@pytest.fixture
def chain() -> list[AuditEntry]:
    for index in range(5):
        services.audit_record(
            action="test.event", actor="tester", target_type="thing", target_id=str(index), detail={"n": index}
        )
    services.audit_chain_pending()
    return list(AuditEntry.objects.order_by("chain_seq"))


@contextmanager
def tampering() -> Iterator[None]:
    """Raw SQL as an attacker who owns the table; on PostgreSQL the guard's triggers must be switched off
    first (inside the test's transaction, so they come back on afterwards)."""
    with connection.cursor() as cursor:
        if POSTGRES:
            cursor.execute("ALTER TABLE audit_auditentry DISABLE TRIGGER USER")
        yield
        if POSTGRES:
            cursor.execute("ALTER TABLE audit_auditentry ENABLE TRIGGER USER")


@pytest.fixture(autouse=True)
def _english() -> Iterator[None]:
    """Services answer in the active language (the admin's); these tests read them in English."""
    with translation.override("en"):
        yield


def sql(statement: str, params: list[object] | None = None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement, params or [])


def broken_at() -> str:
    with pytest.raises(CommandError) as caught:
        call_command("verify_audit_chain")
    return str(caught.value)


def test_writers_insert_unchained_rows_and_the_chainer_links_them_in_id_order() -> None:
    services.audit_record(action="a.one", detail={"x": 1})
    services.audit_record(action="a.two")
    assert AuditEntry.objects.filter(chain_seq__isnull=True).count() == 2
    assert services.audit_chain_pending() == 2
    first, second = AuditEntry.objects.order_by("id")
    assert (first.chain_seq, second.chain_seq) == (1, 2)
    assert first.prev_hash == services.GENESIS
    assert second.prev_hash == first.hash
    assert services.audit_chain_pending() == 0


def test_chainer_continues_from_the_head(chain: list[AuditEntry]) -> None:
    services.audit_record(action="later")
    services.audit_chain_pending()
    last = AuditEntry.objects.get(action="later")
    assert last.chain_seq == 6
    assert last.prev_hash == chain[-1].hash


def test_intact_chain_verifies_and_leaves_pending_entries_alone(
    chain: list[AuditEntry], capsys: pytest.CaptureFixture[str]
) -> None:
    services.audit_record(action="pending.before.verification")
    call_command("verify_audit_chain")
    out = capsys.readouterr().out
    assert "intact: 5 entries" in out
    assert "1 pending" in out
    assert AuditEntry.objects.get(action="pending.before.verification").chain_seq is None


def test_empty_chain_verifies() -> None:
    assert services.audit_chain_verify().intact


def test_detects_an_edited_entry(chain: list[AuditEntry]) -> None:
    with tampering():
        sql("UPDATE audit_auditentry SET actor = 'someone-else' WHERE chain_seq = 3")
    assert "broken at entry 3" in broken_at()


def test_detects_an_edited_detail(chain: list[AuditEntry]) -> None:
    with tampering():
        sql("UPDATE audit_auditentry SET detail = %s WHERE chain_seq = 2", [json.dumps({"n": 99})])
    assert "broken at entry 2" in broken_at()


def test_detects_a_deleted_entry(chain: list[AuditEntry]) -> None:
    with tampering():
        sql("DELETE FROM audit_auditentry WHERE chain_seq = 2")
    message = broken_at()
    assert "broken at entry 3" in message
    assert "missing" in message


def test_detects_reordered_entries(chain: list[AuditEntry]) -> None:
    with tampering():
        sql("UPDATE audit_auditentry SET chain_seq = 1000 WHERE chain_seq = 2")
        sql("UPDATE audit_auditentry SET chain_seq = 2 WHERE chain_seq = 3")
        sql("UPDATE audit_auditentry SET chain_seq = 3 WHERE chain_seq = 1000")
    assert "broken at entry 2" in broken_at()


def test_detects_swapped_contents_with_hashes_kept_in_place(chain: list[AuditEntry]) -> None:
    with tampering():
        sql("UPDATE audit_auditentry SET target_id = 'x' WHERE chain_seq = 4")
        sql("UPDATE audit_auditentry SET target_id = '3' WHERE chain_seq = 5")
        sql("UPDATE audit_auditentry SET target_id = '4' WHERE chain_seq = 4")
    assert "broken at entry 4" in broken_at()


def test_detects_an_entry_inserted_in_the_middle(chain: list[AuditEntry]) -> None:
    with tampering():
        sql("UPDATE audit_auditentry SET chain_seq = chain_seq + 1000 WHERE chain_seq >= 3")
        sql("UPDATE audit_auditentry SET chain_seq = chain_seq - 999 WHERE chain_seq >= 1000")
        sql(
            "INSERT INTO audit_auditentry (at, action, actor, target_type, target_id, detail, chain_seq, prev_hash,"
            " hash) VALUES (%s, 'forged', '', '', '', '{}', 3, %s, %s)",
            [chain[0].at, chain[1].hash, "f" * 64],
        )
    assert "broken at entry 3" in broken_at()


def test_detects_a_forged_entry_at_the_head(chain: list[AuditEntry]) -> None:
    with tampering():
        sql(
            "INSERT INTO audit_auditentry (at, action, actor, target_type, target_id, detail, chain_seq, prev_hash,"
            " hash) VALUES (%s, 'forged', '', '', '', '{}', 6, %s, %s)",
            [chain[0].at, chain[-1].hash, "0" * 64],
        )
    assert "broken at entry 6" in broken_at()


def test_detects_an_entry_unlinked_and_rechained(chain: list[AuditEntry]) -> None:
    with tampering():
        sql("UPDATE audit_auditentry SET chain_seq = NULL, prev_hash = NULL, hash = NULL WHERE chain_seq = 2")
    assert "broken at entry 3" in broken_at()


def test_orm_refuses_update_and_delete(chain: list[AuditEntry]) -> None:
    entry = chain[0]
    with pytest.raises(AppendOnlyError):
        AuditEntry.objects.filter(pk=entry.pk).update(actor="x")
    with pytest.raises(AppendOnlyError):
        AuditEntry.objects.all().delete()
    with pytest.raises(AppendOnlyError):
        entry.delete()
    entry.actor = "x"
    with pytest.raises(AppendOnlyError):
        entry.save()
    with pytest.raises(AppendOnlyError):
        AuditEntry.objects.filter(pk=entry.pk).chain_set(actor="x")
    assert AuditEntry.objects.filter(pk=entry.pk).chain_set(chain_seq=99) == 0  # chained already: no change
    assert services.audit_chain_verify().intact


@pytest.mark.skipif(not POSTGRES, reason="the database-level guard exists on PostgreSQL only")
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_auditentry SET actor = 'x' WHERE chain_seq = 1",
        "UPDATE audit_auditentry SET hash = NULL, chain_seq = NULL, prev_hash = NULL WHERE chain_seq = 1",
        "DELETE FROM audit_auditentry WHERE chain_seq = 1",
        "DELETE FROM audit_auditentry",
        "TRUNCATE audit_auditentry",
        "INSERT INTO audit_auditentry (at, action, actor, target_type, target_id, detail, chain_seq)"
        " VALUES (now(), 'x', '', '', '', '{}', 99)",
    ],
)
def test_postgres_trigger_refuses_raw_changes(chain: list[AuditEntry], statement: str) -> None:
    with pytest.raises(DatabaseError, match=r"append-only|Cannot delete"), transaction.atomic():
        sql(statement)
    assert AuditEntry.objects.count() == 5


@pytest.mark.skipif(not POSTGRES, reason="the database-level guard exists on PostgreSQL only")
def test_postgres_trigger_refuses_setting_the_chain_fields_one_at_a_time() -> None:
    services.audit_record(action="pending")
    with pytest.raises(DatabaseError, match="all three at once"), transaction.atomic():
        sql("UPDATE audit_auditentry SET hash = %s WHERE action = 'pending'", ["a" * 64])


@pytest.mark.skipif(not POSTGRES, reason="the database-level guard exists on PostgreSQL only")
def test_postgres_trigger_refuses_changing_content_while_chaining() -> None:
    services.audit_record(action="pending")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        sql("UPDATE audit_auditentry SET actor = 'x', chain_seq = 1 WHERE action = 'pending'")


def test_anchor_export_signs_the_head_and_verification_checks_it(
    chain: list[AuditEntry], settings: Any, tmp_path: Path
) -> None:
    call_command("export_audit_anchor")
    (path,) = Path(settings.AUDIT_ANCHOR_DIR).glob("audit-anchor-*.json")
    anchor = anchors.anchor_read(path, anchors.public_keys())
    assert (anchor.chain_seq, anchor.hash, anchor.signed) == (5, chain[-1].hash, True)
    assert services.audit_chain_verify().anchors == 1
    copy = tmp_path / "elsewhere"
    call_command("export_audit_anchor", "--out", str(copy))
    call_command("verify_audit_chain", "--anchor", str(copy))
    with tampering():
        sql("DELETE FROM audit_auditentry WHERE chain_seq >= 4")
    with pytest.raises(CommandError, match="deleted from its tail"):
        call_command("verify_audit_chain")


def test_unsigned_anchors_from_before_signing_still_catch_a_cut_tail(chain: list[AuditEntry], settings: Any) -> None:
    folder = Path(settings.AUDIT_ANCHOR_DIR)
    folder.mkdir(parents=True)
    legacy = {"chain_seq": 5, "hash": chain[-1].hash, "exported_at": "2026-11-01T00:05:00+00:00"}
    (folder / "audit-anchor-20261101.json").write_text(json.dumps(legacy))
    report = services.audit_chain_verify()
    assert (report.intact, report.anchors, report.latest_anchor) == (True, 1, None)
    with tampering():
        sql("DELETE FROM audit_auditentry WHERE chain_seq = 5")
    assert "deleted from its tail" in services.audit_chain_verify().problem


def test_anchor_export_needs_the_signing_key(chain: list[AuditEntry], settings: Any) -> None:
    settings.AUDIT_ANCHOR_SIGNING_KEY = ""
    with pytest.raises(CommandError, match="AUDIT_ANCHOR_SIGNING_KEY is not set"):
        call_command("export_audit_anchor")
    settings.AUDIT_ANCHOR_SIGNING_KEY = "abc"
    with pytest.raises(CommandError, match="64 hex digits"):
        call_command("export_audit_anchor")


def test_create_audit_anchor_key_prints_a_working_pair(settings: Any) -> None:
    out = StringIO()
    call_command("create_audit_anchor_key", stdout=out)
    lines = dict(line.split("=", 1) for line in out.getvalue().split())
    settings.AUDIT_ANCHOR_SIGNING_KEY = lines["AUDIT_ANCHOR_SIGNING_KEY"]
    settings.AUDIT_ANCHOR_PUBLIC_KEYS = [lines["AUDIT_ANCHOR_PUBLIC_KEYS"]]
    path = services.audit_anchor_export()
    assert anchors.anchor_read(path, anchors.public_keys()).signed
    public = StringIO()
    call_command("create_audit_anchor_key", "--public", stdout=public)
    assert public.getvalue().split() == [f"AUDIT_ANCHOR_PUBLIC_KEYS={lines['AUDIT_ANCHOR_PUBLIC_KEYS']}"]


def test_verification_fails_when_anchors_stop(chain: list[AuditEntry], settings: Any) -> None:
    services.audit_anchor_export()
    assert services.audit_chain_verify().intact
    with time_machine.travel(timezone.now() + timedelta(seconds=2 * settings.AUDIT_ANCHOR_SECONDS + 60)):
        problem = services.audit_chain_verify().problem
    assert "No signed anchor was written since" in problem


def test_recording_an_event_is_one_insert(chain: list[AuditEntry], django_assert_max_num_queries) -> None:  # type: ignore[no-untyped-def]
    with django_assert_max_num_queries(1):
        services.audit_record(action="hot.path")


def test_beat_chains_every_few_seconds_anchors_and_verifies(settings: Any) -> None:
    from audit import tasks

    schedule = settings.CELERY_BEAT_SCHEDULE
    assert schedule["audit-chain"]["task"] == tasks.chain_pending.name
    assert float(schedule["audit-chain"]["schedule"]) <= 10
    assert float(schedule["audit-chain"]["schedule"]) < settings.AUDIT_CHAIN_GRACE_SECONDS
    assert schedule["audit-anchor"]["task"] == tasks.export_anchor.name
    assert float(schedule["audit-anchor"]["schedule"]) == settings.AUDIT_ANCHOR_SECONDS <= 3600
    assert schedule["audit-verify"]["task"] == tasks.verify_chain.name
    services.audit_record(action="beat.test")
    assert tasks.chain_pending() == 1
    path = Path(tasks.export_anchor())
    assert anchors.anchor_read(path, anchors.public_keys()).chain_seq == 1
    services.audit_record(action="beat.pending")
    assert tasks.verify_chain() == {"intact": True, "checked": 1, "pending": 1, "anchors": 1}
    assert AuditEntry.objects.get(action="beat.pending").chain_seq is None


def test_chaining_refuses_an_empty_key(settings: Any) -> None:
    settings.AUDIT_KEY = ""
    services.audit_record(action="x")
    with pytest.raises(RuntimeError, match="AUDIT_KEY"):
        services.audit_chain_pending()


@pytest.mark.skipif(not POSTGRES, reason="concurrent chainers need a server database")
@pytest.mark.django_db(transaction=True)
def test_concurrent_chainers_and_writers_never_fork_the_chain() -> None:
    import threading

    from django.db import connections

    def work(worker: int) -> None:
        try:
            for index in range(40):
                services.audit_record(action="concurrent", target_id=f"{worker}-{index}")
                if index % 10 == 0:
                    services.audit_chain_pending()
            services.audit_chain_pending()
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    report = services.audit_chain_verify()
    assert report.intact, report.problem
    assert report.checked == AuditEntry.objects.count() == 160


@pytest.mark.skipif(not POSTGRES, reason="a READ ONLY transaction is PostgreSQL's")
@pytest.mark.django_db(transaction=True)
def test_verification_runs_in_a_read_only_transaction(monkeypatch: pytest.MonkeyPatch) -> None:
    services.audit_record(action="pending")
    counts = services._unchained_counts

    def link_first() -> dict[str, Any]:
        services.audit_chain_pending()  # what the verifier used to do before it verified
        return counts()

    monkeypatch.setattr(services, "_unchained_counts", link_first)
    with pytest.raises(DatabaseError, match="read-only transaction"):
        services.audit_chain_verify()
    assert AuditEntry.objects.get(action="pending").chain_seq is None
