"""One PostgreSQL role per trust zone, with exactly the privileges ``ops.db_zones`` declares.

``plan`` reads the catalogs and compares what the database grants (to PUBLIC and to the project's roles)
with the declaration; the differences become SQL statements: roles to create or correct, tables to hand
to the schema owner, privileges to revoke and to grant. ``manage.py db_roles`` applies them in one
transaction, prints them (``--dry-run``) or reports them as drift (``--check``). Applying twice changes
nothing the second time: the plan is a difference, so it converges on the declaration, and a privilege
taken out of the declaration is revoked.

Run it as a superuser, or as a role that may create roles and owns the database and its tables.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.apps import apps
from django.db import transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from psycopg2.extensions import encrypt_password

from ops import db_zones

PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE")
# Each role logs in, inherits nothing and may not create roles, databases or anything cluster-wide.
ROLE_ATTRIBUTES = {
    "rolcanlogin": (True, "LOGIN"),
    "rolinherit": (False, "NOINHERIT"),
    "rolsuper": (False, "NOSUPERUSER"),
    "rolcreatedb": (False, "NOCREATEDB"),
    "rolcreaterole": (False, "NOCREATEROLE"),
    "rolreplication": (False, "NOREPLICATION"),
    "rolbypassrls": (False, "NOBYPASSRLS"),
}
ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_SPEC_ITEM = re.compile(r"\s*(SELECT|INSERT|UPDATE|DELETE)\s*(?:\(([^)]*)\))?")
PUBLIC = "PUBLIC"


class RoleSetupError(Exception):
    """The declaration or the arguments cannot be turned into roles (a bad name, a bad spec)."""


@dataclass(frozen=True, order=True)
class Grant:
    """One privilege of one grantee (a role, or PUBLIC) on a table, one of its columns, a sequence, the
    schema or the database."""

    kind: str  # TABLE, SEQUENCE, SCHEMA or DATABASE
    name: str
    grantee: str
    privilege: str
    column: str = ""


@dataclass(frozen=True)
class Statement:
    sql: str
    params: tuple[str, ...] = ()
    shown: str = ""  # what is printed instead of ``sql`` (a password masked)

    def __str__(self) -> str:
        return self.shown or self.sql


@dataclass
class Plan:
    """What to run, in order. Passwords are kept apart: they are never drift, and set whenever given."""

    statements: list[Statement] = field(default_factory=list)
    passwords: list[Statement] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def parse_spec(spec: str) -> list[tuple[str, tuple[str, ...]]]:
    """``"SELECT(id, key_id) INSERT"`` -> ``[("SELECT", ("id", "key_id")), ("INSERT", ())]``."""
    items, position = [], 0
    for match in _SPEC_ITEM.finditer(spec):
        if spec[position : match.start()].strip():
            break
        columns = tuple(c.strip() for c in match.group(2).split(",")) if match.group(2) is not None else ()
        items.append((match.group(1), columns))
        position = match.end()
    if spec[position:].strip() or any("" in columns for _, columns in items):
        raise RoleSetupError(f"Cannot read the privileges {spec!r} (e.g. 'SELECT(id, name) INSERT').")
    return items


def role_names(prefix: str) -> dict[str, str]:
    """Zone (and owner) -> PostgreSQL role name."""
    names = {zone: f"{prefix}{zone}" for zone in (*db_zones.ZONES, db_zones.OWNER)}
    for name in names.values():
        if not ROLE_NAME.match(name):
            raise RoleSetupError(f"'{name}' is not a usable role name: lower-case letters, digits and _.")
    return names


def model_tables() -> dict[str, str]:
    """Every table Django manages -> its model label (auto-created many-to-many tables included)."""
    tables = {}
    for model in apps.get_models(include_auto_created=True):
        if model._meta.managed and not model._meta.proxy:
            tables[model._meta.db_table] = model._meta.label
    return tables


# --- the database as it is ----------------------------------------------------------------------------


@dataclass
class Catalog:
    """What the plan needs to know of the database: roles, tables and every privilege of PUBLIC and of
    the project's roles."""

    database: str
    schema: str
    roles: dict[str, dict[str, Any]]  # role name -> pg_roles attributes (only those that exist)
    memberships: set[tuple[str, str]]  # (member, role it is a member of)
    tables: dict[str, str]  # table -> owner
    columns: dict[str, set[str]]  # table -> column names
    serials: dict[str, list[str]]  # table -> sequences its serial columns use
    functions: dict[str, str]  # trigger function signature -> owner
    grants: set[Grant]


def read_catalog(cursor: Any, names: Iterable[str], tables: Iterable[str], *, owner: str) -> Catalog:
    """The catalog as seen for the roles ``names``; ``owner`` is the schema owner's role, whose rights on
    tables are implicit and never managed as grants."""
    cursor.execute("SELECT current_database(), current_schema()")
    database, schema = cursor.fetchone()
    roles, memberships = _read_roles(cursor, names)
    grantees = {0: PUBLIC} | {attrs["oid"]: name for name, attrs in roles.items()}
    cursor.execute(
        "SELECT c.relname, c.oid, pg_get_userbyid(c.relowner) FROM pg_class c"
        " WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p') AND c.relname = ANY(%s)",
        [list(tables)],
    )
    found = {name: (oid, table_owner) for name, oid, table_owner in cursor.fetchall()}
    catalog = Catalog(
        database=database, schema=schema, roles=roles, memberships=memberships,
        tables={name: table_owner for name, (_, table_owner) in found.items()}, columns=defaultdict(set),
        serials=defaultdict(list), functions={}, grants=set(),
    )  # fmt: skip
    table_grantees = {oid: name for oid, name in grantees.items() if name != owner}
    _read_tables(cursor, catalog, [oid for oid, _ in found.values()], table_grantees)
    _read_schema_and_database(cursor, catalog, grantees)
    return catalog


def _read_roles(cursor: Any, names: Iterable[str]) -> tuple[dict[str, dict[str, Any]], set[tuple[str, str]]]:
    cursor.execute(
        "SELECT rolname, oid, rolcanlogin, rolinherit, rolsuper, rolcreatedb, rolcreaterole, rolreplication,"
        " rolbypassrls FROM pg_roles WHERE rolname = ANY(%s)",
        [list(names)],
    )
    roles = {row[0]: dict(zip(["oid", *ROLE_ATTRIBUTES], row[1:], strict=True)) for row in cursor.fetchall()}
    cursor.execute(
        "SELECT member.rolname, granted.rolname FROM pg_auth_members m JOIN pg_roles member ON member.oid = m.member"
        " JOIN pg_roles granted ON granted.oid = m.roleid WHERE member.rolname = ANY(%s)",
        [list(roles)],
    )
    return roles, {(member, granted) for member, granted in cursor.fetchall()}


def _read_tables(cursor: Any, catalog: Catalog, oids: list[int], grantees: Mapping[int, str]) -> None:
    cursor.execute(
        "SELECT c.relname, a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
        " WHERE c.oid = ANY(%s) AND a.attnum > 0 AND NOT a.attisdropped",
        [oids],
    )
    for table, column in cursor.fetchall():
        catalog.columns[table].add(column)
    # Owner entries are left out: the owner's rights are implicit and never granted.
    cursor.execute(
        "SELECT c.relname, x.grantee, x.privilege_type FROM pg_class c,"
        " aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) x"
        " WHERE c.oid = ANY(%s) AND x.grantee <> c.relowner",
        [oids],
    )
    catalog.grants |= {Grant("TABLE", t, grantees[g], p) for t, g, p in cursor.fetchall() if g in grantees}
    cursor.execute(
        "SELECT c.relname, a.attname, x.grantee, x.privilege_type FROM pg_class c"
        " JOIN pg_attribute a ON a.attrelid = c.oid, aclexplode(a.attacl) x"
        " WHERE c.oid = ANY(%s) AND a.attnum > 0 AND NOT a.attisdropped AND x.grantee <> c.relowner",
        [oids],
    )
    catalog.grants |= {Grant("TABLE", t, grantees[g], p, c) for t, c, g, p in cursor.fetchall() if g in grantees}
    # Sequences of serial columns need USAGE to insert (identity columns, Django's default, do not).
    cursor.execute(
        "SELECT t.relname, s.relname, x.grantee, x.privilege_type FROM pg_depend d"
        " JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' JOIN pg_class t ON t.oid = d.refobjid,"
        " aclexplode(coalesce(s.relacl, acldefault('s', s.relowner))) x"
        " WHERE d.classid = 'pg_class'::regclass AND d.deptype = 'a' AND t.oid = ANY(%s)",
        [oids],
    )
    for table, sequence, grantee, privilege in cursor.fetchall():
        if sequence not in catalog.serials[table]:
            catalog.serials[table].append(sequence)
        if grantee in grantees:
            catalog.grants.add(Grant("SEQUENCE", sequence, grantees[grantee], privilege))
    cursor.execute(
        "SELECT DISTINCT p.oid::regprocedure::text, pg_get_userbyid(p.proowner) FROM pg_trigger t"
        " JOIN pg_proc p ON p.oid = t.tgfoid WHERE t.tgrelid = ANY(%s) AND NOT t.tgisinternal",
        [oids],
    )
    catalog.functions = dict(cursor.fetchall())


def _read_schema_and_database(cursor: Any, catalog: Catalog, grantees: Mapping[int, str]) -> None:
    cursor.execute(
        "SELECT x.grantee, x.privilege_type FROM pg_namespace n,"
        " aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) x"
        " WHERE n.nspname = current_schema() AND x.grantee <> n.nspowner",
    )
    for grantee, privilege in cursor.fetchall():
        # PUBLIC's USAGE of the schema is PostgreSQL's default and left alone; its CREATE is not.
        if grantee in grantees and not (grantee == 0 and privilege == "USAGE"):
            catalog.grants.add(Grant("SCHEMA", catalog.schema, grantees[grantee], privilege))
    cursor.execute(
        "SELECT x.grantee, x.privilege_type FROM pg_database d,"
        " aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) x"
        " WHERE d.datname = current_database() AND x.grantee <> d.datdba",
    )
    catalog.grants |= {
        Grant("DATABASE", catalog.database, grantees[g], p) for g, p in cursor.fetchall() if g in grantees
    }


# --- the database as declared -------------------------------------------------------------------------


def declared_grants(
    catalog: Catalog, names: Mapping[str, str], tables: Mapping[str, str], matrix: Mapping[str, Mapping[str, str]]
) -> tuple[set[Grant], list[str]]:
    """The privileges ``matrix`` declares for the tables that exist, and notes on what was skipped."""
    notes: list[str] = []
    labels = {label: table for table, label in tables.items()}
    for label in sorted(set(matrix) - set(labels)):
        notes.append(f"{label} is not an installed model: skipped.")
    for table, label in sorted(tables.items()):
        if label not in matrix:
            notes.append(f"{label} ({table}) is not in ops.db_zones.MATRIX: only its owner may use it.")
    wanted = _connect_grants(catalog, names)
    absent = []
    for label, zones in matrix.items():
        db_table = labels.get(label)
        if db_table is None:
            continue
        if db_table not in catalog.tables:
            absent.append(db_table)
            continue
        for zone, spec in zones.items():
            wanted |= _table_grants(catalog, db_table, names[zone], spec, notes)
    if absent:
        notes.append(f"{len(absent)} table(s) do not exist yet (run migrate), skipped: {', '.join(sorted(absent))}.")
    return wanted, notes


def _connect_grants(catalog: Catalog, names: Mapping[str, str]) -> set[Grant]:
    """Every role may connect and find the schema's tables; only the owner may create in it."""
    database, schema, owner = catalog.database, catalog.schema, names[db_zones.OWNER]
    wanted = {Grant("DATABASE", database, owner, "CONNECT"), Grant("SCHEMA", schema, owner, "USAGE")}
    wanted.add(Grant("SCHEMA", schema, owner, "CREATE"))
    for zone in db_zones.ZONES:
        wanted.add(Grant("DATABASE", database, names[zone], "CONNECT"))
        wanted.add(Grant("SCHEMA", schema, names[zone], "USAGE"))
        if zone in db_zones.TEMPORARY_TABLES:
            wanted.add(Grant("DATABASE", database, names[zone], "TEMPORARY"))
    return wanted


def _table_grants(catalog: Catalog, table: str, role: str, spec: str, notes: list[str]) -> set[Grant]:
    grants = set()
    for privilege, columns in parse_spec(spec):
        missing = [column for column in columns if column not in catalog.columns[table]]
        if missing:
            notes.append(f"{table}: column(s) {', '.join(missing)} do not exist: {privilege} on them skipped.")
        present = [column for column in columns if column not in missing]
        if columns and not present:
            continue
        if present:
            grants |= {Grant("TABLE", table, role, privilege, column) for column in present}
        else:
            grants.add(Grant("TABLE", table, role, privilege))
        if privilege == "INSERT":
            grants |= {Grant("SEQUENCE", sequence, role, "USAGE") for sequence in catalog.serials.get(table, [])}
    return grants


# --- the difference, as SQL ---------------------------------------------------------------------------


def plan(
    connection: BaseDatabaseWrapper,
    *,
    prefix: str,
    passwords: Mapping[str, str] | None = None,
    matrix: Mapping[str, Mapping[str, str]] = db_zones.MATRIX,
) -> Plan:
    """The statements that make the database match ``matrix`` (passwords: zone -> password to set)."""
    names = role_names(prefix)
    tables = model_tables()
    with connection.cursor() as cursor:
        catalog = read_catalog(cursor, names.values(), [*tables, "django_migrations"], owner=names[db_zones.OWNER])
    quote = connection.ops.quote_name
    result = Plan()
    result.statements += _role_statements(catalog, names, quote)
    result.statements += _owner_statements(catalog, names[db_zones.OWNER], quote)
    wanted, result.notes = declared_grants(catalog, names, tables, matrix)
    result.statements += privilege_statements(catalog.grants, wanted, quote)
    for zone, password in sorted((passwords or {}).items()):
        role = names[zone]
        verifier = encrypt_password(password, role, connection.connection)
        # The server gets a SCRAM verifier, never the password itself (nor does its statement log).
        result.passwords.append(
            Statement(f"ALTER ROLE {quote(role)} PASSWORD %s", (verifier,), f"ALTER ROLE {quote(role)} PASSWORD '***'")
        )
    return result


def _role_statements(catalog: Catalog, names: Mapping[str, str], quote: Any) -> list[Statement]:
    statements = []
    every = " ".join(keyword for _, keyword in ROLE_ATTRIBUTES.values())
    for role in names.values():
        attributes = catalog.roles.get(role)
        if attributes is None:
            statements.append(Statement(f"CREATE ROLE {quote(role)} {every}"))
            continue
        wrong = [keyword for name, (value, keyword) in ROLE_ATTRIBUTES.items() if attributes[name] != value]
        if wrong:
            statements.append(Statement(f"ALTER ROLE {quote(role)} {' '.join(wrong)}"))
    for member, granted in sorted(catalog.memberships):
        # A zone's role acts only as itself: membership would let it SET ROLE to another.
        statements.append(Statement(f"REVOKE {quote(granted)} FROM {quote(member)}"))
    return statements


def _owner_statements(catalog: Catalog, owner: str, quote: Any) -> list[Statement]:
    statements = [
        Statement(f"ALTER TABLE {quote(table)} OWNER TO {quote(owner)}")
        for table, current in sorted(catalog.tables.items())
        if current != owner
    ]
    statements += [
        Statement(f"ALTER FUNCTION {signature} OWNER TO {quote(owner)}")
        for signature, current in sorted(catalog.functions.items())
        if current != owner
    ]
    return statements


def privilege_statements(actual: set[Grant], wanted: set[Grant], quote: Any) -> list[Statement]:
    """REVOKE what is granted but not wanted, then GRANT what is wanted but missing. Revoking a
    table-wide privilege also revokes it on every column, so wanted column grants it removes are granted
    again."""
    extra, missing = actual - wanted, wanted - actual
    wiped = {(g.name, g.grantee, g.privilege) for g in extra if g.kind == "TABLE" and not g.column}
    extra = {g for g in extra if not (g.column and (g.name, g.grantee, g.privilege) in wiped)}
    missing |= {g for g in wanted & actual if g.column and (g.name, g.grantee, g.privilege) in wiped}
    return [*_statements("REVOKE", extra, quote), *_statements("GRANT", missing, quote)]


def _statements(verb: str, grants: set[Grant], quote: Any) -> list[Statement]:
    """One statement per object and grantee: whole-object privileges together, then one per column list."""
    grouped: dict[tuple[str, str, str], list[Grant]] = defaultdict(list)
    for grant in grants:
        grouped[(grant.kind, grant.name, grant.grantee)].append(grant)
    statements = []
    for (kind, name, grantee), items in sorted(grouped.items()):
        target = f"{kind} {quote(name)}"
        who = grantee if grantee == PUBLIC else quote(grantee)
        preposition = "TO" if verb == "GRANT" else "FROM"
        whole = sorted({g.privilege for g in items if not g.column}, key=_privilege_order)
        if whole:
            statements.append(Statement(f"{verb} {', '.join(whole)} ON {target} {preposition} {who}"))
        by_privilege: dict[str, list[str]] = defaultdict(list)
        for grant in items:
            if grant.column:
                by_privilege[grant.privilege].append(grant.column)
        for privilege in sorted(by_privilege, key=_privilege_order):
            columns = ", ".join(quote(column) for column in sorted(by_privilege[privilege]))
            statements.append(Statement(f"{verb} {privilege} ({columns}) ON {target} {preposition} {who}"))
    return statements


def _privilege_order(privilege: str) -> tuple[int, str]:
    order = [*PRIVILEGES, "TRUNCATE", "REFERENCES", "TRIGGER", "USAGE", "CREATE", "CONNECT", "TEMPORARY"]
    return (order.index(privilege) if privilege in order else len(order), privilege)


def apply(connection: BaseDatabaseWrapper, planned: Plan) -> None:
    """Run the plan's statements and password changes in one transaction: all or nothing."""
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        for statement in [*planned.statements, *planned.passwords]:
            cursor.execute(statement.sql, list(statement.params) or None)
