from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, connections

from config.settings.env import secret
from ops import db_roles, db_zones


class Command(BaseCommand):
    help = (
        "Create or update one PostgreSQL role per trust zone (web, domain, scoring, custodian) and the schema "
        "owner (migrate), and grant each exactly the privileges ops/db_zones.py declares: everything else is "
        "revoked, from PUBLIC too. Safe to run again; --check reports drift without changing anything. Run it "
        "as a superuser (or a role that may create roles and owns the database). Nothing to do on SQLite."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--prefix",
            default=None,
            help="role name prefix (default DB_ROLE_PREFIX): several databases on one cluster use different ones",
        )
        parser.add_argument(
            "--password-file",
            type=Path,
            help="lines 'zone=password' (web, domain, scoring, custodian, migrate); otherwise DB_ROLE_PASSWORD_<ZONE> "
            "or DB_ROLE_PASSWORD_<ZONE>_FILE; a role without one keeps its password",
        )
        parser.add_argument("--dry-run", action="store_true", help="print the SQL, change nothing")
        parser.add_argument(
            "--check", action="store_true", help="compare the database with ops/db_zones.py; exit 1 on any difference"
        )
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS, help="database alias (default 'default')")

    def handle(self, *args: Any, **options: Any) -> None:
        connection = connections[options["database"]]
        if connection.vendor != "postgresql":
            self.stdout.write(
                f"db_roles: the {connection.vendor} database has no roles or privileges; every process shares its "
                "one connection (the embedded default). Nothing to do."
            )
            return
        prefix = settings.DB_ROLE_PREFIX if options["prefix"] is None else options["prefix"]
        try:
            passwords = {} if options["check"] else _passwords(options["password_file"])
            planned = db_roles.plan(connection, prefix=prefix, passwords=passwords)
        except db_roles.RoleSetupError as exc:
            raise CommandError(str(exc)) from exc
        for note in planned.notes:
            self.stdout.write(f"note: {note}")
        if options["check"]:
            self._check(planned, prefix)
        elif options["dry_run"]:
            for statement in [*planned.statements, *planned.passwords]:
                self.stdout.write(f"{statement};")
            self.stdout.write(f"db_roles: dry run, {len(planned.statements)} change(s) not applied.")
        else:
            db_roles.apply(connection, planned)
            self._report(planned, prefix)

    def _check(self, planned: db_roles.Plan, prefix: str) -> None:
        if not planned.statements:
            self.stdout.write(self.style.SUCCESS(f"db_roles: roles '{prefix}*' and privileges match ops/db_zones.py."))
            return
        for statement in planned.statements:
            self.stdout.write(f"drift: {statement};")
        raise CommandError(
            f"{len(planned.statements)} difference(s) between the database and ops/db_zones.py; "
            "`manage.py db_roles` corrects them."
        )

    def _report(self, planned: db_roles.Plan, prefix: str) -> None:
        for statement in planned.statements:
            self.stdout.write(f"{statement};")
        if planned.passwords:
            self.stdout.write(f"db_roles: passwords set for {len(planned.passwords)} role(s).")
        if planned.statements:
            self.stdout.write(self.style.SUCCESS(f"db_roles: {len(planned.statements)} change(s) applied."))
        else:
            self.stdout.write(self.style.SUCCESS(f"db_roles: roles '{prefix}*' already match ops/db_zones.py."))


def _passwords(path: Path | None) -> dict[str, str]:
    """Zone -> password, from ``--password-file`` or the environment (``DB_ROLE_PASSWORD_WEB[_FILE]`` ...)."""
    zones = (*db_zones.ZONES, db_zones.OWNER)
    if path is not None:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise CommandError(f"--password-file: {exc.strerror}") from exc
        found = {}
        for line in lines:
            zone, equals, password = line.strip().partition("=")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if not equals or zone.strip() not in zones or not password.strip():
                raise CommandError(f"--password-file: lines must read 'zone=password' with a zone among {zones}.")
            found[zone.strip()] = password.strip()
        return found
    found = {zone: secret(f"DB_ROLE_PASSWORD_{zone.upper()}", dev_default="") for zone in zones}
    return {zone: password for zone, password in found.items() if password}
