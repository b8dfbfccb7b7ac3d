from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from config.settings.env import secret

ROOT = Path(__file__).resolve().parent.parent


def run_check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "SUBJECT_PEPPER", "DEBUG"}}
    clean.update(env, DJANGO_SETTINGS_MODULE="config.settings.base")
    return subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60
    )


def test_secret_key_is_required_when_debug_is_off() -> None:
    result = run_check({"DEBUG": "0", "SUBJECT_PEPPER": "p"})
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_development_defaults_apply_only_with_debug_on() -> None:
    result = run_check({"DEBUG": "1"})
    assert result.returncode == 0, result.stderr


def test_secret_reads_a_docker_secret_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "pepper"
    path.write_text("from-a-file\n")
    monkeypatch.delenv("SOME_PEPPER", raising=False)
    monkeypatch.setenv("SOME_PEPPER_FILE", str(path))
    assert secret("SOME_PEPPER") == "from-a-file"


def test_secret_names_the_unreadable_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOME_PEPPER", raising=False)
    monkeypatch.setenv("SOME_PEPPER_FILE", "/nonexistent/pepper")
    with pytest.raises(ImproperlyConfigured, match="SOME_PEPPER_FILE"):
        secret("SOME_PEPPER")


def test_celery_is_configured_for_safe_redelivery() -> None:
    assert settings.CELERY_TASK_ACKS_LATE is True
    assert settings.CELERY_TASK_REJECT_ON_WORKER_LOST is True
    assert settings.CELERY_WORKER_PREFETCH_MULTIPLIER == 1
    assert settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"] > settings.CELERY_TASK_TIME_LIMIT
    assert {q.name for q in settings.CELERY_TASK_QUEUES} == {"domain", "scoring", "custodian", "webhooks"}


def test_tasks_run_in_process_without_a_broker() -> None:
    assert settings.CELERY_TASK_ALWAYS_EAGER is (not settings.REDIS_URL)


def test_time_zone_and_languages() -> None:
    assert settings.TIME_ZONE == "Asia/Shanghai"
    assert settings.LANGUAGE_CODE == "zh-hans"
    assert [code for code, _ in settings.LANGUAGES] == ["zh-hans", "en"]
