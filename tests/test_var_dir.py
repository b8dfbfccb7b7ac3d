"""The suite never writes into the developer's var/: README's demo API key stays valid after `make test`."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent


def test_the_suite_works_in_a_directory_of_its_own() -> None:
    var_dir = Path(settings.VAR_DIR).resolve()
    assert var_dir != (ROOT / "var").resolve()
    for path in (settings.CUSTODIAN_KEY_DIR, settings.CONSENT_STORE_DIR, settings.AUDIT_ANCHOR_DIR):
        assert (ROOT / "var").resolve() not in Path(path).resolve().parents, path
