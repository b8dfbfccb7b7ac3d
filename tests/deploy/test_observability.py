"""JSON log lines with request ids and no resident IDs; Prometheus metrics; readiness per dependency."""

from __future__ import annotations

import json
import logging

import pytest
from django.test import Client

from ops.logging import JsonFormatter, RedactPersonalData, RequestIdFilter, request_id_var

RESIDENT_ID = "11010519491231002X"


def format_line(message: str, *args: object, **extra: object) -> dict[str, object]:
    record = logging.LogRecord("t", logging.INFO, __file__, 1, message, args, None)
    record.__dict__.update(extra)
    for log_filter in (RequestIdFilter(), RedactPersonalData()):
        log_filter.filter(record)
    return json.loads(JsonFormatter().format(record))  # type: ignore[no-any-return]


def test_json_line_carries_the_request_id_and_extra_fields() -> None:
    token = request_id_var.set("abc12345")
    try:
        entry = format_line("scored %s", "req-1", route="/api/v1/x", status=200)
    finally:
        request_id_var.reset(token)
    assert entry["request_id"] == "abc12345"
    assert entry["message"] == "scored req-1"
    assert (entry["route"], entry["status"], entry["level"]) == ("/api/v1/x", 200, "INFO")


def test_resident_ids_are_masked_in_messages_and_arguments() -> None:
    assert RESIDENT_ID not in json.dumps(format_line(f"bad id {RESIDENT_ID}"))
    assert RESIDENT_ID not in json.dumps(format_line("bad id %s", RESIDENT_ID))
    assert format_line("request 123e4567-e89b-12d3-a456-426614174000")["message"].endswith("174000")  # type: ignore[union-attr]


@pytest.mark.django_db
def test_every_response_has_a_request_id_and_a_plain_one_is_kept(client: Client) -> None:
    generated = client.get("/healthz")["X-Request-ID"]
    assert len(generated) == 32
    assert client.get("/healthz", HTTP_X_REQUEST_ID="caller-id-0001")["X-Request-ID"] == "caller-id-0001"
    hostile = client.get("/healthz", HTTP_X_REQUEST_ID="x" * 200 + "\n{}")["X-Request-ID"]
    assert hostile != "x" * 200 + "\n{}"


@pytest.mark.django_db
def test_access_line_has_the_route_pattern_not_the_query(client: Client, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="ops.access"):
        client.get(f"/portal/requests/?q={RESIDENT_ID}")
    lines = [record for record in caplog.records if record.name == "ops.access"]
    assert lines
    assert RESIDENT_ID not in lines[-1].getMessage()
    assert lines[-1].__dict__["route"].startswith("/portal/")


@pytest.mark.django_db
def test_metrics_expose_requests_latencies_queues_and_states(client: Client) -> None:
    client.get("/healthz")
    body = client.get("/metrics").content.decode()
    assert 'underwriting_http_requests_total{method="GET",route="/healthz",status="200"}' in body
    assert "underwriting_http_request_duration_seconds_bucket" in body
    assert 'underwriting_dependency_up{dependency="database"} 1.0' in body
    assert "underwriting_celery_task_failures_total" in body or "underwriting_celery_tasks_total" in body


@pytest.mark.django_db
def test_metrics_token_is_required_when_set(client: Client, settings: object) -> None:
    settings.METRICS_TOKEN = "scrape-token"  # type: ignore[attr-defined]
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-token").status_code == 200


@pytest.mark.django_db
def test_readyz_marks_queues_without_a_recent_heartbeat_stale(client: Client, settings: object) -> None:
    from ops.services import heartbeat_record

    settings.REDIS_URL = settings.REDIS_URL or "redis://127.0.0.1:1/0"  # type: ignore[attr-defined]
    heartbeat_record(queue="scoring", hostname="w@h")
    queues = {row["queue"]: row for row in client.get("/readyz").json()["queues"]}
    assert queues["scoring"]["stale"] is False
    assert queues["custodian"]["stale"] is True


@pytest.mark.django_db
def test_readyz_marks_no_queue_stale_when_tasks_run_in_process(client: Client, settings: object) -> None:
    settings.REDIS_URL = ""  # type: ignore[attr-defined]  # the embedded default of `make run`
    body = client.get("/readyz").json()
    assert body["checks"]["broker"] == "in-process"
    assert body["queues"]
    assert [row["queue"] for row in body["queues"] if row["stale"]] == []


@pytest.mark.django_db
def test_metrics_answer_while_the_database_is_reachable_but_not_migrated(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.db import ProgrammingError

    from ops import selectors

    def missing_table() -> dict[str, int]:
        raise ProgrammingError('relation "underwriting_underwritingrequest" does not exist')

    monkeypatch.setattr(selectors, "requests_by_status", missing_table)
    response = client.get("/metrics")
    assert response.status_code == 200
    assert b'underwriting_dependency_up{dependency="database"} 1.0' in response.content
    assert b"underwriting_requests{" not in response.content
