"""Each trust zone's database role can do what ops/db_zones.py declares and nothing else.

The PostgreSQL tests run ``manage.py db_roles`` against the test database (with their own role prefix, so
they never touch a deployment's roles on a shared cluster), connect as each role with psycopg2 and try
real statements: every forbidden read and write is refused with ``permission denied`` (SQLSTATE 42501),
every declared one gets past the privilege check. A privilege check comes before constraints, so an
``INSERT ... DEFAULT VALUES`` that fails on a NOT NULL column proves the role may insert.

On SQLite there are no roles or privileges: those tests skip for that reason alone, and the command says
it has nothing to do. With DATABASE_URL set, an unreachable PostgreSQL fails the run (pytest-django cannot
create the test database), it never skips.
"""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import pytest
from django.apps import apps
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from ops import db_roles, db_zones
from tests.security.conftest import POSTGRES, Roles, _run

postgres_only = [
    pytest.mark.integration,
    pytest.mark.skipif(not POSTGRES, reason="database roles and privileges exist on PostgreSQL only"),
]


def table(label: str) -> str:
    return str(apps.get_model(label)._meta.db_table)


RECORDS = ["datadomain.Condition", "datadomain.Encounter", "datadomain.Observation"]
IDENTITY_AND_CONSENT = ["datadomain.Patient", "datadomain.Consent", "datadomain.QuarantinedLine"]
TIERING = ["underwriting.UnderwritingRequest", "underwriting.ScoringInput", "underwriting.TieringSecret"]


# --- the declaration itself (no database needed) -----------------------------------------------------


def test_every_installed_model_has_a_line_in_the_matrix() -> None:
    tables = db_roles.model_tables()
    assert set(tables.values()) - set(db_zones.MATRIX) == set()
    assert set(db_zones.MATRIX) - set(tables.values()) == set()


@pytest.mark.parametrize("label", sorted(db_zones.MATRIX))
def test_matrix_names_real_zones_privileges_and_columns(label: str) -> None:
    model = apps.get_model(label)
    columns = {field.column for field in model._meta.concrete_fields}
    for zone, spec in db_zones.MATRIX[label].items():
        assert zone in db_zones.ZONES, zone
        for _, named in db_roles.parse_spec(spec):
            assert set(named) <= columns, (label, zone, set(named) - columns)


def test_specs_are_read_like_sql() -> None:
    assert db_roles.parse_spec("INSERT SELECT(id)") == [("INSERT", ()), ("SELECT", ("id",))]
    assert db_roles.parse_spec("UPDATE(chain_seq, hash) DELETE") == [("UPDATE", ("chain_seq", "hash")), ("DELETE", ())]
    for bad in ["SELECT(", "SELECT()", "SELECT TRUNCATE", "select"]:
        with pytest.raises(db_roles.RoleSetupError):
            db_roles.parse_spec(bad)


def test_the_custodian_is_declared_no_table_it_must_not_read() -> None:
    for label in [*RECORDS, *IDENTITY_AND_CONSENT, *TIERING, "audit.AuditEntry"]:
        for privilege, columns in db_roles.parse_spec(db_zones.MATRIX[label].get(db_zones.CUSTODIAN, "")):
            assert privilege != "SELECT" or columns == ("id",), label


def test_the_command_has_nothing_to_do_without_postgresql(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connection, "vendor", "sqlite")
    out = StringIO()
    call_command("db_roles", "--check", stdout=out)
    assert "has no roles or privileges" in out.getvalue()
    assert "Nothing to do" in out.getvalue()


# --- PostgreSQL: the roles as they are ----------------------------------------------------------------


def _grants(made: Roles) -> set[tuple[str, ...]]:
    """Every privilege PUBLIC and the module's roles hold on the tables, columns, schema and database."""
    names = list(made.names.values())
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, '', coalesce(r.rolname, 'PUBLIC'), x.privilege_type FROM pg_class c"
            " CROSS JOIN aclexplode(c.relacl) x LEFT JOIN pg_roles r ON r.oid = x.grantee"
            " WHERE c.relnamespace = current_schema()::regnamespace AND (x.grantee = 0 OR r.rolname = ANY(%s))"
            " UNION ALL SELECT c.relname, a.attname, coalesce(r.rolname, 'PUBLIC'), x.privilege_type"
            " FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid CROSS JOIN aclexplode(a.attacl) x"
            " LEFT JOIN pg_roles r ON r.oid = x.grantee"
            " WHERE c.relnamespace = current_schema()::regnamespace AND (x.grantee = 0 OR r.rolname = ANY(%s))"
            " UNION ALL SELECT 'database', '', coalesce(r.rolname, 'PUBLIC'), x.privilege_type FROM pg_database d"
            " CROSS JOIN aclexplode(d.datacl) x LEFT JOIN pg_roles r ON r.oid = x.grantee"
            " WHERE d.datname = current_database() AND (x.grantee = 0 OR r.rolname = ANY(%s))",
            [names, names, names],
        )
        return {tuple(row) for row in cursor.fetchall()}


class TestRoles:
    pytestmark = [*postgres_only, pytest.mark.django_db]

    def test_each_role_logs_in_inherits_nothing_and_has_no_superpowers(self, roles: Roles) -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT rolname, rolcanlogin, rolinherit, rolsuper, rolcreatedb, rolcreaterole, rolbypassrls"
                " FROM pg_roles WHERE rolname = ANY(%s)",
                [list(roles.names.values())],
            )
            found = {row[0]: row[1:] for row in cursor.fetchall()}
        assert found == dict.fromkeys(roles.names.values(), (True, False, False, False, False, False))
        for zone in roles.names:
            with roles.session(zone) as conn, conn.cursor() as cursor:
                cursor.execute("SELECT current_user")
                assert cursor.fetchone() == (roles.names[zone],)

    @pytest.mark.parametrize(
        "label",
        [*RECORDS, *IDENTITY_AND_CONSENT, *TIERING, "audit.AuditEntry", "datadomain.EncryptedFeatureVector"],
    )
    def test_the_custodian_reads_no_record_identity_consent_tier_or_audit_entry(self, roles: Roles, label: str) -> None:
        assert roles.attempt("custodian", f"SELECT * FROM {table(label)}") == "denied"

    def test_the_custodian_cannot_read_a_ciphertext_or_another_audit_entry(self, roles: Roles) -> None:
        vectors, audit = table("datadomain.EncryptedFeatureVector"), table("audit.AuditEntry")
        assert roles.attempt("custodian", f"SELECT ciphertexts FROM {vectors}") == "denied"
        assert roles.attempt("custodian", f"SELECT detail, target_id FROM {audit}") == "denied"
        assert roles.attempt("custodian", f"SELECT id FROM {audit} WHERE action = 'request.transition'") == "denied"
        assert roles.attempt("custodian", f"UPDATE {audit} SET hash = NULL WHERE false") == "denied"
        assert roles.attempt("custodian", f"DELETE FROM {audit} WHERE false") == "denied"

    def test_the_custodian_appends_to_the_audit_log_and_spends_grants(self, roles: Roles) -> None:
        audit, grants = table("audit.AuditEntry"), table("datadomain.ComparisonGrant")
        insert = (
            f"INSERT INTO {audit} (at, action, actor, target_type, target_id, detail)"
            " VALUES (now(), 'custodian.answer', 'custodian', '', '', '{}') RETURNING id"
        )
        assert roles.attempt("custodian", insert) == "ok"
        assert roles.attempt("custodian", f"SELECT * FROM {grants} FOR UPDATE") == "ok"
        assert roles.attempt("custodian", f"UPDATE {grants} SET answer = NULL, status = 'answered' WHERE false") == "ok"
        assert roles.attempt("custodian", f"INSERT INTO {grants} DEFAULT VALUES") == "denied"
        keys = table("datadomain.CustodianKey")
        assert roles.attempt("custodian", f"INSERT INTO {keys} DEFAULT VALUES") == "ok"
        assert roles.attempt("custodian", f"SELECT count(*) FROM {table('datadomain.EncryptedFeatureVector')}") == "ok"

    @pytest.mark.parametrize("label", [*RECORDS, *IDENTITY_AND_CONSENT, "audit.AuditEntry"])
    def test_scoring_reads_no_record_identity_consent_or_audit_entry(self, roles: Roles, label: str) -> None:
        assert roles.attempt("scoring", f"SELECT * FROM {table(label)}") == "denied"

    def test_scoring_cannot_see_whether_the_custodian_took_its_query_for_misuse(self, roles: Roles) -> None:
        """The audit entries and flags that record a failed check are out of the scoring zone's reach: a
        worker reading them would learn whether its query passed. The domain counts them for the flags."""
        audit, flags = table("audit.AuditEntry"), table("underwriting.MisuseFlag")
        count = f"SELECT count(id), min(at), max(at) FROM {audit} WHERE action = 'custodian.misuse'"
        assert roles.attempt("scoring", count) == "denied"
        assert roles.attempt("scoring", f"SELECT target_id, detail FROM {audit}") == "denied"
        assert roles.attempt("scoring", f"SELECT * FROM {flags}") == "denied"
        assert roles.attempt("scoring", f"UPDATE {flags} SET status = 'closed' WHERE false") == "denied"
        assert roles.attempt("domain", count) == "ok"
        assert roles.attempt("domain", f"UPDATE {flags} SET count = 1 WHERE false") == "ok"

    def test_scoring_cannot_write_grants_or_plant_a_custodian_key(self, roles: Roles) -> None:
        grants, keys = table("datadomain.ComparisonGrant"), table("datadomain.CustodianKey")
        assert roles.attempt("scoring", f"SELECT * FROM {grants}") == "denied"
        assert roles.attempt("scoring", f"INSERT INTO {grants} DEFAULT VALUES") == "denied"
        assert roles.attempt("scoring", f"UPDATE {grants} SET status = 'issued' WHERE false") == "denied"
        assert roles.attempt("scoring", f"INSERT INTO {keys} DEFAULT VALUES") == "denied"
        assert roles.attempt("scoring", f"UPDATE {keys} SET status = 'active' WHERE false") == "denied"
        assert roles.attempt("scoring", f"SELECT sealed_path FROM {keys}") == "denied"

    def test_scoring_reads_public_keys_and_keeps_its_tiering_secrets(self, roles: Roles) -> None:
        keys, inputs = table("datadomain.CustodianKey"), table("underwriting.ScoringInput")
        secrets_table = table("underwriting.TieringSecret")
        assert roles.attempt("scoring", f"SELECT key_id, public_key_json, status FROM {keys}") == "ok"
        assert roles.attempt("scoring", f"SELECT * FROM {inputs}") == "ok"
        assert roles.attempt("scoring", f"DELETE FROM {inputs} WHERE false") == "ok"
        assert roles.attempt("scoring", f"INSERT INTO {inputs} DEFAULT VALUES") == "denied"
        assert roles.attempt("scoring", f"INSERT INTO {secrets_table} DEFAULT VALUES") == "ok"
        assert roles.attempt("scoring", f"SELECT * FROM {secrets_table} FOR UPDATE") == "ok"

    @pytest.mark.parametrize("zone", ["web", "domain", "custodian"])
    def test_only_scoring_reaches_the_tiering_secrets(self, roles: Roles, zone: str) -> None:
        assert roles.attempt(zone, f"SELECT * FROM {table('underwriting.TieringSecret')}") == "denied"

    def test_only_the_domain_hands_scoring_its_input_and_issues_grants(self, roles: Roles) -> None:
        inputs, grants = table("underwriting.ScoringInput"), table("datadomain.ComparisonGrant")
        assert roles.attempt("domain", f"INSERT INTO {inputs} DEFAULT VALUES") == "ok"
        assert roles.attempt("domain", f"SELECT * FROM {inputs}") == "denied"
        assert roles.attempt("domain", f"INSERT INTO {grants} DEFAULT VALUES") == "ok"
        assert roles.attempt("domain", f"SELECT mac_key FROM {grants}") == "denied"
        for zone in ["web", "scoring", "custodian"]:
            assert roles.attempt(zone, f"INSERT INTO {grants} DEFAULT VALUES") == "denied", zone
        assert roles.attempt("web", f"SELECT * FROM {grants}") == "denied"

    @pytest.mark.parametrize("label", RECORDS)
    def test_web_reads_no_record_but_can_erase_a_subjects(self, roles: Roles, label: str) -> None:
        assert roles.attempt("web", f"SELECT * FROM {table(label)}") == "denied"
        assert roles.attempt("web", f"SELECT count(*) FROM {table(label)} WHERE resource_id IS NOT NULL") == "denied"
        assert roles.attempt("web", f"DELETE FROM {table(label)} WHERE patient_id = -1") == "ok"

    @pytest.mark.parametrize("zone", ["web", "scoring", "custodian"])
    def test_only_the_domain_reads_the_plaintext_feature_values(self, roles: Roles, zone: str) -> None:
        """The values the domain's encrypted vectors were made from are as telling as the records."""
        values = table("datadomain.FeatureValues")
        assert roles.attempt(zone, f"SELECT * FROM {values}") == "denied"
        assert roles.attempt(zone, f"SELECT count(*) FROM {values} WHERE values::text LIKE '%1%'") == "denied"
        assert roles.attempt("domain", f"SELECT * FROM {values}") == "ok"
        # The web erases a subject: it deletes by patient and reads nothing else.
        assert roles.attempt("web", f"DELETE FROM {values} WHERE patient_id = -1") == "ok"

    def test_web_checks_identity_and_records_consent(self, roles: Roles) -> None:
        patients, consents = table("datadomain.Patient"), table("datadomain.Consent")
        assert roles.attempt("web", f"SELECT subject_key, name FROM {patients}") == "ok"
        assert roles.attempt("web", f"INSERT INTO {consents} DEFAULT VALUES") == "ok"
        assert roles.attempt("web", f"INSERT INTO {patients} DEFAULT VALUES") == "denied"

    @pytest.mark.parametrize("zone", [*db_zones.ZONES])
    def test_only_migrate_changes_the_schema(self, roles: Roles, zone: str) -> None:
        audit = table("audit.AuditEntry")
        assert roles.attempt(zone, "CREATE TABLE zone_probe (id int)") == "denied"
        assert roles.attempt(zone, f"ALTER TABLE {audit} ADD COLUMN probe int") == "denied"
        assert roles.attempt(zone, f"DROP TABLE {audit}") == "denied"
        assert roles.attempt(zone, f"TRUNCATE {audit}") == "denied"

    def test_migrate_owns_the_schema(self, roles: Roles) -> None:
        audit = table("audit.AuditEntry")
        with roles.session(db_zones.OWNER) as conn, conn.cursor() as cursor:
            cursor.execute("CREATE TABLE zone_probe (id int)")
            cursor.execute(f"ALTER TABLE {audit} ADD COLUMN probe int")
            cursor.execute("DROP TABLE zone_probe")
            conn.rollback()

    def test_public_holds_nothing_on_the_apps_tables(self, roles: Roles) -> None:
        assert {grant for grant in _grants(roles) if grant[2] == "PUBLIC"} == set()


class TestCommand:
    pytestmark = [*postgres_only, pytest.mark.django_db(transaction=True)]

    def test_running_it_again_changes_nothing(self, roles: Roles) -> None:
        before = _grants(roles)
        out = _run("--prefix", roles.prefix)
        assert "already match" in out
        assert _grants(roles) == before
        assert "match ops/db_zones.py" in _run("--prefix", roles.prefix, "--check")

    def test_check_notices_a_planted_privilege_and_the_command_removes_it(self, roles: Roles) -> None:
        records, custodian = table("datadomain.Condition"), connection.ops.quote_name(roles.names["custodian"])
        with connection.cursor() as cursor:
            cursor.execute(f"GRANT SELECT ON {records} TO {custodian}")
            cursor.execute(f"GRANT INSERT ON {table('audit.AuditEntry')} TO PUBLIC")
        try:
            assert roles.attempt("custodian", f"SELECT * FROM {records}") == "ok"
            out = StringIO()
            with pytest.raises(CommandError, match="2 difference"):
                call_command("db_roles", "--prefix", roles.prefix, "--check", stdout=out)
            assert f"drift: REVOKE SELECT ON TABLE {connection.ops.quote_name(records)} FROM {custodian};" in (
                out.getvalue()
            )
            assert "FROM PUBLIC" in out.getvalue()
        finally:
            _run("--prefix", roles.prefix)
        assert roles.attempt("custodian", f"SELECT * FROM {records}") == "denied"
        _run("--prefix", roles.prefix, "--check")

    def test_check_notices_a_superuser_a_membership_and_a_foreign_owner(self, roles: Roles) -> None:
        quote = connection.ops.quote_name
        scoring, custodian = quote(roles.names["scoring"]), quote(roles.names["custodian"])
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER ROLE {scoring} INHERIT")
            cursor.execute(f"GRANT {custodian} TO {scoring}")
            cursor.execute(f"ALTER TABLE {table('ops.WorkerHeartbeat')} OWNER TO {custodian}")
        try:
            out = StringIO()
            with pytest.raises(CommandError, match="difference"):
                call_command("db_roles", "--prefix", roles.prefix, "--check", stdout=out)
            assert f"ALTER ROLE {scoring} NOINHERIT" in out.getvalue()
            assert f"REVOKE {custodian} FROM {scoring}" in out.getvalue()
            assert "OWNER TO" in out.getvalue()
        finally:
            _run("--prefix", roles.prefix)
        _run("--prefix", roles.prefix, "--check")

    def test_a_privilege_taken_out_of_the_matrix_is_revoked(self, roles: Roles) -> None:
        patients = table("datadomain.Patient")
        narrower = {**db_zones.MATRIX, "datadomain.Patient": {db_zones.DOMAIN: db_zones.ALL, db_zones.WEB: "SELECT"}}
        try:
            db_roles.apply(connection, db_roles.plan(connection, prefix=roles.prefix, matrix=narrower))
            assert roles.attempt("web", f"DELETE FROM {patients} WHERE false") == "denied"
            assert roles.attempt("web", f"SELECT name FROM {patients}") == "ok"
        finally:
            _run("--prefix", roles.prefix)
        assert roles.attempt("web", f"DELETE FROM {patients} WHERE false") == "ok"

    def test_a_column_grant_replaces_a_table_grant(self, roles: Roles) -> None:
        keys = table("datadomain.CustodianKey")
        with connection.cursor() as cursor:
            cursor.execute(f"GRANT SELECT ON {keys} TO {connection.ops.quote_name(roles.names['scoring'])}")
        try:
            assert roles.attempt("scoring", f"SELECT sealed_path FROM {keys}") == "ok"
        finally:
            _run("--prefix", roles.prefix)
        assert roles.attempt("scoring", f"SELECT sealed_path FROM {keys}") == "denied"
        assert roles.attempt("scoring", f"SELECT key_id, public_key_json FROM {keys}") == "ok"

    def test_dry_run_prints_sql_and_changes_nothing(self, roles: Roles) -> None:
        records, custodian = table("datadomain.Condition"), connection.ops.quote_name(roles.names["custodian"])
        with connection.cursor() as cursor:
            cursor.execute(f"GRANT SELECT ON {records} TO {custodian}")
        try:
            out = _run("--prefix", roles.prefix, "--dry-run", "--password-file", str(roles.password_file))
            assert f"REVOKE SELECT ON TABLE {connection.ops.quote_name(records)} FROM {custodian};" in out
            assert "PASSWORD '***'" in out
            assert not any(password in out for password in roles.passwords.values())
            assert roles.attempt("custodian", f"SELECT * FROM {records}") == "ok"
        finally:
            _run("--prefix", roles.prefix)

    def test_passwords_come_from_the_environment_too(self, roles: Roles, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("DB_ROLE_PASSWORD_SCORING", "not-printed-anywhere")
        out = _run("--prefix", roles.prefix, "--dry-run")
        assert f"ALTER ROLE {connection.ops.quote_name(roles.names['scoring'])} PASSWORD '***'" in out
        assert "not-printed-anywhere" not in out

    def test_a_bad_password_file_or_prefix_is_refused(self, roles: Roles, tmp_path: Path) -> None:
        bad = tmp_path / "passwords"
        bad.write_text("auditor=secret\n")
        with pytest.raises(CommandError, match="zone=password"):
            _run("--prefix", roles.prefix, "--password-file", str(bad))
        with pytest.raises(CommandError, match="not a usable role name"):
            _run("--prefix", "Bad-Prefix", "--dry-run")
