from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.governance.conftest import alice_decision  # noqa: F401 - a completed request about Alice
from tests.underwriting.conftest import (  # noqa: F401 - fixtures shared with the underwriting tests
    alice,
    api,
    approved_manuals,
    author,
    ingest,
    insurer,
    reviewer,
)


@pytest.fixture(autouse=True)
def _anchor_dir(settings: Any, tmp_path: Path) -> Path:
    """Each test's anchors in a folder of its own: files outlive the database flush between tests."""
    settings.AUDIT_ANCHOR_DIR = tmp_path / "anchors"
    return Path(settings.AUDIT_ANCHOR_DIR)
