"""The audit log's database guard, completed (on PostgreSQL; nothing on SQLite).

* DELETE and TRUNCATE: pgtrigger triggers declared on the model (``AuditEntry.Meta.triggers``). Migration
  0002 let TRUNCATE through (row triggers do not fire on it), so the table could be emptied and refilled.
* INSERT and UPDATE: ``audit_entry_append_only()`` now also guards INSERT. A new row must come unchained
  (a row inserted with chain values of its own would forge a link, or take the position the chainer needs
  next and stop it); its time is the database's clock, whatever the writer sent (no backdated entry); and
  its detail nests at most 32 levels (the chainer and the verifier decode every detail; one they cannot
  decode would stop the chain behind it). An UPDATE must set all three chain fields at once.

The function stays plain SQL rather than a pgtrigger trigger: pgtrigger's functions honour the session
setting ``pgtrigger.ignore``, which any role may SET, and every zone's role may insert here.
"""

import pgtrigger.compiler
import pgtrigger.migrations
from django.db import migrations

GUARD = """
CREATE OR REPLACE FUNCTION audit_entry_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.chain_seq IS NOT NULL OR NEW.prev_hash IS NOT NULL OR NEW.hash IS NOT NULL THEN
            RAISE EXCEPTION 'audit_auditentry is append-only: a new entry comes without chain fields';
        END IF;
        IF jsonb_path_exists(NEW.detail, 'strict $.**{33 to last}') THEN
            RAISE EXCEPTION 'audit_auditentry: an entry''s detail nests at most 32 levels';
        END IF;
        NEW.at := clock_timestamp();
        RETURN NEW;
    END IF;
    IF OLD.chain_seq IS NOT NULL OR OLD.prev_hash IS NOT NULL OR OLD.hash IS NOT NULL
       OR NEW.chain_seq IS NULL OR NEW.prev_hash IS NULL OR NEW.hash IS NULL
       OR (NEW.id, NEW.at, NEW.action, NEW.actor, NEW.target_type, NEW.target_id, NEW.detail)
          IS DISTINCT FROM (OLD.id, OLD.at, OLD.action, OLD.actor, OLD.target_type, OLD.target_id, OLD.detail)
    THEN
        RAISE EXCEPTION 'audit_auditentry is append-only: only NULL chain fields may be set, all three at once';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS audit_entry_append_only ON audit_auditentry;
CREATE TRIGGER audit_entry_append_only
    BEFORE INSERT OR UPDATE ON audit_auditentry
    FOR EACH ROW EXECUTE FUNCTION audit_entry_append_only();
"""

# Migration 0002's guard: UPDATE once from NULL chain fields, no DELETE; INSERT and TRUNCATE unguarded.
PREVIOUS = """
CREATE OR REPLACE FUNCTION audit_entry_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'audit_auditentry is append-only: DELETE refused';
    END IF;
    IF OLD.chain_seq IS NOT NULL OR OLD.prev_hash IS NOT NULL OR OLD.hash IS NOT NULL
       OR (NEW.id, NEW.at, NEW.action, NEW.actor, NEW.target_type, NEW.target_id, NEW.detail)
          IS DISTINCT FROM (OLD.id, OLD.at, OLD.action, OLD.actor, OLD.target_type, OLD.target_id, OLD.detail)
    THEN
        RAISE EXCEPTION 'audit_auditentry is append-only: only NULL chain fields may be set';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS audit_entry_append_only ON audit_auditentry;
CREATE TRIGGER audit_entry_append_only
    BEFORE UPDATE OR DELETE ON audit_auditentry
    FOR EACH ROW EXECUTE FUNCTION audit_entry_append_only();
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(GUARD)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(PREVIOUS)


class Migration(migrations.Migration):
    dependencies = [("audit", "0003_approval")]

    operations = [
        pgtrigger.migrations.AddTrigger(
            model_name="auditentry",
            trigger=pgtrigger.compiler.Trigger(
                name="audit_entry_no_delete",
                sql=pgtrigger.compiler.UpsertTriggerSql(
                    func="RAISE EXCEPTION 'pgtrigger: Cannot delete rows from % table', TG_TABLE_NAME;",
                    hash="2905c9161fc27a5bfa3cb31eeca060645fe2e1ab",
                    operation="DELETE",
                    pgid="pgtrigger_audit_entry_no_delete_d47f9",
                    table="audit_auditentry",
                    when="BEFORE",
                ),
            ),
        ),
        pgtrigger.migrations.AddTrigger(
            model_name="auditentry",
            trigger=pgtrigger.compiler.Trigger(
                name="audit_entry_no_truncate",
                sql=pgtrigger.compiler.UpsertTriggerSql(
                    func="RAISE EXCEPTION 'audit_auditentry is append-only: TRUNCATE refused';",
                    hash="0bed24dc07135a916bad063e3a5a1dcc0182a368",
                    level="STATEMENT",
                    operation="TRUNCATE",
                    pgid="pgtrigger_audit_entry_no_truncate_59da6",
                    table="audit_auditentry",
                    when="BEFORE",
                ),
            ),
        ),
        migrations.RunPython(forwards, backwards),
    ]
