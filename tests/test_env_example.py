"""docker/.env.example documents every variable the settings read."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
READ_PATTERN = re.compile(r"""(?:env\.\w+|secret)\(\s*["']([A-Z][A-Z0-9_]+)["']""")
# Read by the test settings only, never by a deployment.
TEST_ONLY = {"TEST_WORKER_DATABASE_NAME"}


def settings_variables() -> set[str]:
    found: set[str] = set()
    for path in (ROOT / "config" / "settings").glob("*.py"):
        found |= set(READ_PATTERN.findall(path.read_text()))
    return found - TEST_ONLY


def test_every_setting_is_in_the_example_env_file() -> None:
    example = (ROOT / "docker" / ".env.example").read_text()
    documented = set(re.findall(r"^([A-Z][A-Z0-9_]+)=", example, flags=re.MULTILINE))
    variables = settings_variables()
    assert len(variables) > 10
    assert variables - documented == set()
