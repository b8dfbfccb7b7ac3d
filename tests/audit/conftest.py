from __future__ import annotations

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
