"""The tenant tables, as ``insurer_portal`` 0001-0003 created them (same table names, same columns).

This migration replaces those three: a database that applied them counts this one as applied and runs
nothing, a new database creates the tables here. Their files are gone, so no migration of a lower app
depends on ``insurer_portal`` any more.
"""

import django.core.validators
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    replaces = [
        ("insurer_portal", "0001_initial"),
        ("insurer_portal", "0002_apikey"),
        ("insurer_portal", "0003_insurer_user"),
    ]

    dependencies = [
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="Insurer",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "slug",
                    models.SlugField(
                        max_length=63,
                        unique=True,
                        validators=[
                            django.core.validators.RegexValidator(
                                "^[a-z0-9][a-z0-9-]{1,62}$",
                                "Use 2-63 lower-case letters, digits and hyphens, starting with a letter or digit.",
                            )
                        ],
                        verbose_name="slug",
                    ),
                ),
                ("name", models.CharField(max_length=200, verbose_name="name")),
                ("is_active", models.BooleanField(default=True, verbose_name="active")),
                ("created_at", models.DateTimeField(auto_now_add=True, verbose_name="created")),
            ],
            options={
                "verbose_name": "insurer",
                "verbose_name_plural": "insurers",
                "db_table": "insurer_portal_insurer",
                "ordering": ["name"],
            },
        ),
        migrations.CreateModel(
            name="ApiKey",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(blank=True, default="", max_length=100, verbose_name="name")),
                ("prefix", models.CharField(max_length=16, unique=True, verbose_name="prefix")),
                ("key_sha256", models.CharField(max_length=64, verbose_name="key SHA-256")),
                ("created_at", models.DateTimeField(auto_now_add=True, verbose_name="created")),
                ("last_used_at", models.DateTimeField(blank=True, null=True, verbose_name="last used")),
                ("revoked_at", models.DateTimeField(blank=True, null=True, verbose_name="revoked")),
                (
                    "insurer",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="api_keys",
                        to="tenants.insurer",
                        verbose_name="insurer",
                    ),
                ),
            ],
            options={
                "verbose_name": "API key",
                "verbose_name_plural": "API keys",
                "db_table": "insurer_portal_apikey",
                "ordering": ["-created_at"],
            },
        ),
        migrations.CreateModel(
            name="InsurerUser",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "role",
                    models.CharField(
                        choices=[("underwriter", "underwriter"), ("admin", "insurer admin")],
                        default="underwriter",
                        max_length=16,
                        verbose_name="role",
                    ),
                ),
                (
                    "insurer",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="members",
                        to="tenants.insurer",
                        verbose_name="insurer",
                    ),
                ),
                (
                    "user",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="insurer_membership",
                        to=settings.AUTH_USER_MODEL,
                        verbose_name="user",
                    ),
                ),
            ],
            options={
                "verbose_name": "insurer user",
                "verbose_name_plural": "insurer users",
                "db_table": "insurer_portal_insureruser",
            },
        ),
    ]
