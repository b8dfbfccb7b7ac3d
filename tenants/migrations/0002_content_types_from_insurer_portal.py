"""Existing databases: the content types of the moved models follow them from ``insurer_portal`` to
``tenants``, so their permissions, group grants and admin history stay attached. New databases have
no such rows yet (``post_migrate`` creates them under ``tenants``), and this does nothing."""

from django.db import migrations

MODELS = ("insurer", "apikey", "insureruser")


def forwards(apps, schema_editor):  # type: ignore[no-untyped-def]
    _relabel(apps, schema_editor, old="insurer_portal", new="tenants")


def backwards(apps, schema_editor):  # type: ignore[no-untyped-def]
    _relabel(apps, schema_editor, old="tenants", new="insurer_portal")


def _relabel(apps, schema_editor, *, old: str, new: str) -> None:  # type: ignore[no-untyped-def]
    content_type = apps.get_model("contenttypes", "ContentType")
    rows = content_type.objects.using(schema_editor.connection.alias)
    for model in MODELS:
        if not rows.filter(app_label=new, model=model).exists():
            rows.filter(app_label=old, model=model).update(app_label=new)


class Migration(migrations.Migration):
    dependencies = [
        ("tenants", "0001_initial"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(forwards, backwards, elidable=True)]
