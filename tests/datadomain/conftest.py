from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import phe
import pytest

from datadomain.ingest.runner import Ingester
from securecompute.keys import generate_keypair
from tests.datadomain.fhir import write_ndjson


@pytest.fixture(scope="session")
def keypair() -> tuple[phe.PaillierPublicKey, phe.PaillierPrivateKey]:
    return generate_keypair(2048)


@pytest.fixture
def load(tmp_path: Path) -> Callable[..., None]:
    """Ingest resources (dicts) in one thread, inside the test's transaction."""
    counter = {"n": 0}

    def _load(*resources: dict[str, Any]) -> None:
        counter["n"] += 1
        Ingester().run([write_ndjson(tmp_path / f"load{counter['n']}.ndjson", list(resources))])

    return _load


AS_OF = date(2026, 6, 30)
