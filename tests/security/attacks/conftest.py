"""A compromised scoring worker, a curious custodian: what each can reach, as fixtures.

The worker is played by the test: it holds what a scoring worker's database role can read (every
request's ScoringInput: encrypted features, tag material, packing) and may put any message it likes on the
custodian's queue, which is ``datadomain.custodian.comparisons_answer_many``, the function the custodian's
Celery task calls. Requests are authorised through the real API and the real extraction stage.

``undefended`` switches one defence off, so each attack can show that it is the defence, and not the test,
that stops it. ``fixed_coins`` makes the custodian's random answers to refused queries deterministic
(all positive), so "the attacker learned nothing" becomes an exact statement: its view is identical
whatever the victim's data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import phe
import pytest

from datadomain import custodian, keyring
from datadomain.models import ComparisonGrant
from datadomain.selectors import subject_features
from securecompute import private
from securecompute.binding import TagMaterial
from securecompute.paillier import raw_ciphertext
from securecompute.protocol import ciphertexts_from_json
from tests.population import make_population
from tests.underwriting.conftest import request_body
from underwriting.models import ScoringInput, UnderwritingRequest
from underwriting.reference import builtin_documents, evaluate
from underwriting.services.pipeline import stage_drain

URL = "/api/v1/underwriting-requests"
MANUAL = "charlson-acci"


@dataclass(frozen=True)
class Stolen:
    """One request as the compromised worker sees it (ScoringInput) and, for the test, the truth."""

    ref: str
    public_key: phe.PaillierPublicKey
    key_id: str
    slot_bits: int
    features: list[phe.EncryptedNumber]
    tags: TagMaterial
    true_features: list[int]
    true_score: int
    true_tier: int


@dataclass
class World:
    data: dict[str, Any]
    capture: Any

    def authorise(self, count: int, *, prefix: str, people: list[int] | None = None) -> list[Stolen]:
        """``count`` requests through the API and the extraction stage (their grants issued), as the
        worker sees them. ``people`` picks the applicants by index (default: in turn)."""
        chosen = people or [index % len(self.data["people"]) for index in range(count)]
        ids = []
        with self.capture(execute=True):
            for index, person in enumerate(chosen):
                body = request_body(self.data["people"][person], reference=f"{prefix}-{index}")
                body["consent"]["reference"] = f"C-{prefix}-{index}"
                response = self.data["api"].post(URL, body, format="json")
                assert response.status_code == 202, response.content
                ids.append(response.json()["id"])
        with self.capture(execute=True):
            stage_drain("extract")
        return [self.stolen(ref) for ref in ids]

    def stolen(self, ref: str) -> Stolen:
        given = ScoringInput.objects.get(request_id=ref)
        public_key = keyring.public_key(given.key_id)
        score_tag, unit_tag = (raw_ciphertext(c, public_key) for c in ciphertexts_from_json(given.tags, public_key))
        request = UnderwritingRequest.objects.get(pk=ref)
        document = builtin_documents()[MANUAL]
        truth = subject_features(subject_key=request.subject_key, feature_names=document.feature_names,
                                 as_of=request.as_of)  # fmt: skip
        evaluation = evaluate(document, truth)
        return Stolen(
            ref, public_key, given.key_id, given.slot_bits, ciphertexts_from_json(given.features, public_key),
            TagMaterial(score_tag, unit_tag), [truth[name] for name in document.feature_names],
            evaluation.score, evaluation.tier_index,
        )  # fmt: skip


@pytest.fixture
def world(
    tmp_path: Path, settings: Any, in_process_tasks: None, held: list[str], django_capture_on_commit_callbacks: Any
) -> World:
    settings.CUSTODIAN_KEY_DIR = tmp_path / "keys"
    settings.UNDERWRITING_RATE_LIMIT_COUNT = 1000
    settings.UNDERWRITING_SUBJECT_LIMIT_COUNT = 1000
    data = make_population(tmp_path, patients=16, seed=47, insurer_slug="attack-life")
    return World(data, django_capture_on_commit_callbacks)


def ask(ref: str, query: dict[str, Any]) -> list[bool]:
    """Put one query on the custodian's queue and read its answer's signs."""
    answer = custodian.comparisons_answer_many(queries=[(ref, query)])[ref].answer
    assert answer["request_id"] == ref  # every query gets an answer of the same shape
    return list(answer["positive"])


def outcome(ref: str) -> str:
    return str(ComparisonGrant.objects.get(request_ref=ref).outcome)


@pytest.fixture
def fixed_coins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(custodian, "_refusal_signs", lambda plan, count: [True] * count)


Undefended = Callable[[str], None]


@pytest.fixture
def undefended(monkeypatch: pytest.MonkeyPatch) -> Undefended:
    """``undefended("tag")``: the custodian no longer checks the MAC tag (it decrypts whatever it is sent,
    as before the binding); ``undefended("single_use")``: grants can be spent again and again."""

    def switch_off(defence: str) -> None:
        if defence == "tag":
            monkeypatch.setattr(private, "open_packed", _no_tag_check)
        elif defence == "single_use":
            original = custodian._grants_spend

            def reusable(queries: list[tuple[str, dict[str, Any]]]) -> Any:
                ComparisonGrant.objects.filter(request_ref__in=[ref for ref, _ in queries]).update(status="issued")
                return original(queries)

            monkeypatch.setattr(custodian, "_grants_spend", reusable)
        else:
            raise ValueError(defence)

    return switch_off


def _no_tag_check(plaintext: int, mac_key: int, params: Any, count: int) -> int | None:
    packed = plaintext & ((1 << params.value_bits) - 1)
    return None if packed >> (count * params.slot_bits) else packed
