"""A curious key custodian: it holds the private key and may read whatever its database role allows.

With one login for every zone it read the request rows' tiering state (the worker's shuffle and sign
flips) and so the tier and score of every request it answered. Now it connects as its own role: it can
read and spend comparison grants, and nothing that says which tier came out, what the worker's secret
state was, or which grants belong to the same person. The undefended run is the shared login.
"""

from __future__ import annotations

from typing import Any

import psycopg2
import pytest
from django.db import connection

from datadomain.models import ComparisonGrant
from tests.security.attacks.conftest import World
from tests.security.conftest import DENIED, Roles
from underwriting.models import TieringSecret, UnderwritingRequest
from underwriting.services import pipeline
from underwriting.services.pipeline import stage_drain

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="database roles exist on PostgreSQL only"),
]

WHAT_IT_WANTS = {
    "tiers": "SELECT id, tier_code, decision FROM underwriting_underwritingrequest",
    "tiering state": "SELECT request_id, state FROM underwriting_tieringsecret",
    "who each request is about": "SELECT target_id, detail FROM audit_auditentry",
    "the features it could decrypt": "SELECT ciphertexts FROM datadomain_encryptedfeaturevector",
}


def read_as(cursor: Any, sql: str) -> list[tuple[Any, ...]] | None:
    """The rows, or None when PostgreSQL refused the read for lack of a privilege."""
    try:
        cursor.execute(sql)
    except psycopg2.Error as exc:
        cursor.connection.rollback()
        if exc.pgcode != DENIED:
            raise
        return None
    return list(cursor.fetchall())


def test_the_custodian_reads_no_tier_no_tiering_state_and_cannot_link_grants(
    world: World, roles: Roles, transactional_db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    done = world.authorise(6, prefix="D", people=[0, 0, 1, 2, 3, 4])  # two requests about one person
    stage_drain("score")  # in-process: the custodian answers and the requests complete
    monkeypatch.setattr(pipeline, "_ask_custodian", lambda queries: None)
    waiting = world.authorise(3, prefix="W")
    stage_drain("score")  # these wait in ``tiering``: their secret state exists right now
    assert UnderwritingRequest.objects.filter(status="completed").count() == len(done)
    assert TieringSecret.objects.count() == len(waiting)

    with roles.session("custodian") as conn, conn.cursor() as cursor:
        learned = {what: read_as(cursor, sql) for what, sql in WHAT_IT_WANTS.items()}
        grants = read_as(cursor, "SELECT * FROM datadomain_comparisongrant")
        columns = [column.name for column in cursor.description]

    assert learned == dict.fromkeys(WHAT_IT_WANTS)  # every read refused: it learned no tier and no state
    assert grants is not None
    assert len(grants) == len(done) + len(waiting)
    # What it can read names no subject in any form: nothing to link the two requests about one person.
    assert not any("subject" in column or "patient" in column for column in columns), columns
    rows = [dict(zip(columns, row, strict=True)) for row in grants]
    same_person = [row for row in rows if row["request_ref"] in (done[0].ref, done[1].ref)]
    # Besides the grant's public shape and its times (a chunk's grants are issued and spent together, for
    # different people alike), no value is common to the two grants about one person.
    public = {"id", "status", "outcome", "comparisons", "slot_bits", "key_id", "expires_at", "created_at", "spent_at"}
    common = {name for name in set(columns) - public if same_person[0][name] == same_person[1][name]}
    assert common == set(), common

    # Undefended: the shared login of before reads every answered request's tier and every pending secret.
    with connection.cursor() as cursor:
        seen = {what: read_as(cursor.cursor, sql) for what, sql in list(WHAT_IT_WANTS.items())[:2]}
    tiers = {str(row[0]): row[1] for row in seen["tiers"] or [] if row[1]}
    assert {stolen.ref for stolen in done} <= set(tiers)
    assert len(seen["tiering state"] or []) == len(waiting)
    assert ComparisonGrant.objects.count() == len(done) + len(waiting)
