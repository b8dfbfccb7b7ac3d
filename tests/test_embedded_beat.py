"""The embedded default runs beat's periodic jobs in-process: the demo's audit log gets chained and
anchored, so an auditor's "Verify the chain" holds, though no beat process runs."""

from __future__ import annotations

import pytest

from audit.models import AuditEntry
from audit.services import audit_chain_verify, audit_record
from ops import embedded_beat
from ops.embedded_beat import EmbeddedBeat


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_each_job_runs_when_due_and_a_failing_one_stops_nothing(settings: object) -> None:
    settings.CELERY_BEAT_SCHEDULE = {  # type: ignore[attr-defined]
        "heartbeat": {"task": "ops.tasks.broadcast_heartbeat", "schedule": 1.0},
        "fast": {"task": "fast", "schedule": 5.0},
        "slow": {"task": "slow", "schedule": 60.0},
        "broken": {"task": "broken", "schedule": 5.0},
    }
    ran: list[str] = []

    def run(task: str) -> None:
        ran.append(task)
        if task == "broken":
            raise RuntimeError("boom")

    clock = Clock()
    beat = EmbeddedBeat(clock=clock, run=run)
    assert beat.tick() == []  # not before the start delay
    clock.now += embedded_beat.START_DELAY
    assert sorted(beat.tick()) == ["broken", "fast", "slow"]  # the heartbeat needs workers: never
    clock.now += 5
    assert sorted(beat.tick()) == ["broken", "fast"]
    clock.now += 55
    assert sorted(beat.tick()) == ["broken", "fast", "slow"]
    assert beat.seconds_to_next() == pytest.approx(5.0)


def test_it_starts_only_in_the_development_servers_process_without_a_broker(
    settings: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.EMBEDDED_BEAT = True  # type: ignore[attr-defined]
    settings.REDIS_URL = "redis://127.0.0.1:6379/0"  # type: ignore[attr-defined]
    monkeypatch.setenv("RUN_MAIN", "true")
    assert embedded_beat.maybe_start() is None  # beat runs beside a broker
    settings.REDIS_URL = ""  # type: ignore[attr-defined]
    monkeypatch.delenv("RUN_MAIN")
    assert embedded_beat.maybe_start() is None  # a management command, the reloader's parent, gunicorn
    settings.EMBEDDED_BEAT = False  # type: ignore[attr-defined]
    monkeypatch.setenv("RUN_MAIN", "true")
    assert embedded_beat.maybe_start() is None


@pytest.mark.django_db
def test_the_demos_audit_log_is_chained_and_anchored_by_the_embedded_jobs(settings: object, tmp_path: object) -> None:
    settings.AUDIT_ANCHOR_DIR = tmp_path  # type: ignore[attr-defined]
    settings.AUDIT_CHAIN_GRACE_SECONDS = 0  # type: ignore[attr-defined]  # anything unchained is overdue
    for index in range(3):
        audit_record(action="demo.event", target_id=str(index))
    assert not audit_chain_verify().intact  # no beat: the entries stay unchained

    clock = Clock()
    beat = EmbeddedBeat(clock=clock)
    clock.now += embedded_beat.START_DELAY
    ran = beat.tick()
    assert {"audit.tasks.chain_pending", "audit.tasks.export_anchor"} <= set(ran)
    assert not AuditEntry.objects.filter(chain_seq__isnull=True).exists()
    report = audit_chain_verify()
    assert report.intact, report.problem
    assert report.anchors >= 1
