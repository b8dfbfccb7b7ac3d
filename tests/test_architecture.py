"""The import-linter contracts of .importlinter hold, and each one really catches its violation.

Each violation is written into a throwaway copy of the package skeleton (never the source tree), and
lint-imports runs there with the project's own contract file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
PACKAGES = [
    "config",
    "ops",
    "residents",
    "insurer_portal",
    "underwriting",
    "tenants",
    "datadomain",
    "audit",
    "securecompute",
]
SKELETON = [
    "datadomain/models.py",
    "datadomain/custodian.py",
    "securecompute/private.py",
    *(
        f"{app}/{room}.py"
        for app in ["audit", "datadomain", "underwriting", "insurer_portal", "ops"]
        for room in ["tasks", "services"]
    ),
]


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(cwd / ".importlinter"), "--no-cache"],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.fixture
def skeleton(tmp_path: Path) -> Path:
    shutil.copy(ROOT / ".importlinter", tmp_path / ".importlinter")
    for package in PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    for module in SKELETON:
        (tmp_path / module).write_text("")
    # Stand-ins for the third-party packages the contracts name, so they resolve in the graph.
    site = tmp_path / "_site"
    for external in ["django", "rest_framework", "celery"]:
        (site / external).mkdir(parents=True)
        (site / external / "__init__.py").write_text("")
    return tmp_path


def test_the_project_keeps_every_contract() -> None:
    result = subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_clean_skeleton_passes(skeleton: Path) -> None:
    result = lint_imports(skeleton)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("module", "source", "contract"),
    [
        ("securecompute/leak.py", "import django\n", "securecompute is plain Python"),
        ("securecompute/upward.py", "import datadomain\n", "Dependencies point one way"),
        ("datadomain/upward.py", "import underwriting\n", "Dependencies point one way"),
        ("underwriting/upward.py", "import insurer_portal\n", "Dependencies point one way"),
        ("tenants/upward.py", "import underwriting\n", "Dependencies point one way"),
        ("datadomain/upward.py", "import tenants\n", "Dependencies point one way"),
        ("tenants/records.py", "import datadomain.models\n", "never import the data domain's models"),
        ("audit/upward.py", "import datadomain\n", "Dependencies point one way"),
        ("insurer_portal/records.py", "import datadomain.models\n", "never import the data domain's models"),
        ("residents/records.py", "import datadomain.models\n", "never import the data domain's models"),
        ("insurer_portal/upward.py", "import residents\n", "Dependencies point one way"),
        ("underwriting/records.py", "from datadomain import models\n", "never import the data domain's models"),
        ("underwriting/keys.py", "import securecompute.private\n", "Only datadomain.custodian loads a private key"),
        ("datadomain/features.py", "import securecompute.private\n", "Only datadomain.custodian loads a private key"),
        ("underwriting/services.py", "from underwriting import tasks\n", "services never import tasks"),
        ("insurer_portal/services.py", "import insurer_portal.tasks\n", "services never import tasks"),
        ("datadomain/services.py", "from datadomain.tasks import x\n", "services never import tasks"),
    ],
)
def test_each_contract_catches_its_violation(skeleton: Path, module: str, source: str, contract: str) -> None:
    (skeleton / module).write_text(source)
    result = lint_imports(skeleton)
    assert result.returncode != 0
    # lint-imports wraps long contract names; compare with the line breaks taken out.
    report = " ".join(result.stdout.split("Broken contracts")[-1].split())
    assert contract in report
