"""docker/compose.yaml and docker/Dockerfile name only things that exist (there is no Docker engine here
to try them, so every command, module, queue, file and variable they mention is checked by reading)."""

from __future__ import annotations

import importlib
import os
import re
import shlex
from pathlib import Path
from typing import Any

import environ
import pytest
import yaml
from django.conf import settings
from django.core.management import get_commands

ROOT = Path(__file__).resolve().parent.parent.parent
DOCKER = ROOT / "docker"
COMPOSE = yaml.safe_load((DOCKER / "compose.yaml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
APP_SERVICES = {name: spec for name, spec in SERVICES.items() if spec.get("image") == "underwriting:latest"}
LONG_RUNNING = {name for name, spec in SERVICES.items() if spec.get("restart") != "no"}
INTERPOLATION = re.compile(r"\$\{([A-Z][A-Z0-9_]*)(?::?[-?][^}]*)?\}")


def documented() -> set[str]:
    return set(re.findall(r"^([A-Z][A-Z0-9_]+)=", (DOCKER / ".env.example").read_text(), flags=re.MULTILINE))


def option(command: list[str], *names: str) -> str | None:
    for index, word in enumerate(command):
        if word in names and index + 1 < len(command):
            return command[index + 1]
    return None


def test_compose_has_every_service_of_the_platform() -> None:
    assert {"postgres", "redis", "web", "worker-domain", "worker-scoring", "custodian", "beat"} <= set(SERVICES)
    assert {"web", "worker-domain", "worker-scoring", "custodian", "beat", "migrate"} <= set(APP_SERVICES)


def test_every_long_running_service_has_a_health_check() -> None:
    for name in LONG_RUNNING:
        assert "test" in SERVICES[name].get("healthcheck", {}), name


@pytest.mark.parametrize("name", sorted(APP_SERVICES))
def test_every_command_names_a_real_program(name: str) -> None:
    command = APP_SERVICES[name]["command"]
    assert isinstance(command, list), "exec form, so signals reach the process"
    program = command[0]
    if program == "gunicorn":
        config = option(command, "--config", "-c")
        assert config is not None
        assert (ROOT / config).is_file()
        module, _, attribute = command[-1].partition(":")
        assert callable(getattr(importlib.import_module(module), attribute))
    elif program == "celery":
        assert option(command, "-A", "--app") == "config"
        importlib.import_module("config.celery")
        assert command[3] in {"worker", "beat"}
        include = option(command, "--include", "-I")
        if include:
            importlib.import_module(include)
    elif program == "python":
        script = ROOT / command[1]
        assert script.is_file(), command[1]
        if command[1] == "manage.py":
            assert command[2] in get_commands(), command[2]
    elif program == "sh":
        script = ROOT / command[1]
        assert script.is_file(), command[1]
        assert command[1].startswith("docker/"), command[1]
        managed = re.findall(r"python manage\.py (\w+)", script.read_text())
        assert managed, "a script of the image runs manage.py commands"
        assert set(managed) <= set(get_commands()), managed
    else:
        pytest.fail(f"unexpected program {program}")


def test_worker_queues_exist_and_every_queue_has_a_consumer() -> None:
    configured = {queue.name for queue in settings.CELERY_TASK_QUEUES}
    consumed: set[str] = set()
    for spec in APP_SERVICES.values():
        queues = option(spec["command"], "-Q", "--queues")
        if queues:
            assert set(queues.split(",")) <= configured, queues
            consumed |= set(queues.split(","))
    assert consumed == configured


def test_only_the_custodian_holds_the_keys() -> None:
    for name, spec in SERVICES.items():
        volumes = " ".join(str(v) for v in spec.get("volumes", []))
        secrets = spec.get("secrets", [])
        environment = spec.get("environment", {})
        holds_keys = "custodian-keys" in volumes or "custodian_kek" in secrets or "CUSTODIAN_KEK_FILE" in environment
        assert holds_keys == (name == "custodian"), name
    command = SERVICES["custodian"]["command"]
    assert option(command, "-Q") == "custodian"
    assert option(command, "-c") == "1"
    mount = next(v for v in SERVICES["custodian"]["volumes"] if v.startswith("custodian-keys:"))
    assert mount.split(":")[1] == _example_value("CUSTODIAN_KEY_DIR")


def _example_value(name: str) -> str:
    match = re.search(rf"^{name}=(.*)$", (DOCKER / ".env.example").read_text(), flags=re.MULTILINE)
    assert match, name
    return match.group(1)


def test_the_signed_consent_forms_reach_neither_the_custodian_nor_the_scoring_zone() -> None:
    """The forms name residents: with them a custodian could put a name to a request."""
    for name in ("custodian", "worker-scoring", "beat"):
        mounts = [str(volume) for volume in SERVICES[name].get("volumes", [])]
        assert not any("consent-artifacts" in mount for mount in mounts), (name, mounts)
    assert any("consent-artifacts" in str(volume) for volume in SERVICES["web"]["volumes"])


def test_every_variable_compose_and_gunicorn_read_is_documented() -> None:
    text = (DOCKER / "compose.yaml").read_text()
    names = set(INTERPOLATION.findall(text))
    for spec in APP_SERVICES.values():
        for variable in spec.get("environment", {}):
            names.add(variable.removesuffix("_FILE"))
    readers = [
        DOCKER / "gunicorn.conf.py",
        DOCKER / "entrypoint.sh",
        DOCKER / "migrate.sh",
        DOCKER / "worker_health.py",
    ]
    for path in [*readers, ROOT / "ops" / "signals.py", ROOT / "ops" / "metrics.py"]:
        names |= set(re.findall(r"""environ(?:\.get)?\(\s*["']([A-Z][A-Z0-9_]+)["']""", path.read_text()))
        if path.suffix == ".sh":  # a NAME_FILE names the file holding NAME (Docker secrets)
            names |= {
                name.removesuffix("_FILE") for name in re.findall(r"""\$\{?([A-Z][A-Z0-9_]+)""", path.read_text())
            }
    assert names, "nothing found: the patterns are wrong"
    assert names - documented() == set()


def test_env_files_and_secrets_are_explained() -> None:
    readme = (DOCKER / "README.md").read_text()
    for spec in APP_SERVICES.values():
        assert spec["env_file"] == ".env"
    assert "cp docker/.env.example docker/.env" in readme
    for secret in COMPOSE["secrets"].values():
        assert secret["file"].removeprefix("./") in readme


def test_every_service_name_in_depends_on_exists() -> None:
    for spec in SERVICES.values():
        for dependency in spec.get("depends_on", {}):
            assert dependency in SERVICES


def test_gunicorn_configuration_loads() -> None:
    namespace: dict[str, Any] = {}
    exec(compile((DOCKER / "gunicorn.conf.py").read_text(), "gunicorn.conf.py", "exec"), namespace)
    assert namespace["bind"] == "0.0.0.0:8000"
    assert namespace["worker_class"] == "gthread"
    assert callable(namespace["child_exit"])


def test_worker_health_script_imports() -> None:
    source = (DOCKER / "worker_health.py").read_text()
    compile(source, "worker_health.py", "exec")
    assert "from config.celery import app" in source


class Dockerfile:
    def __init__(self, text: str) -> None:
        joined = re.sub(r"\\\n", " ", text)
        self.instructions = [
            (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line.strip() else "")
            for line in (raw.strip() for raw in joined.splitlines())
            if line and not line.startswith("#")
        ]

    def stages(self) -> list[list[tuple[str, str]]]:
        stages: list[list[tuple[str, str]]] = []
        for instruction in self.instructions:
            if instruction[0] == "FROM":
                stages.append([])
            stages[-1].append(instruction)
        return stages


DOCKERFILE = Dockerfile((DOCKER / "Dockerfile").read_text())


def test_dockerfile_is_multi_stage_and_runs_as_a_non_root_user() -> None:
    stages = DOCKERFILE.stages()
    assert len(stages) >= 2
    final = stages[-1]
    users = [argument for keyword, argument in final if keyword == "USER"]
    assert users
    assert users[-1] not in {"root", "0"}
    assert not any(keyword == "RUN" and "build-essential" in argument for keyword, argument in final)


def test_dockerfile_copies_only_existing_files_and_collects_static() -> None:
    for keyword, argument in DOCKERFILE.instructions:
        if keyword == "COPY" and "--from=" not in argument:
            sources = [word for word in shlex.split(argument) if not word.startswith("--")][:-1]
            for source in sources:
                assert (ROOT / source).exists(), source
    runs = " ".join(argument for keyword, argument in DOCKERFILE.instructions if keyword == "RUN")
    assert "collectstatic --noinput" in runs
    assert "compilemessages" in runs
    assert "config.settings.production" in runs
    entrypoint = DOCKER / "entrypoint.sh"
    assert os.access(entrypoint, os.X_OK)
    assert "docker/entrypoint.sh" in dict(DOCKERFILE.instructions)["ENTRYPOINT"]


def test_dockerfile_command_matches_the_web_service() -> None:
    cmd = [instruction for instruction in DOCKERFILE.instructions if instruction[0] == "CMD"][-1][1]
    assert yaml.safe_load(cmd) == SERVICES["web"]["command"]


def test_build_time_settings_load_with_only_the_dockerfile_environment() -> None:
    """collectstatic runs at build time with placeholder secrets: a newly required secret must be added there."""
    import subprocess
    import sys

    runs = [arg for keyword, arg in DOCKERFILE.instructions if keyword == "RUN" and "collectstatic" in arg]
    assignments = dict(re.findall(r"(?:^|\s)([A-Z][A-Z0-9_]+)=(\S+)", runs[0].split("python manage.py")[0]))
    env = {"PATH": os.environ["PATH"], **assignments, "STATIC_ROOT": "/tmp/unused-static"}
    env.pop("STATICFILES_STORAGE", None)  # the manifest storage needs collected files; only settings matter here
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]


# --- database roles: one per trust zone (ops/db_zones.py) ---------------------------------------------

# The zone each service works in: what it consumes decides it (beat only enqueues: the scoring zone).
QUEUE_ZONES = {"domain": "domain", "scoring": "scoring", "webhooks": "scoring", "custodian": "custodian"}


def service_zone(name: str) -> str:
    command = APP_SERVICES[name]["command"]
    if name == "migrate":
        return "migrate"
    if command[0] == "gunicorn":
        return "web"
    if command[3] == "beat":
        return "scoring"
    zones = {QUEUE_ZONES[queue] for queue in (option(command, "-Q") or "").split(",")}
    assert len(zones) == 1, f"{name} consumes queues of several zones: {zones}"
    return zones.pop()


def database_url(name: str) -> str:
    url = APP_SERVICES[name].get("environment", {}).get("DATABASE_URL", "")
    prefix = _example_value("DB_ROLE_PREFIX")
    return str(url).replace("${DB_ROLE_PREFIX:-underwriting_}", prefix)


@pytest.mark.parametrize("name", sorted(APP_SERVICES))
def test_each_service_connects_as_its_own_zones_role(name: str) -> None:
    url = environ.Env.db_url_config(database_url(name))
    assert url["USER"] == _example_value("DB_ROLE_PREFIX") + service_zone(name), name
    assert not url["PASSWORD"], f"{name}: the password belongs in a secret, not in DATABASE_URL"
    assert "${DB_ROLE_PREFIX:-underwriting_}" in APP_SERVICES[name]["environment"]["DATABASE_URL"]
    secret = f"db_password_{service_zone(name)}"
    assert APP_SERVICES[name]["environment"]["DATABASE_PASSWORD_FILE"] == f"/run/secrets/{secret}"
    assert secret in APP_SERVICES[name]["secrets"]
    assert url["NAME"] == SERVICES["postgres"]["environment"]["POSTGRES_DB"]


def test_every_zone_has_a_service_and_the_zones_are_those_of_ops_db_zones() -> None:
    from ops import db_zones

    assert {service_zone(name) for name in APP_SERVICES} == {*db_zones.ZONES, db_zones.OWNER}


def test_each_database_password_reaches_only_its_own_zone_and_the_migrate_service() -> None:
    holders: dict[str, set[str]] = {}
    for name, spec in SERVICES.items():
        for secret in spec.get("secrets", []):
            holders.setdefault(secret, set()).add(name)
    for secret, services in holders.items():
        if secret.startswith("db_password_"):
            zone = secret.removeprefix("db_password_")
            assert services - {"migrate"} == {n for n in APP_SERVICES if service_zone(n) == zone} - {"migrate"}
    # The cluster administrator's password: the database itself, and db_roles in the migrate service.
    assert holders["postgres_password"] == {"postgres", "migrate"}
    assert SERVICES["postgres"]["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"


def test_the_env_file_every_container_reads_holds_no_database_password() -> None:
    example = (DOCKER / ".env.example").read_text()
    for name in ["DATABASE_PASSWORD", "DATABASE_ADMIN_PASSWORD", "POSTGRES_PASSWORD"] + [
        f"DB_ROLE_PASSWORD_{zone.upper()}" for zone in ("web", "domain", "scoring", "custodian", "migrate")
    ]:
        assert not re.search(rf"^{name}=.+$", example, flags=re.MULTILINE), name
    for name in ["DATABASE_URL", "DATABASE_ADMIN_URL"]:
        assert not environ.Env.db_url_config(_example_value(name))["PASSWORD"], name
    assert "POSTGRES_PASSWORD" not in (DOCKER / "compose.yaml").read_text().replace("POSTGRES_PASSWORD_FILE", "")


def test_the_migrate_service_sets_up_roles_around_the_migrations() -> None:
    script = (DOCKER / "migrate.sh").read_text()
    steps = re.findall(r"^(as_admin )?python manage\.py (\w+)", script, flags=re.MULTILINE)
    assert steps == [("as_admin ", "db_roles"), ("", "migrate"), ("as_admin ", "db_roles")]
    assert "set -eu" in script
    environment = SERVICES["migrate"]["environment"]
    assert (
        environ.Env.db_url_config(environment["DATABASE_ADMIN_URL"])["USER"]
        == (SERVICES["postgres"]["environment"]["POSTGRES_USER"])
    )
    from ops import db_zones

    for zone in (*db_zones.ZONES, db_zones.OWNER):
        assert environment[f"DB_ROLE_PASSWORD_{zone.upper()}_FILE"] == f"/run/secrets/db_password_{zone}"
