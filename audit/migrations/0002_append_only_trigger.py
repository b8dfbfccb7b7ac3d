"""PostgreSQL refuses, at the database, any DELETE of an audit entry and any UPDATE except the chainer's
one-time setting of NULL chain fields (whoever connects: the ORM, raw SQL, psql). TRUNCATE is left
to the table owner (the test suite's flush uses it); the daily anchor catches a truncated chain."""

from django.db import migrations

CREATE = """
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
CREATE TRIGGER audit_entry_append_only
    BEFORE UPDATE OR DELETE ON audit_auditentry
    FOR EACH ROW EXECUTE FUNCTION audit_entry_append_only();
"""

DROP = """
DROP TRIGGER IF EXISTS audit_entry_append_only ON audit_auditentry;
DROP FUNCTION IF EXISTS audit_entry_append_only();
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]

    operations = [migrations.RunPython(forwards, backwards)]
