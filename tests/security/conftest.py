"""Fixtures the security tests share: the trust zones' database roles, made once per module."""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from io import StringIO
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from django.core.management import call_command
from django.db import connection

from ops import db_roles, db_zones
from ops.logging import JsonFormatter, RedactPersonalData, RequestIdFilter

POSTGRES = connection.vendor == "postgresql"
DENIED = "42501"  # insufficient_privilege: "permission denied for ..." and "must be owner of ..."


class Roles:
    """The roles the command made for this module, and a way to act as each."""

    def __init__(self, prefix: str, passwords: dict[str, str], password_file: Path) -> None:
        self.prefix = prefix
        self.passwords = passwords
        self.password_file = password_file
        self.names = db_roles.role_names(prefix)

    @contextmanager
    def session(self, zone: str) -> Iterator[Any]:
        settings = connection.settings_dict
        conn = psycopg2.connect(
            dbname=settings["NAME"], user=self.names[zone], password=self.passwords[zone],
            host=settings["HOST"] or "127.0.0.1", port=settings["PORT"] or 5432, connect_timeout=10,
        )  # fmt: skip
        try:
            yield conn
        finally:
            conn.close()

    def attempt(self, zone: str, sql: str) -> str:
        """'ok' when the privilege check passed (the statement ran, or failed on a constraint), 'denied'
        when PostgreSQL refused it for lack of a privilege. Nothing is ever committed."""
        with self.session(zone) as conn, conn.cursor() as cursor:
            try:
                cursor.execute(sql)
            except psycopg2.Error as exc:
                if exc.pgcode == DENIED:
                    return "denied"
                if exc.pgcode and exc.pgcode.startswith("23"):  # integrity: the privilege check came first
                    return "ok"
                raise
            finally:
                conn.rollback()
        return "ok"


def _prefix() -> str:
    name = re.sub(r"[^a-z0-9_]", "_", str(connection.settings_dict["NAME"]).lower())
    return f"{name[:40]}_zt_"


def _run(*args: str) -> str:
    out = StringIO()
    call_command("db_roles", *args, stdout=out)
    return out.getvalue()


@pytest.fixture(scope="module")
def roles(django_db_setup: None, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Roles]:
    if not POSTGRES:
        pytest.skip("database roles and privileges exist on PostgreSQL only")
    passwords = {zone: secrets.token_urlsafe(18) for zone in (*db_zones.ZONES, db_zones.OWNER)}
    password_file = tmp_path_factory.mktemp("db-roles") / "passwords"
    password_file.write_text("".join(f"{zone}={password}\n" for zone, password in passwords.items()))
    made = Roles(_prefix(), passwords, password_file)
    with django_db_blocker.unblock():
        _run("--prefix", made.prefix, "--password-file", str(password_file))
        yield made
        _drop_roles(made)


def _drop_roles(made: Roles) -> None:
    """Give the tables back to whoever runs the tests and remove the module's roles from the cluster."""
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(f"REASSIGN OWNED BY {quote(made.names[db_zones.OWNER])} TO CURRENT_USER")
        for role in made.names.values():
            cursor.execute(f"DROP OWNED BY {quote(role)}")
            cursor.execute(f"DROP ROLE {quote(role)}")


class EveryLogLine(logging.Handler):
    """Every record of every logger, formatted as production writes it (JSON, with the filters)."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.addFilter(RequestIdFilter())
        self.addFilter(RedactPersonalData())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    """The lines production would have logged during the test (every logger, at DEBUG)."""
    handler = EveryLogLine()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield handler.lines
    root.removeHandler(handler)
    root.setLevel(level)
